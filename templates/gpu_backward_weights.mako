## Backward weights, work-group tiled (the GPU strategy): stage one of the two-stage reduction as an implicit GEMM
##     part[chunk, ci, (co, t)] = sum over steps k = (b, v) of the chunk of x[b, ci, v] * gy_R(t)[b, co, v + shift(t)]
## over the residue-plane grid's positions v (grid coordinate = input position; x is 0 where v is past the
## input), by common.mako's workgroup_gemm: a work-group of WN x WM work-items owns N = WN*TN columns (output
## map, tap) x M = WM*TM input maps, the reduction staged in __local memory in slabs of KC steps, x and gy read
## where they lie. Each partial element is written once; chunk boundaries come from the shape, so the sum's
## order is fixed. No work-item returns ahead of a barrier.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, 4, subgroup)}
<% M, N = wm * tm, wn * tn %>
## x at step k for input map m, and gy for step k at column n = (co, t): `value`, read from a valid address
## whatever m, n and k (workgroup_gemm's loads).
<%def name="load_x(m, k)">
            const dcl_idx step = DCL_MIN(k_begin + ${k}, steps - 1);
            const int b = step / v_count;
            const dcl_idx v = step - (dcl_idx)b * v_count;
            const int ci = DCL_MIN(m0 + ${m}, cig - 1);
${c.split_position("c", "v", nd)}
            const bool inside = m0 + ${m} < cig && ${" && ".join(f"c{a} < in{a}" for a in range(nd))};
            const dcl_acc value = inside ? (dcl_acc)DCL_LOAD(x + ((dcl_idx)b * cin + (dcl_idx)g * cig + ci) * in_size
                                                            + ${" + ".join(f"(dcl_idx)c{a} * is{a}" for a in range(nd))}) : (dcl_acc)0;
</%def>
<%def name="load_gy(k, n)">
            const dcl_idx step = DCL_MIN(k_begin + ${k}, steps - 1);
            const int b = step / v_count;
            const dcl_idx v = step - (dcl_idx)b * v_count;
            const int col = DCL_MIN(n0 + ${n}, cog * ks - 1), co = col / ks, t = col - co * ks;
            dcl_acc value;
${c.gy_at("value", "gy + ((dcl_idx)b * cout + (dcl_idx)g * cog + co) * out_size", "v + shift_min + t_tap[2 * t + 1]", "(t_res + t_tap[2 * t] * %d)" % nd, nd)}
            {   // only real input positions: gy meets exactly the x values it meets in the definition, so a NaN or
                // Inf in gy never meets a padding zero (0 * Inf would be NaN)
${c.split_position("c", "v", nd)}
                if (!(${" && ".join(f"c{a} < in{a}" for a in range(nd))}))
                    value = 0;
            }
</%def>
__kernel __attribute__((reqd_work_group_size(${wn}, ${wm}, 1)))${" __attribute__((intel_reqd_sub_group_size(8)))" if subgroup else ""}
void ${name}(${c.params(signatures[""])})
{
    const int ln = get_local_id(0), lm = get_local_id(1), lid = lm * ${wn} + ln;
    const int n0 = get_group_id(0) * ${N}, m0 = get_group_id(1) * ${M};
    const int g = get_group_id(2) % groups, chunk = get_group_id(2) / groups;
    const dcl_idx k_begin = (dcl_idx)chunk * chunk_steps;
    const dcl_idx k_count = DCL_MIN(chunk_steps, steps - k_begin);
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;

${c.residue_tables(wm * wn, nd)}

${c.tile_accumulators(tm, tn)}
${c.reduction(wm, wn, tm, tn, kc, subgroup, "k_count", load_x, load_gy, False)}

    // part[chunk][g * cig + ci][col], col = co * ks + t: W's layout
    __global dcl_acc* pb = part + (dcl_idx)chunk * w_size + ((dcl_idx)g * cig) * cog * ks;
    % for i in range(tm):
    % for jn in range(tn):
    if (m0 + lm + ${i * wm} < cig && n0 + ln + ${jn * wn} < cog * ks)
        pb[(dcl_idx)(m0 + lm + ${i * wm}) * cog * ks + n0 + ln + ${jn * wn}] = acc${i}_${jn};
    % endfor
    % endfor
}
