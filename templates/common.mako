## Shared prelude for every kernel family: the storage/accumulator types, loads and stores.
## dtype is the storage type ("float", "double" or "half"); half is storage-only (vload_half/vstore_half)
## and accumulates in float, so it works on devices without cl_khr_fp16.
<%def name="prelude(dtype, index_bits, vw)">
% if dtype == "double":
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
% endif
typedef ${"float" if dtype == "half" else dtype} dcl_acc;
typedef ${"float" if dtype == "half" else dtype}${vw} dcl_accv;
typedef ${dtype} dcl_t;
typedef ${"long" if index_bits == 64 else "int"} dcl_idx;
% if dtype == "half":
#define DCL_LOAD(p) vload_half(0, (p))
#define DCL_LOADV(p) vload_half${vw}(0, (p))
#define DCL_STORE(v, p) vstore_half((v), 0, (p))
% else:
## An unaligned vector load through a packed struct: PoCL compiles vloadN() to an out-of-line call that
## spills every accumulator around it; the packed struct becomes one unaligned vector move.
typedef struct __attribute__((packed)) { dcl_accv v; } dcl_unaligned;
#define DCL_LOAD(p) (*(p))
#define DCL_LOADV(p) (((__global const dcl_unaligned*)(p))->v)
#define DCL_STORE(v, p) (*(p) = (v))
% endif
## min() and max() are out-of-line calls on PoCL too.
#define DCL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DCL_MAX(a, b) ((a) > (b) ? (a) : (b))
</%def>
