## Shared prelude for every kernel family: the storage/accumulator types, loads and stores.
## dtype is the storage type ("float", "double" or "half"); half is storage-only (vload_half/vstore_half)
## and accumulates in float, so it works on devices without cl_khr_fp16.
<%def name="prelude(dtype, index_bits, vw, subgroups=False, target='')">
% if dtype == "double":
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
% endif
% if subgroups:
#pragma OPENCL EXTENSION cl_intel_subgroups : enable
% endif
typedef ${"float" if dtype == "half" else dtype} dcl_acc;
typedef ${"float" if dtype == "half" else dtype}${vw} dcl_accv;
## half a vector (DCL_LOADH), for the kernels that interleave two taps in one vector's lanes
<% half_vw = "" if vw == 2 else vw // 2 %>\
typedef ${"float" if dtype == "half" else dtype}${half_vw} dcl_acch;
## a pair (DCL_LOAD2), for the weights of two interleaved taps
typedef ${"float" if dtype == "half" else dtype}2 dcl_acc2;
typedef ${dtype} dcl_t;
typedef ${"long" if index_bits == 64 else "int"} dcl_idx;
% if dtype == "half":
#define DCL_LOAD(p) vload_half(0, (p))
#define DCL_LOADV(p) vload_half${vw}(0, (p))
#define DCL_STORE(v, p) vstore_half((v), 0, (p))
#define DCL_STOREV(x, p) vstore_half${vw}((x), 0, (p))
#define DCL_LOADH(p) vload_half${half_vw}(0, (p))
#define DCL_LOAD2(p) vload_half2(0, (p))
#define DCL_STOREH(x, p) vstore_half${half_vw}((x), 0, (p))
% else:
## An unaligned vector load through a packed struct: PoCL compiles vloadN() to an out-of-line call that
## spills every accumulator around it; the packed struct becomes one unaligned vector move.
typedef struct __attribute__((packed)) { dcl_accv v; } dcl_unaligned;
typedef struct __attribute__((packed)) { dcl_acch v; } dcl_unaligned_half;
typedef struct __attribute__((packed)) { dcl_acc2 v; } dcl_unaligned_pair;
#define DCL_LOAD(p) (*(p))
#define DCL_LOADV(p) (((__global const dcl_unaligned*)(p))->v)
#define DCL_LOADH(p) (((__global const dcl_unaligned_half*)(p))->v)
#define DCL_LOAD2(p) (((__global const dcl_unaligned_pair*)(p))->v)
#define DCL_STOREH(x, p) (((__global dcl_unaligned_half*)(p))->v = (x))
#define DCL_STORE(v, p) (*(p) = (v))
#define DCL_STOREV(x, p) (((__global dcl_unaligned*)(p))->v = (x))
% endif
## min() and max() are out-of-line calls on PoCL too.
#define DCL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DCL_MAX(a, b) ((a) > (b) ? (a) : (b))
## A work-item's ids, where the register-tiled kernels read them: their work function's arguments where it has
## target features of its own (kernel_head), else the work-item functions.
% if target:
#define DCL_WORK __attribute__((noinline, target("${target}"))) static void
#define DCL_GID(d) dcl_gid##d
% else:
#define DCL_GID(d) get_global_id(d)
% endif
</%def>

## A register-tiled kernel's head, and its tail after the closing brace. With `target` (LLVM target features
## beyond the device compiler's own: device_kind.target_features) the work is a function of its own compiled for
## them, which the kernel calls with its work-item's ids. It must not be inlined: PoCL inlines a kernel into the
## work-group function it generates, which is compiled for PoCL's target and drops the kernel's own.
<%def name="kernel_head(name, signature, target)">\
% if target:
DCL_WORK ${name}_work(const size_t dcl_gid0, const size_t dcl_gid1, const size_t dcl_gid2,
    ${params(signature)})\
% else:
__kernel void ${name}(${params(signature)})\
% endif
</%def>
<%def name="kernel_tail(name, signature, target)">
% if target:
__kernel void ${name}(${params(signature)})
{
    ${name}_work(get_global_id(0), get_global_id(1), get_global_id(2), ${signature.c_args()});
}
% endif
</%def>

## A kernel's parameter list, printed from its declared signature (deconvnd_cl/signatures.py): the launch code
## binds arguments by these names and with these types.
<%def name="params(signature)">${signature.c_params()}</%def>

## Register tile: accumulators acc{mi}_{j} for TM maps x NVEC vectors, set to `init` ("{mi}" in it: the map).
<%def name="accumulators(tm, nvec, init)">
% for mi in range(tm):
% for j in range(nvec):
    dcl_accv acc${mi}_${j} = ${init.replace('{mi}', str(mi))};
