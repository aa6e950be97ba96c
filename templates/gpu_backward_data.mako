## Backward data (input gradient), work-group tiled (the GPU strategy): an implicit GEMM
##     gx[ci, v] = sum over co, taps t of W[ci, co, t] * gy_R(t)[co, v + shift(t)]
## over the residue-plane grid's positions v (grid coordinate = input position; gpu_backward_data.py). A
## work-group of WN x WM work-items owns N = WN*TN positions x M = WM*TM input maps; work-item (ln, lm) holds
## maps lm + i*WM and positions ln + j*WN. The reduction is staged in __local memory, W and gy read where they
## lie (gy as zeros outside it):
##   window  in slabs of KC output maps: the slab's weights (KC x taps x M) and, per output map and residue
##           plane, one window of gy (N + halo) holding every tap's reads;
##   taps    (window = 0, for strides whose planes outgrow __local memory) common.mako's workgroup_gemm over
##           slabs of KC (output map, tap) pairs.
## No atomics; no work-item returns ahead of a barrier.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, 4, subgroup)}
<% M, N = wm * tm, wn * tn %>
## W's element for input map m and reduction step k = (co, tap t), and gy's for step k at position n: `value`,
## read from a valid address whatever m and k (workgroup_gemm's loads).
<%def name="load_w(m, k)">
            const int ci = DCL_MIN(m0 + ${m}, cig - 1), co = DCL_MIN(${k} / ks, cog - 1), t = ${k} % ks;
            const dcl_acc value = m0 + ${m} < cig ? (dcl_acc)DCL_LOAD(wg + ((dcl_idx)ci * cog + co) * ks + t) : (dcl_acc)0;
</%def>
<%def name="load_gy(k, n)">
            const int co = DCL_MIN(${k} / ks, cog - 1), t = ${k} % ks;
            dcl_acc value;
${c.gy_at("value", "gyb + (dcl_idx)co * out_size", f"v0 + shift_min + {n} + t_tap[2 * t + 1]", "(t_res + t_tap[2 * t] * %d)" % nd, nd)}
</%def>
__kernel __attribute__((reqd_work_group_size(${wn}, ${wm}, 1)))${" __attribute__((intel_reqd_sub_group_size(8)))" if subgroup else ""}
void ${name}(${c.params(signatures[""])})
{
    const int ln = get_local_id(0), lm = get_local_id(1), lid = lm * ${wn} + ln;
    const int m0 = get_group_id(1) * ${M};
    const int b = get_group_id(2) / groups, g = get_group_id(2) % groups;
    const dcl_idx v0 = (dcl_idx)get_group_id(0) * ${N};
    const int window = ${N} + halo;
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;

${c.residue_tables(wm * wn, nd)}

${c.tile_accumulators(tm, tn)}
    __global const dcl_t* gyb = gy + ((dcl_idx)b * cout + (dcl_idx)g * cog) * out_size;
    __global const dcl_t* wg = w + (dcl_idx)g * cig * cog * ks;
% if window:
    __local dcl_acc* As = scratch;                          // [KC][taps][M]
    __local dcl_acc* Bs = scratch + ${kc} * ks * ${M};        // [KC][planes][window]
    for (int co0 = 0; co0 < cog; co0 += ${kc}) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < ${kc} * nplanes * window; e += ${wm * wn}) {
            const int co = e / (nplanes * window), r = (e / window) % nplanes, u = e % window;
            dcl_acc value = 0;
            if (co0 + co < cog) {
${c.gy_at("value", "gyb + (dcl_idx)(co0 + co) * out_size", "v0 + shift_min + u", "(t_res + r * %d)" % nd, nd)}
            }
            Bs[e] = value;
        }
        for (int e = lid; e < ${kc} * ks * ${M}; e += ${wm * wn}) {
            const int co = e / (ks * ${M}), t = (e / ${M}) % ks, ci = m0 + e % ${M};
            As[e] = co0 + co < cog && ci < cig
                ? (dcl_acc)DCL_LOAD(wg + ((dcl_idx)ci * cog + co0 + co) * ks + t) : (dcl_acc)0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int co = 0; co < ${kc}; ++co) {
            for (int t = 0; t < ks; ++t)
${c.tile_mac(wm, wn, tm, tn, f"As + (co * ks + t) * {M} + lm", "Bs + (co * nplanes + t_tap[2 * t]) * window + t_tap[2 * t + 1] + ln")}
        }
    }
% else:
${c.reduction(wm, wn, tm, tn, kc, subgroup, "cog * ks", load_w, load_gy, True)}
% endif

    // Epilogue: grid position v is input position c when every c < in.
    __global dcl_t* gxb = gx + ((dcl_idx)b * cin + (dcl_idx)g * cig) * in_size;
    % for jn in range(tn):
    {
        const dcl_idx v = v0 + ln + ${jn * wn};
        if (v < v_count) {
${c.split_position("c", "v", nd)}
            if (${" && ".join(f"c{a} < in{a}" for a in range(nd))}) {
                const dcl_idx o = ${" + ".join(f"(dcl_idx)c{a} * is{a}" for a in range(nd))};
                % for i in range(tm):
                if (m0 + lm + ${i * wm} < cig)
                    DCL_STORE(acc${i}_${jn}, gxb + (dcl_idx)(m0 + lm + ${i * wm}) * in_size + o);
                % endfor
            }
        }
    }
    % endfor
}
