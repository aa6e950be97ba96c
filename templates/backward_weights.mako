## Backward weights, stage one of a deterministic two-stage reduction:
##     part[c, ci, co, k] = sum over chunk c of x[b, ci, i] * gy[b, co, i*stride + k*dilation - pad].
## Chunk c covers a fixed range of the flattened (batch, virtual position v) space of the padded plane grid, on
## which x (zero outside the input) and the stride residue planes of gy are laid out with the same row pitch, so
## both operands of a tap advance together. A work-item owns TM input maps x TN output maps of one tap k.
## Two layouts (tile[3]):
##   0  gy planar: TM x TN vector accumulators along v, lanes summed in a fixed order at the end
##      (for few output maps per group: depthwise and narrow layers);
##   1  gy channels-last (pack's _cl kernel): accumulators are vectors over TN output maps, one scalar x per
##      input map per position, a register-tiled GEMM like the forward's.
## Chunks depend on the shape only, so results are bitwise identical for any thread count or local size.
## reduce.mako's finalize sums the chunks in order.
<%namespace name="c" file="common.mako"/>\
<%! HEX = "0123456789abcdef" %>\
${c.prelude(dtype, index_bits, vw)}
<% nvec = tn // vw %>
__kernel void ${name}(
    __global const dcl_t* restrict xpk, __global const dcl_t* restrict gyp, __global dcl_acc* restrict part,
    const int cig, const int cog, const int ci_tiles, const int co_tiles, const int n_chunks, const dcl_idx chunk,
    const dcl_idx k_total, const dcl_idx v_end, const dcl_idx x_plane, const dcl_idx g_plane, const int cpad
    % for a in range(nd - 1):
    , const dcl_idx ps${a}
    % endfor
    )
{
    const int ci0 = get_global_id(0) * ${tm};
    if (get_global_id(0) >= ci_tiles) return;
    const int g = get_global_id(1) / co_tiles;
    const int co0 = (get_global_id(1) % co_tiles) * ${tn};
    const int k = get_global_id(2) % ${ks};
    const int ch = get_global_id(2) / ${ks};
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

% if layout == 0:
    % for mi in range(tm):
    % for ni in range(tn):
    dcl_accv acc${mi}_${ni} = (dcl_accv)(0);
    % endfor
    % endfor
% else:
    % for mi in range(tm):
    % for j in range(nvec):
    dcl_accv acc${mi}_${j} = (dcl_accv)(0);
    % endfor
    % endfor
% endif

    const dcl_idx hi = DCL_MIN((dcl_idx)ch * chunk + chunk, k_total);
    for (dcl_idx seg = (dcl_idx)ch * chunk; seg < hi; ) {   // segments of the chunk within one batch item
        const dcl_idx b = seg / v_end;
        const dcl_idx v_lo = seg - b * v_end, v_hi = DCL_MIN(v_end, v_lo + (hi - seg));
        % for mi in range(tm):
        __global const dcl_t* x${mi} = xpk + (b * cin + (dcl_idx)g * cig + DCL_MIN(ci0 + ${mi}, cig - 1)) * x_plane;
        % endfor
% if layout == 0:
        % for ni in range(tn):
        __global const dcl_t* y${ni} = gyp + ((b * cout + (dcl_idx)g * cog + DCL_MIN(co0 + ${ni}, cog - 1)) * ${nplanes} + r_lin) * g_plane + shift;
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
% else:
        __global const dcl_t* yb = gyp + ((b * ${nplanes} + r_lin) * g_plane + shift) * cpad + (dcl_idx)g * cog + co0;
        for (dcl_idx v = v_lo; v < v_hi; ++v) {
            % for j in range(nvec):
            const dcl_accv y${j} = DCL_LOADV(yb + v * cpad + ${j * vw});
            % endfor
            % for mi in range(tm):
            {
                const dcl_acc xs = DCL_LOAD(x${mi} + v);
                % for j in range(nvec):
                acc${mi}_${j} = xs * y${j} + acc${mi}_${j};
                % endfor
            }
            % endfor
        }
% endif
        seg += v_hi - v_lo;
    }

    __global dcl_acc* pb = part + (dcl_idx)ch * cin * cog * ${ks};
% if layout == 0:
    % for mi in range(tm):
    % for ni in range(tn):
    if (ci0 + ${mi} < cig && co0 + ${ni} < cog)
        pb[(((dcl_idx)g * cig + ci0 + ${mi}) * cog + co0 + ${ni}) * ${ks} + k] = ${" + ".join(f"acc{mi}_{ni}.s{HEX[l]}" for l in range(vw))};
    % endfor
    % endfor
% else:
    dcl_accv tile_v[${tm * nvec}];
    % for mi in range(tm):
    % for j in range(nvec):
    tile_v[${mi * nvec + j}] = acc${mi}_${j};
    % endfor
    % endfor
    const dcl_acc* tile = (const dcl_acc*)tile_v;
    const int m_count = DCL_MIN(${tm}, cig - ci0), n_count = DCL_MIN(${tn}, cog - co0);
    for (int mi = 0; mi < m_count; ++mi)
        for (int ni = 0; ni < n_count; ++ni)
            pb[(((dcl_idx)g * cig + ci0 + mi) * cog + co0 + ni) * ${ks} + k] = tile[mi * ${tn} + ni];
% endif
}