% endfor
% endfor
</%def>

## One multiply-accumulate step of the register tile: NVEC vectors of the streamed operand from `x` (a pointer
## expression; vector j at x + j*VW, or where x with "{j}" replaced by j points), TM scalars of the other from
## `w` (map mi at w + mi), a*b+c written out so the compiler contracts it (the fma()/mad() builtins are
## out-of-line calls on PoCL). Of the two operands, the one with fewer values (the NVEC vectors or the TM weights)
## is held in registers while the other is loaded one at a time, so a step needs TM*NVEC accumulators +
## min(TM, NVEC) + 1 registers: 3 maps x 4 vectors holding the 4 vectors took 17 of AVX2's 16 and spilled an
## accumulator to the stack in the inner loop (DCGAN out's forward, PoCL 3.0); holding the 3 weights it takes 16.
<%def name="mac_block(tm, nvec, vw, x, w)">
<%
def load_x(j):
    return f"const dcl_accv x{j} = DCL_LOADV({x.replace('{j}', str(j)) if '{j}' in x else f'{x} + {j * vw}'});"

def load_w(mi):
    return f"const dcl_acc w{mi}v = DCL_LOAD({w} + {mi});"

hold_x = nvec <= tm
held, streamed = ((range(nvec), load_x), (range(tm), load_w)) if hold_x else ((range(tm), load_w), (range(nvec), load_x))
%>\
            {
                % for h in held[0]:
                ${held[1](h)}
                % endfor
                % for s in streamed[0]:
                {
                    ${streamed[1](s)}
                    % for h in held[0]:
<% mi, j = (s, h) if hold_x else (h, s) %>\
                    acc${mi}_${j} = w${mi}v * x${j} + acc${mi}_${j};
                    % endfor
                }
                % endfor
            }
</%def>

