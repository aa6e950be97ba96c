## Forward deconvolution, owner-side: for each stride phase r (o + pad = q*stride + r) a register-tiled
## implicit GEMM. A work-item owns TM output maps x TN consecutive "virtual" positions v of the phase's
## output grid laid over the padded input grid (rows PS apart), so the input reads of a tap are TN contiguous
## elements. Positions past a row's end are computed on padding and never stored.
## Taps that reach phase r are known here, so the tap loop is unrolled with constant offsets and no tests.
## W is first repacked (_wpack) so each work-item streams its weights contiguously: wp[g][co tile][ci][tap][TM],
## taps in phase order, maps past cog zero-filled.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, vw)}
<%
    nvec = tn // vw
    tap_order = [sum(kk * st for kk, st in zip(k, kstrides)) for r, taps in phases for k, m in taps]
    tap_base = [sum(len(taps) for r, taps in phases[:p]) for p in range(len(phases))]
%>
__constant int ${name}_tap_order[${ks}] = {${", ".join(str(t) for t in tap_order)}};

__kernel void ${name}_wpack(__global const dcl_t* restrict w, __global dcl_t* restrict wp, const int cig,
                            const int cog, const int co_tiles, const dcl_idx rows)
{
    const dcl_idx row = get_global_id(0);   // (g, co tile, ci)
    if (row >= rows) return;
    const int ci = row % cig, cot = (row / cig) % co_tiles, g = row / cig / co_tiles;
    __global dcl_t* d = wp + row * ${ks * tm};
    for (int mi = 0; mi < ${tm}; ++mi) {
        const int co = cot * ${tm} + mi;
        __global const dcl_t* s = w + (((dcl_idx)g * cig + ci) * cog + DCL_MIN(co, cog - 1)) * ${ks};
        for (int t = 0; t < ${ks}; ++t)
            DCL_STORE(co < cog ? (dcl_acc)DCL_LOAD(s + ${name}_tap_order[t]) : (dcl_acc)0, d + t * ${tm} + mi);
    }
}

## One launch covers every phase: dimension 0 runs over (phase, map tile) with map tiles fastest, so the
## work-groups that read overlapping input tiles run back to back. Per phase the host passes, in phase_info:
## v_tiles, v_count, base, then q0 and the extent of q per axis (PHASE_INFO entries a phase).
<% info = 3 + 2 * nd %>
## Epilogue of phase r: store the lanes of the tile that are real output positions, o = q*stride + r - pad.
## The grid coordinates of v0 and the output offset are worked out once; lane by lane the offset then moves by
## the last axis' stride, and is worked out anew only where the lanes wrap onto the next grid row. (For layers
## with few maps per group this epilogue is most of a work-item's time.)
<%def name="store_tile(r)">
        {
            const dcl_acc* tile = (const dcl_acc*)tile_v;
            __global dcl_t* yb = y + ((dcl_idx)b * cout + (dcl_idx)g * cog + co0) * out_size;
            const int m_count = DCL_MIN(${tm}, cog - co0);
            % for a in range(nd):
            const dcl_idx q0_${a} = info[${3 + 2 * a}], qe_${a} = info[${4 + 2 * a}];
            % endfor
${c.split_position("qq", "v0", nd)}
<% offset = " + ".join(f"((q0_{a} + qq{a}) * {stride[a]} + {r[a] - pad[a]}) * os{a}" for a in range(nd)) %>\
            dcl_idx yo = ${offset};
            for (int n = 0; n < ${tn} && v0 + n < v_count; ++n) {
                if (${" && ".join(f"qq{a} < qe_{a}" for a in range(nd))}) {
                    ${c.store_lane(tm, tn, "yb", "out_size", "yo")}
                }
${c.next_position("qq", nd, "yo", offset, f"{stride[nd - 1]} * os{nd - 1}")}
            }
        }
</%def>
__kernel void ${name}(
    __global const dcl_t* restrict xp, __global const dcl_t* restrict wp, __global const dcl_t* restrict bias,
    __global dcl_t* restrict y, __global const dcl_idx* restrict phase_info, const int has_bias, const int cig,
    const int cog, const int co_tiles, const dcl_idx x_plane, const dcl_idx out_size
    % for a in range(nd - 1):
    , const dcl_idx ps${a}
    % endfor
    % for a in range(nd):
    , const dcl_idx os${a}
    % endfor
    )
{
    const int map_tiles = co_tiles * ${groups};
    if (get_global_id(0) >= ${len(phases)} * map_tiles) return;
    const int p = get_global_id(0) / map_tiles, mt = get_global_id(0) % map_tiles;
    __global const dcl_idx* info = phase_info + p * ${info};
    const int vt = get_global_id(1);
    if (vt >= info[0]) return;
    const dcl_idx v_count = info[1];
    const int b = get_global_id(2);
    const int g = mt / co_tiles;
    const int co0 = (mt % co_tiles) * ${tm};
    const dcl_idx v0 = (dcl_idx)vt * ${tn};
    const dcl_idx cin = (dcl_idx)cig * ${groups}, cout = (dcl_idx)cog * ${groups};
    __global const dcl_t* xb = xp + ((dcl_idx)b * cin + (dcl_idx)g * cig) * x_plane + info[2] + v0;
    dcl_accv tile_v[${tm * nvec}];
    % for mi in range(tm):
    const dcl_acc b${mi} = has_bias ? (dcl_acc)DCL_LOAD(bias + g * cog + DCL_MIN(co0 + ${mi}, cog - 1)) : (dcl_acc)0;
    % endfor

    switch (p) {
    % for p, (r, taps) in enumerate(phases):
    case ${p}: {
        % for t, (k, m) in enumerate(taps):
        const dcl_idx off${t} = -(${" + ".join(f"{m[a]} * ps{a}" for a in range(nd - 1)) + (" + " if nd > 1 else "")}${m[nd - 1]});
        % endfor
        __global const dcl_t* wb = wp + ((dcl_idx)mt * cig * ${ks} + ${tap_base[p]}) * ${tm};
        % for mi in range(tm):
        % for j in range(nvec):
        dcl_accv acc${mi}_${j} = (dcl_accv)(b${mi});
        % endfor
        % endfor
        % if taps:
        for (int ci = 0; ci < cig; ++ci) {
            % for t, (k, m) in enumerate(taps):
            {
                % for j in range(nvec):
                const dcl_accv x${j} = DCL_LOADV(xb + off${t} + ${j * vw});
                % endfor
                % for mi in range(tm):
                const dcl_acc w${mi}v = DCL_LOAD(wb + ${t * tm + mi});
                % for j in range(nvec):
                acc${mi}_${j} = w${mi}v * x${j} + acc${mi}_${j};
                % endfor
                % endfor
            }
            % endfor
            xb += x_plane;
            wb += ${ks * tm};
        }
        % endif
        % for mi in range(tm):
        % for j in range(nvec):
        tile_v[${mi * nvec + j}] = acc${mi}_${j};
        % endfor
        % endfor
        ${store_tile(r)}
        break;
    }
    % endfor
    }

}
