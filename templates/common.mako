## Shared prelude for every kernel family: the storage/accumulator types, loads and stores.
## dtype is the storage type ("float", "double" or "half"); half is storage-only (vload_half/vstore_half)
## and accumulates in float, so it works on devices without cl_khr_fp16.
<%def name="prelude(dtype, index_bits, vw)">
% if dtype == "double":
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
% endif
typedef ${"float" if dtype == "half" else dtype} dcl_acc;
typedef ${"float" if dtype == "half" else dtype}${vw} dcl_accv;
## half a vector (DCL_LOADH), for the kernels that interleave two taps in one vector's lanes
typedef ${"float" if dtype == "half" else dtype}${vw // 2} dcl_acch;
typedef ${dtype} dcl_t;
typedef ${"long" if index_bits == 64 else "int"} dcl_idx;
% if dtype == "half":
#define DCL_LOAD(p) vload_half(0, (p))
#define DCL_LOADV(p) vload_half${vw}(0, (p))
#define DCL_STORE(v, p) vstore_half((v), 0, (p))
#define DCL_STOREV(x, p) vstore_half${vw}((x), 0, (p))
#define DCL_LOADH(p) vload_half${vw // 2}(0, (p))
% else:
## An unaligned vector load through a packed struct: PoCL compiles vloadN() to an out-of-line call that
## spills every accumulator around it; the packed struct becomes one unaligned vector move.
typedef struct __attribute__((packed)) { dcl_accv v; } dcl_unaligned;
typedef struct __attribute__((packed)) { dcl_acch v; } dcl_unaligned_half;
#define DCL_LOAD(p) (*(p))
#define DCL_LOADV(p) (((__global const dcl_unaligned*)(p))->v)
#define DCL_LOADH(p) (((__global const dcl_unaligned_half*)(p))->v)
#define DCL_STORE(v, p) (*(p) = (v))
#define DCL_STOREV(x, p) (((__global dcl_unaligned*)(p))->v = (x))
% endif
## min() and max() are out-of-line calls on PoCL too.
#define DCL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DCL_MAX(a, b) ((a) > (b) ? (a) : (b))
</%def>

## Coordinates stepped like an odometer, so loops over positions or rows divide once and then only count:
## increments the last of `names`; a coordinate reaching its entry of `extents` returns to 0 and carries into
## the one before it; a carry out of the first runs `carry_out`.
<%def name="odometer(names, extents, carry_out)">
% if names:
if (++${names[-1]} == ${extents[-1]}) {
    ${names[-1]} = 0;
    ${odometer(names[:-1], extents[:-1], carry_out)}
}
% else:
${carry_out}
% endif
</%def>

## Tiles walk "virtual" positions v of a padded grid whose rows are ps{nd-2} apart (ps{a}: the pitch of axis a,
## row-major). split_position declares the grid coordinates {c}0..{c}{nd-1} of v, with one division per axis;
## next_position steps them to v + 1 and moves a tile epilogue's output offset with them: by `step` along a
## row, worked out anew as `offset_expr` where the lanes wrap onto the next grid row.
<%def name="split_position(c, v, nd)">
            dcl_idx rem_${c} = ${v};
            % for a in range(nd - 1):
            int ${c}${a} = rem_${c} / ps${a}; rem_${c} -= (dcl_idx)${c}${a} * ps${a};
            % endfor
            int ${c}${nd - 1} = rem_${c};
</%def>
<%def name="next_position(c, nd, offset, offset_expr, step)">
% if nd > 1:
if (++${c}${nd - 1} == ps${nd - 2}) {
    ${c}${nd - 1} = 0;
    ${odometer([f"{c}{a}" for a in range(1, nd - 1)], [f"ps{a - 1} / ps{a}" for a in range(1, nd - 1)], f"++{c}0;")}
    ${offset} = ${offset_expr};
} else {
    ${offset} += ${step};
}
% else:
++${c}0;
${offset} += ${step};
% endif
</%def>

## Lane n of a tile's TM maps (private `tile`, TN lanes a map; `m_count` of them real) to
## base + map * plane + offset, unrolled when every map of the tile is real.
<%def name="store_lane(tm, tn, base, plane, offset)">
if (m_count == ${tm}) {
    % for mi in range(tm):
    DCL_STORE(tile[${mi * tn} + n], ${base} + ${mi} * ${plane} + ${offset});
    % endfor
} else {
    for (int mi = 0; mi < m_count; ++mi)
        DCL_STORE(tile[mi * ${tn} + n], ${base} + mi * ${plane} + ${offset});
}
</%def>
