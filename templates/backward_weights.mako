## Backward weights, stage one of a deterministic two-stage reduction:
##     part[c, ci, co, k] = sum over chunk c of x[b, ci, i] * gy[b, co, i*stride + k*dilation - pad].
## Chunk c covers a fixed range of the flattened (batch, virtual position v) space of the padded plane grid, on which x
## (zero outside the input) and the stride residue planes of gy are laid out with the same row pitch, so both
## operands of a tap are read contiguously. A work-item owns TM input maps x TN output maps of one tap and
## accumulates vectors along v; lanes are summed in a fixed order. Chunks depend on the shape only, so results
## are bitwise identical for any thread count or local size. reduce.mako's finalize sums the chunks in order.
<%namespace name="c" file="common.mako"/>\
<%! HEX = "0123456789abcdef" %>\
${c.prelude(dtype, index_bits, vw)}
__kernel void ${name}(
    __global const dcl_t* restrict xpk, __global const dcl_t* restrict gyp, __global dcl_acc* restrict part,
    const int cig, const int cog, const int co_tiles, const int n_chunks, const dcl_idx chunk,
    const dcl_idx k_total, const dcl_idx v_end, const dcl_idx x_plane, const dcl_idx g_plane
    % for a in range(nd - 1):
    , const dcl_idx ps${a}
    % endfor
    )
{
    const int ch = get_global_id(0);
    if (ch >= n_chunks) return;
    const int ci0 = get_global_id(1) * ${tm};
    int rest = get_global_id(2);
    const int k = rest % ${ks}; rest /= ${ks};
    const int co0 = (rest % co_tiles) * ${tn};
    const int g = rest / co_tiles;
    const dcl_idx cin = (dcl_idx)cig * ${groups}, cout = (dcl_idx)cog * ${groups};

    ## Where tap k reads gy: residue plane R and row shift D - qlo per axis (see Geometry.backward_taps).
    int kr = k;
    dcl_idx r_lin = 0, shift = 0;
    % for a in reversed(range(nd)):
    {
        const int ka = kr % ${size[a]}; kr /= ${size[a]};
        const int t = ka * ${dilation[a]} - ${pad[a]};
        const int ra = ((t % ${stride[a]}) + ${stride[a]}) % ${stride[a]};
        r_lin += ra * ${plane_strides[a]};
        shift += (dcl_idx)((t - ra) / ${stride[a]} - (${qlo[a]}))${f" * ps{a}" if a < nd - 1 else ""};
    }
    % endfor

    % for mi in range(tm):
    % for ni in range(tn):
    dcl_accv acc${mi}_${ni} = (dcl_accv)(0);
    % endfor
    % endfor

    const dcl_idx hi = min((dcl_idx)ch * chunk + chunk, k_total);
    for (dcl_idx seg = (dcl_idx)ch * chunk; seg < hi; ) {   // segments of the chunk within one batch item
        const dcl_idx b = seg / v_end;
        const dcl_idx v_lo = seg - b * v_end, v_hi = min(v_end, v_lo + (hi - seg));
        % for mi in range(tm):
        __global const dcl_t* x${mi} = xpk + (b * cin + (dcl_idx)g * cig + min(ci0 + ${mi}, cig - 1)) * x_plane;
        % endfor
        % for ni in range(tn):
        __global const dcl_t* y${ni} = gyp + ((b * cout + (dcl_idx)g * cog + min(co0 + ${ni}, cog - 1)) * ${nplanes} + r_lin) * g_plane + shift;
        % endfor
        for (dcl_idx v = v_lo; v < v_hi; v += ${vw}) {
            % for mi in range(tm):
            const dcl_accv xv${mi} = DCL_LOADV(x${mi} + v);
            % endfor
            % for ni in range(tn):
            {
                const dcl_accv yv = DCL_LOADV(y${ni} + v);
                % for mi in range(tm):
                acc${mi}_${ni} = xv${mi} * yv + acc${mi}_${ni};
                % endfor
            }
            % endfor
        }
        seg += v_hi - v_lo;
    }

    __global dcl_acc* pb = part + (dcl_idx)ch * cin * cog * ${ks};
    % for mi in range(tm):
    % for ni in range(tn):
    if (ci0 + ${mi} < cig && co0 + ${ni} < cog)
        pb[(((dcl_idx)g * cig + ci0 + ${mi}) * cog + co0 + ${ni}) * ${ks} + k] = ${" + ".join(f"acc{mi}_{ni}.s{HEX[l]}" for l in range(vw))};
    % endfor
    % endfor
}
