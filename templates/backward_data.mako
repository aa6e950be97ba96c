## Backward data (input gradient): a strided direct convolution of the output gradient with W,
##     gx[b, ci, i] = sum_{co, k} gy[b, co, i*stride + k*dilation - pad] * W[ci, co, k].
## The host splits gy into stride residue planes (j = (i + D)*stride + R, see Geometry.backward_taps) with zero
## borders, so every tap reads TN contiguous elements at a constant offset. A work-item owns TM input maps x TN
## virtual positions of the padded plane grid (rows PS apart); positions past a row's end are never stored.
## W is first repacked (_wpack) so each work-item streams its weights contiguously: wp[g][ci tile][co][tap][TM],
## maps past cig zero-filled.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, vw)}
<% nvec = tn // vw %>
__kernel void ${name}_wpack(__global const dcl_t* restrict w, __global dcl_t* restrict wp, const int cig,
                            const int cog, const int ci_tiles, const dcl_idx rows)
{
    const dcl_idx row = get_global_id(0);   // (g, ci tile, co)
    if (row >= rows) return;
    const int co = row % cog, cit = (row / cog) % ci_tiles, g = row / cog / ci_tiles;
    __global dcl_t* d = wp + row * ${ks * tm};
    for (int mi = 0; mi < ${tm}; ++mi) {
        const int ci = cit * ${tm} + mi;
        __global const dcl_t* s = w + (((dcl_idx)g * cig + DCL_MIN(ci, cig - 1)) * cog + co) * ${ks};
        for (int t = 0; t < ${ks}; ++t)
            DCL_STORE(ci < cig ? (dcl_acc)DCL_LOAD(s + t) : (dcl_acc)0, d + t * ${tm} + mi);
    }
}

__kernel void ${name}(
    __global const dcl_t* restrict gyp, __global const dcl_t* restrict wp, __global dcl_t* restrict gx,
    const int cig, const int cog, const int ci_tiles, const int v_tiles, const dcl_idx plane,
    const dcl_idx v_count, const dcl_idx in_size
    % for a in range(nd - 1):
    , const dcl_idx ps${a}
    % endfor
    % for a in range(nd):
    , const int in${a}, const dcl_idx is${a}
    % endfor
    )
{
    // dimension 0 (the fastest on CPU devices) runs over map tiles, so the work-groups that share an input
    // tile run back to back while it is still in cache
    const int mt = get_global_id(0);
    if (mt >= ci_tiles * ${groups}) return;
    const int vt = get_global_id(1);
    const int b = get_global_id(2);
    const int g = mt / ci_tiles;
    const int ci0 = (mt % ci_tiles) * ${tm};
    const dcl_idx v0 = (dcl_idx)vt * ${tn};
    const dcl_idx cin = (dcl_idx)cig * ${groups}, cout = (dcl_idx)cog * ${groups};

    __global const dcl_t* gb = gyp + ((dcl_idx)b * cout + (dcl_idx)g * cog) * ${nplanes} * plane + v0;
    % for t, (k, rr, dd) in enumerate(taps):
    const dcl_idx off${t} = ${rr} * plane + ${" + ".join(f"{dd[a] - qlo[a]} * ps{a}" for a in range(nd - 1)) + (" + " if nd > 1 else "")}${dd[nd - 1] - qlo[nd - 1]};
    % endfor
    __global const dcl_t* wb = wp + (dcl_idx)mt * cog * ${ks * tm};
    % for mi in range(tm):
    % for j in range(nvec):
    dcl_accv acc${mi}_${j} = (dcl_accv)(0);
    % endfor
    % endfor

    for (int co = 0; co < cog; ++co) {
        % for t, (k, rr, dd) in enumerate(taps):
        {
            % for j in range(nvec):
            const dcl_accv x${j} = DCL_LOADV(gb + off${t} + ${j * vw});
            % endfor
            % for mi in range(tm):
            const dcl_acc w${mi}v = DCL_LOAD(wb + ${t * tm + mi});
            % for j in range(nvec):
            acc${mi}_${j} = w${mi}v * x${j} + acc${mi}_${j};
            % endfor
            % endfor
        }
        % endfor
        gb += ${nplanes} * plane;
        wb += ${ks * tm};
    }

    // Epilogue. Input positions are contiguous along a row, so a tile whose TN lanes are all real positions of
    // one row (the common case) is stored as whole vectors straight from the accumulators; other tiles are
    // spilled to private memory and stored lane by lane, the real positions only.
    __global dcl_t* xb = gx + ((dcl_idx)b * cin + (dcl_idx)g * cig + ci0) * in_size;
    const int m_count = DCL_MIN(${tm}, cig - ci0);
${c.split_position("i", "v0", nd)}
    if (m_count == ${tm} && i${nd - 1} + ${tn} <= in${nd - 1}${"".join(f" && i{a} < in{a}" for a in range(nd - 1))}) {
        __global dcl_t* xr = xb + ${" + ".join(f"(dcl_idx)i{a} * is{a}" for a in range(nd))};
        % for mi in range(tm):
        % for j in range(nvec):
        DCL_STOREV(acc${mi}_${j}, xr + ${mi} * in_size + ${j * vw});
        % endfor
        % endfor
        return;
    }
    dcl_accv tile_v[${tm * nvec}];
    % for mi in range(tm):
    % for j in range(nvec):
    tile_v[${mi * nvec + j}] = acc${mi}_${j};
    % endfor
    % endfor
    const dcl_acc* tile = (const dcl_acc*)tile_v;
    for (int n = 0; n < ${tn} && v0 + n < v_count; ++n) {
        if (${" && ".join(f"i{a} < in{a}" for a in range(nd))}) {
            const dcl_idx xo = ${" + ".join(f"(dcl_idx)i{a} * is{a}" for a in range(nd))};
            for (int mi = 0; mi < m_count; ++mi)
                DCL_STORE(tile[mi * ${tn} + n], xb + mi * in_size + xo);
        }
${c.next_position("i", nd)}
    }
}
