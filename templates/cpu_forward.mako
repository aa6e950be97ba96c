## Forward deconvolution, owner-side: for each stride phase r (o + pad = q*stride + r) a register-tiled
## implicit GEMM. A work-item owns TM output maps x TN consecutive "virtual" positions v of the phase's
## output grid laid over the padded input grid (rows PS apart), so the input reads of a tap are TN contiguous
## elements. Positions past a row's end are computed on padding and never stored.
## Taps that reach phase r are known here, so the tap loop is unrolled with constant offsets and no tests.
## W is first repacked (_wpack) so each work-item streams its weights contiguously: wp[g][co tile][ci][tap][TM],
## taps in phase order, maps past cog zero-filled.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, vw)}
<% nvec = tn // vw %>
__constant int ${name}_tap_order[${ks}] = {${", ".join(str(t) for t in tap_order)}};

${c.wpack(name, signatures["_wpack"], tm, ks, "co", f"{name}_tap_order[t]", f"t * {tm} + mi")}

## One launch covers every phase: dimension 0 runs over (phase, map tile) with map tiles fastest, so the
## work-groups that read overlapping input tiles run back to back. Per phase the host passes a row of
## phase_info: v_tiles, v_count, base, then q0 and the extent of q per axis (`columns` names them).
<% info = len(columns) %>
## Epilogue of phase r: store the lanes of the tile that are real output positions, o = q*stride + r - pad.
## The grid coordinates of v0 and the output offset are worked out once; lane by lane the offset then moves by
## the last axis' stride, and is worked out anew only where the lanes wrap onto the next grid row. (For layers
## with few maps per group this epilogue is most of a work-item's time.)
<%def name="store_tile(r)">
        {
${c.spill(tm, tn // vw)}
            __global dcl_t* yb = y + ((dcl_idx)b * cout + (dcl_idx)g * cog + co0) * out_size;
            const int m_count = DCL_MIN(${tm}, cog - co0);
            % for a in range(nd):
            const dcl_idx q0_${a} = info[${columns[f"q0_{a}"]}], qe_${a} = info[${columns[f"qe_{a}"]}];
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
__kernel void ${name}(${c.params(signatures[""])})
{
    const int map_tiles = co_tiles * ${groups};
    if (get_global_id(0) >= ${len(phases)} * map_tiles) return;
    const int p = get_global_id(0) / map_tiles, mt = get_global_id(0) % map_tiles;
    __global const dcl_idx* info = phase_info + p * ${info};
    const int vt = get_global_id(1);
    if (vt >= info[${columns["v_tiles"]}]) return;
    const dcl_idx v_count = info[${columns["v_count"]}];
    const int b = get_global_id(2);
    const int g = mt / co_tiles;
    const int co0 = (mt % co_tiles) * ${tm};
    const dcl_idx v0 = (dcl_idx)vt * ${tn};
    const dcl_idx cin = (dcl_idx)cig * ${groups}, cout = (dcl_idx)cog * ${groups};
    __global const dcl_t* xb = xp + ((dcl_idx)b * cin + (dcl_idx)g * cig) * x_plane + info[${columns["base"]}] + v0;
    % for mi in range(tm):
    const dcl_acc b${mi} = has_bias ? (dcl_acc)DCL_LOAD(bias + g * cog + DCL_MIN(co0 + ${mi}, cog - 1)) : (dcl_acc)0;
    % endfor

    switch (p) {
    % for p, (r, taps) in enumerate(phases):
    case ${p}: {
        % for t, (k, m) in enumerate(taps):
        const dcl_idx off${t} = -(${" + ".join(f"{m[a]} * ps{a}" for a in range(nd - 1)) + (" + " if nd > 1 else "")}${m[nd - 1]});
        % endfor
        __global const dcl_t* wb = wp + ((dcl_idx)mt * cig * ${ks} + ${tap_starts[p]}) * ${tm};
${c.accumulators(tm, nvec, "(dcl_accv)(b{mi})")}
        % if taps:
        for (int ci = 0; ci < cig; ++ci) {
            % for t, (k, m) in enumerate(taps):
${c.mac_block(tm, nvec, vw, f"xb + off{t}", f"wb + {t * tm}")}
            % endfor
            xb += x_plane;
            wb += ${ks * tm};
        }
        % endif
        ${store_tile(r)}
        break;
    }
    % endfor
    }
}
