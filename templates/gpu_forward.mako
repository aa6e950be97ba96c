## Forward deconvolution, work-group tiled (the GPU strategy): per group of stride phases an implicit GEMM
##     y[row = (phase f, co), v] = sum over k = (ci, tap t) of W[ci, co, tap(f, t)] * xp[ci, v + off(t)]
## over the padded input grid's positions v (gpu_forward.py: the groups, their tables and the grid). A
## work-group of WN x WM work-items owns N = WN*TN positions x M = WM*TM rows; work-item (ln, lm) holds rows
## lm + i*WM and positions ln + j*WN. The reduction is staged in __local memory, W read where it lies:
##   window  in slabs of KC input maps: per map one window of x (N + halo) holding every tap's reads, and the
##           slab's weights (KC x taps x M), so each x element is read once per slab, not once per tap;
##   taps    (window = 0, for halos too wide for __local memory) common.mako's workgroup_gemm over slabs of KC
##           (input map, tap) pairs.
## No atomics: each output is written once, by the work-item that owns it, after a fixed-order reduction.
## No work-item returns ahead of a barrier, not even a whole work-group at once: PoCL 3.0 cannot tell that such
## a return is uniform when its condition comes from memory, and then computed with local memory of the
## previous launch (wrong results that depended on the kernel's previous call).
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, 4, subgroup)}
<%
M, N = wm * tm, wn * tn
col = {column: i for i, column in enumerate(group_columns)}
%>
## W's element for row m and reduction step k = (ci, tap t), and x's for step k at position n: `value`, read
## from a valid address whatever m and k (workgroup_gemm's loads).
<%def name="load_w(m, k)">
            const int row = DCL_MIN(m0 + ${m}, rows - 1), f = row / cog, co = row - f * cog;
            const int ci_w = DCL_MIN(${k} / ntaps, cig - 1), t = ${k} % ntaps;
            const dcl_acc value = m0 + ${m} < rows
                ? (dcl_acc)DCL_LOAD(wg + ((dcl_idx)ci_w * cog + co) * ks + t_k[f * ntaps + t]) : (dcl_acc)0;
</%def>
<%def name="load_x(k, n)">
            const int ci = DCL_MIN(${k} / ntaps, cig - 1), t = ${k} % ntaps;
            const dcl_acc value = (dcl_acc)DCL_LOAD(xb + (dcl_idx)ci * x_plane + ${n} + t_off[t]);
</%def>
__kernel __attribute__((reqd_work_group_size(${wn}, ${wm}, 1)))${" __attribute__((intel_reqd_sub_group_size(8)))" if subgroup else ""}
void ${name}(${c.params(signatures[""])})
{
    const int ln = get_local_id(0), lm = get_local_id(1), lid = lm * ${wn} + ln;
    const int j = row_tiles[2 * get_group_id(1)], m0 = row_tiles[2 * get_group_id(1) + 1];
    __global const dcl_idx* gi = group_info + j * ${len(group_columns)};
    const int nph = gi[${col["phases"]}], ntaps = gi[${col["taps"]}], n_tiles = gi[${col["n_tiles"]}];
    const int halo = gi[${col["halo"]}];
    const bool active = get_group_id(0) < n_tiles;  // a group with fewer position tiles: compute, store nothing
    const int b = get_group_id(2) / groups, g = get_group_id(2) % groups;
    const dcl_idx v0 = gi[${col["gs"]}] + (dcl_idx)(active ? get_group_id(0) : 0) * ${N}, ve = active ? gi[${col["ge"]}] : 0;
    const int rows = nph * cog;
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;

    // the group's tables, once: tap offsets, W's tap per (phase, tap), and per phase its q range and r - pad
    __local int* t_off = tables;
    __local int* t_k = tables + max_taps;
    __local int* t_phase = t_k + max_phases * max_taps;
    for (int e = lid; e < ntaps; e += ${wm * wn})
        t_off[e] = tap_offsets[gi[${col["tap_start"]}] + e];
    for (int e = lid; e < nph * ntaps; e += ${wm * wn})
        t_k[e] = taps_k[phase_info[(gi[${col["phase_start"]}] + e / ntaps) * ${1 + 3 * nd}] + e % ntaps];
    for (int e = lid; e < nph * ${3 * nd}; e += ${wm * wn})
        t_phase[e] = phase_info[(gi[${col["phase_start"]}] + e / ${3 * nd}) * ${1 + 3 * nd} + 1 + e % ${3 * nd}];

${c.tile_accumulators(tm, tn)}
    __global const dcl_t* xb = xp + ((dcl_idx)b * cin + (dcl_idx)g * cig) * x_plane + v0;
    __global const dcl_t* wg = w + (dcl_idx)g * cig * cog * ks;
% if window:
    const int width = ${N} + halo;
    __local dcl_acc* As = scratch;                        // [KC][taps][M]
    __local dcl_acc* Bs = scratch + ${kc} * ntaps * ${M};   // [KC][width]: x from v0 - halo on
    for (int ci0 = 0; ci0 < cig; ci0 += ${kc}) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < ${kc} * width; e += ${wm * wn}) {
            const int ci = e / width, u = e - ci * width;
            Bs[e] = ci0 + ci < cig ? (dcl_acc)DCL_LOAD(xb + (dcl_idx)(ci0 + ci) * x_plane + u - halo) : (dcl_acc)0;
        }
        for (int e = lid; e < ${kc} * ntaps * ${M}; e += ${wm * wn}) {
            const int m = e % ${M};
            const int ci_a = ci0 + e / (ntaps * ${M});
${load_w("m", f"(ci_a * ntaps + (e / {M}) % ntaps)")}
            As[e] = ci_a < cig ? value : (dcl_acc)0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int ci = 0; ci < ${kc}; ++ci) {
            for (int t = 0; t < ntaps; ++t)
${c.tile_mac(wm, wn, tm, tn, f"As + (ci * ntaps + t) * {M} + lm", "Bs + ci * width + halo + t_off[t] + ln")}
        }
    }
% else:
${c.reduction(wm, wn, tm, tn, kc, subgroup, "cig * ntaps", load_w, load_x, True)}
% endif

    // Epilogue: position v's grid coordinates c (one decomposition for every phase: their output boxes lie in the
    // grid); row (phase f, co) stores it when c lies in f's box, at o = c * stride + origin_f.
    % for jn in range(tn):
    {
        const dcl_idx v = v0 + ln + ${jn * wn};
${c.split_position("c", "v", nd)}
        % for i in range(tm):
        {
            const int row = m0 + lm + ${i * wm};
            if (v < ve && row < rows) {
                const int f = row / cog, co = row - f * cog;
                __local const int* ph = t_phase + f * ${3 * nd};
                if (${" && ".join(f"c{a} >= ph[{a}] && c{a} < ph[{a}] + ph[{nd + a}]" for a in range(nd))}) {
                    const dcl_idx o = ${" + ".join(f"((dcl_idx)c{a} * stride{a} + ph[{2 * nd + a}]) * os{a}" for a in range(nd))};
                    const dcl_acc bv = has_bias ? (dcl_acc)DCL_LOAD(bias + g * cog + co) : (dcl_acc)0;
                    DCL_STORE(acc${i}_${jn} + bv, y + ((dcl_idx)b * cout + (dcl_idx)g * cog + co) * out_size + o);
                }
            }
        }
        % endfor
    }
    % endfor
}