## Register tiles over maps (the forward's XSource.OVER_MAPS, backward data's GySource.OVER_MAPS): TM maps in TM/VW
## vectors at TN positions, accumulator acc{n}_{j} holding maps j*VW .. j*VW + VW-1 of position n.
## Its accumulators set to the bias of the tile's maps: `maps` a group's maps, `first` the tile's first (names).
<%def name="over_maps_accumulators(tm, tn, vw, maps, first)">
    % for j in range(tm // vw):
    const dcl_accv bias${j} = (dcl_accv)(${", ".join(f"has_bias ? (dcl_acc)DCL_LOAD(bias + g * {maps} + DCL_MIN({first} + {j * vw + l}, {maps} - 1)) : (dcl_acc)0" for l in range(vw))});
    % endfor
    % for n in range(tn):
    dcl_accv ${", ".join(f"acc{n}_{j} = bias{j}" for j in range(tm // vw))};
    % endfor
</%def>
## One step: a tap's TM maps loaded as whole vectors from `w`, the streamed operand broadcast from `x` + px{n} at
## each position n (px{n}: the position's offset, the kernel's).
<%def name="over_maps_mac(tm, tn, vw, x, w)">
            {
                % for j in range(tm // vw):
                const dcl_accv w${j} = DCL_LOADV(${w} + ${j * vw});
                % endfor
                % for n in range(tn):
                {
                    const dcl_acc s${n} = DCL_LOAD(${x} + px${n});
                    % for j in range(tm // vw):
                    acc${n}_${j} = s${n} * w${j} + acc${n}_${j};
                    % endfor
                }
                % endfor
            }
</%def>
## The tile by position (TM maps each), stored for its `m_count` real maps at its `n_count` real positions: map
## mi of position n to base + mi * plane + `offset` ("n" in it: the position).
<%def name="over_maps_store(tm, tn, vw, base, plane, offset)">
    dcl_accv tile_v[${tm // vw * tn}];
    % for n in range(tn):
    % for j in range(tm // vw):
    tile_v[${n * (tm // vw) + j}] = acc${n}_${j};
    % endfor
    % endfor
    const dcl_acc* tile = (const dcl_acc*)tile_v;
    for (int n = 0; n < n_count; ++n)
        for (int mi = 0; mi < m_count; ++mi)
            DCL_STORE(tile[n * ${tm} + mi], ${base} + mi * ${plane} + ${offset});
</%def>

## The register tile spilled to private memory for a lane-by-lane epilogue: `tile` (dcl_acc, TM x NVEC*lanes)
## over tile_v; `value(mi, j)` gives what goes to vector j of map mi (default: the accumulator), of `vtype`.
<%def name="spill(tm, nvec, vtype='dcl_accv', value=None)">
    ${vtype} tile_v[${tm * nvec}];
    % for mi in range(tm):
    % for j in range(nvec):
    tile_v[${mi * nvec + j}] = ${value(mi, j) if value else f"acc{mi}_{j}"};
    % endfor
    % endfor
    const dcl_acc* tile = (const dcl_acc*)tile_v;
</%def>

## The spilled `tile`'s real maps (`m_count`, `lanes` elements each) from lane `first` on: map mi's lane n to
## base + mi * plane + n (a row tile moved back to the row's end stores only what the tile before it did not).
<%def name="store_from(lanes, first, base, plane)">
    for (int mi = 0; mi < m_count; ++mi)
        for (int n = ${first}; n < ${lanes}; ++n)
            DCL_STORE(tile[mi * ${lanes} + n], ${base} + mi * ${plane} + n);
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
## row-major). split_position declares the grid coordinates {c}0..{c}{nd-1} of v, with one division per axis.
<%def name="split_position(c, v, nd)">
            dcl_idx rem_${c} = ${v};
            % for a in range(nd - 1):
            int ${c}${a} = rem_${c} / ps${a}; rem_${c} -= (dcl_idx)${c}${a} * ps${a};
            % endfor
            int ${c}${nd - 1} = rem_${c};
</%def>

## A spilled tile's lanes (from grid coordinates {c}*, split_position's, of its first lane v0) stored a run of one
## grid row at a time: of a run, the lanes before the axes' bounds `bound(a)` are real positions, stored without
## a test each to base + map * plane + `offset` (of the grid coordinates), moving on by `step`; the rest are the
## row's padding columns. Testing every lane's coordinates and stepping them one by one cost depthwise layers
## 40% of their forward.
<%def name="store_rows(tm, tn, c, nd, bound, base, plane, offset, step)">
<%
last = nd - 1
row_inside = " && ".join(f"{c}{a} < {bound(a)}" for a in range(last)) or "true"
%>\
            const int lanes = (int)DCL_MIN((dcl_idx)${tn}, v_count - v0);
            for (int n0 = 0; n0 < lanes; ) {
                const int run = ${f"(int)DCL_MIN((dcl_idx)(lanes - n0), ps{last - 1} - {c}{last})" if nd > 1 else "lanes - n0"};
                const int stored = ${row_inside} ? (int)DCL_MAX((dcl_idx)0, DCL_MIN((dcl_idx)run, ${bound(last)} - ${c}${last})) : 0;
                dcl_idx at = ${offset};
                for (int n = n0; n < n0 + stored; ++n) {
                    ${store_lane(tm, tn, base, plane, "at")}
                    at += ${step};
                }
                n0 += run;
                % if nd > 1:
                ${c}${last} += run;
                if (${c}${last} == ps${last - 1}) {
                    ${c}${last} = 0;
                    ${odometer([f"{c}{a}" for a in range(1, last)], [f"ps{a - 1} / ps{a}" for a in range(1, last)], f"++{c}0;")}
                }
                % endif
            }
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

## The GPU strategy's backward kernels read gy where it lies: `result` = gy at residue-grid position `v` (shift
## included) of residue plane `res` (a pointer to its residue per axis), from map plane `base`; 0 outside gy.
## Grid coordinate c reads gy row (c + qlo) * stride + R (arguments ps, qlo, stride, out, os).
<%def name="gy_at(result, base, v, res, nd)">
        {
            dcl_idx rem_g = ${v}, off_g = 0;
            bool in_g = true;
            % for a in range(nd):
            {
                % if a < nd - 1:
                const dcl_idx ca = rem_g / ps${a}; rem_g -= ca * ps${a};
                % else:
                const dcl_idx ca = rem_g;
                % endif
                const dcl_idx ja = (ca + qlo${a}) * stride${a} + ${res}[${a}];
                in_g = in_g && ja >= 0 && ja < out${a};
                off_g += ja * os${a};
            }
            % endfor
            ${result} = in_g ? (dcl_acc)DCL_LOAD(${base} + off_g) : (dcl_acc)0;
        }
</%def>

## The GPU strategy's work-group GEMM: acc{i}_{j} += sum over k < `k_total` of A[m][k] * B[k][n] for the work-item's
## rows m = lm + i*WM and positions n = ln + j*WN. The reduction runs in slabs of KC: the work-group stages the
## slab's A (KC x M) and B (KC x N) in __local memory (`As`, `Bs`), each element loaded once by one work-item
## (`load_a(m, k)` / `load_b(k, n)`: defs that declare `dcl_acc value`, 0 outside the operand, reading only
## valid addresses whatever k), then every work-item reads its operands there. The caller declares the
## accumulators; barriers are reached by every work-item.
<%def name="workgroup_gemm(wm, wn, tm, tn, kc, k_total, load_a, load_b)">
<% M, N, items = wm * tm, wn * tn, wm * wn %>
    for (dcl_idx k0 = 0; k0 < ${k_total}; k0 += ${kc}) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < ${kc * M}; e += ${items}) {
            const dcl_idx kk = k0 + e / ${M};
            const int m = e % ${M};
${load_a("m", "kk")}
            As[e] = kk < ${k_total} ? value : (dcl_acc)0;
        }
        for (int e = lid; e < ${kc * N}; e += ${items}) {
            const dcl_idx kk = k0 + e / ${N};
            const int n = e % ${N};
${load_b("kk", "n")}
            Bs[e] = kk < ${k_total} ? value : (dcl_acc)0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < ${kc}; ++kk) {
${tile_mac(wm, wn, tm, tn, f"As + kk * {M} + lm", f"Bs + kk * {N} + ln")}
        }
    }
</%def>

## One reduction step of a GPU work-item's TM x TN register tile from __local memory: rows from `a` (WM apart),
## positions from `b` (WN apart). fma(): one rounding whatever the compiler's contraction choices, so results
## do not change with the build (Intel's CPU runtime contracted a*b+c differently in 32- and 64-bit builds).
<%def name="tile_mac(wm, wn, tm, tn, a, b)">
            {
                __local const dcl_acc* a_ = ${a};
                __local const dcl_acc* b_ = ${b};
                % for i in range(tm):
                const dcl_acc a${i} = a_[${i * wm}];
                % endfor
                % for j in range(tn):
                const dcl_acc b${j} = b_[${j * wn}];
                % endfor
                % for i in range(tm):
                % for j in range(tn):
                acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});
                % endfor
                % endfor
            }
</%def>

## The GPU kernels' reduction of `k_total` steps into the caller's accumulators: staged in __local memory (`As`
## [KC][M], `Bs` [KC][N]) by workgroup_gemm, or with `subgroup` passed between a subgroup's lanes by
## subgroup_gemm, after a barrier that publishes the caller's tables. `tables_after`: the caller reads its tables
## after the reduction, so a barrier follows it (a layer with no taps has no slab, whose barriers would do).
<%def name="reduction(wm, wn, tm, tn, kc, subgroup, k_total, load_a, load_b, tables_after)">
    __local dcl_acc* As = scratch;            // [KC][M]
    __local dcl_acc* Bs = scratch + ${kc * wm * tm};  // [KC][N]
% if subgroup:
    barrier(CLK_LOCAL_MEM_FENCE);  // the tables
${subgroup_gemm(wm, tm, tn, k_total, load_a, load_b)}
% else:
${workgroup_gemm(wm, wn, tm, tn, kc, k_total, load_a, load_b)}
    % if tables_after:
    barrier(CLK_LOCAL_MEM_FENCE);  // the tables, for a layer whose reduction had no slab
    % endif
% endif
</%def>

## The GPU backward kernels' tables in __local memory, loaded once by the work-group (`items` work-items): t_tap,
## per tap its residue plane and its shift; t_res, per residue plane its residue per axis.
<%def name="residue_tables(items, nd)">
    __local int* t_tap = tables;
    __local int* t_res = tables + 2 * ks;
    for (int e = lid; e < 2 * ks; e += ${items})
        t_tap[e] = tap_table[e];
    for (int e = lid; e < nplanes * ${nd}; e += ${items})
        t_res[e] = residues[e];
</%def>

## A GPU work-item's TM x TN register tile of scalar accumulators acc{i}_{j}, set to 0.
<%def name="tile_accumulators(tm, tn)">
% for i in range(tm):
% for j in range(tn):
    dcl_acc acc${i}_${j} = 0;
% endfor
% endfor
</%def>

## The cl_intel_subgroups path of the GPU GEMMs (subgroup = 1): no __local staging. The work-group's rows of
## subgroups (WN = 8 lanes, one lm each): per reduction step lane i < TM loads row lm + i*WM's A, every lane
## loads B for its positions ln + j*8, and the A values pass between the lanes by intel_sub_group_shuffle.
<%def name="subgroup_gemm(wm, tm, tn, k_total, load_a, load_b)">
    for (dcl_idx kk = 0; kk < ${k_total}; ++kk) {
        dcl_acc a_lane = 0;
        if (ln < ${tm}) {
            const int m = lm + ln * ${wm};
${load_a("m", "kk")}
            a_lane = value;
        }
        % for j in range(tn):
        dcl_acc b${j};
        {
            const int n = ln + ${j * 8};
${load_b("kk", "n")}
            b${j} = value;
        }
        % endfor
        % for i in range(tm):
        const dcl_acc a${i} = intel_sub_group_shuffle(a_lane, ${i});
        % for j in range(tn):
        acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});
        % endfor
        % endfor
    }
</%def>
