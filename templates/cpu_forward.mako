## Forward deconvolution, owner-side: for each stride phase r (o + pad = q*stride + r) a register-tiled
## implicit GEMM. A work-item owns TM output maps x TN consecutive "virtual" positions v of the phase's
## output grid laid over the padded input grid (rows PS apart), so the input reads of a tap are TN contiguous
## elements. Positions past a row's end are computed on padding and never stored.
## The layer's geometry comes in tables the host computes (cpu_forward.py): per phase a row of phase_info
## (`columns` names its entries) and, per tap in phase order, the tap's offset in the padded grid. The taps of
## a phase are unrolled for each tap count in `counts` (the layer's, within a budget) and run as a loop
## otherwise: one program serves every layer of a rank, tile and tap counts, and its code, and so its build
## time, does not grow with the stride.
## W is first repacked (_wpack) so each work-item streams its weights contiguously: wp[g][co tile][ci][tap][TM],
## taps in phase order (`order`: W's tap index of each), maps past cog zero-filled.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, vw)}
<% nvec = tn // vw %>
${c.wpack(name, signatures["_wpack"], tm, "ks", "co", "order[t]", f"t * {tm} + mi")}

## Epilogue: store the lanes of the tile that are real output positions, o = q*stride + r - pad (r - pad is the
## phase's `shift`). The grid coordinates of v0 and the output offset are worked out once; lane by lane the
## offset then moves by the last axis' stride, and is worked out anew only where the lanes wrap onto the next
## grid row. (For layers with few maps per group this epilogue is most of a work-item's time.)
<%def name="store_tile()">
        {
${c.spill(tm, tn // vw)}
            __global dcl_t* yb = y + ((dcl_idx)b * cout + (dcl_idx)g * cog + co0) * out_size;
            const int m_count = DCL_MIN(${tm}, cog - co0);
            % for a in range(nd):
            const dcl_idx q0_${a} = info[${columns[f"q0_{a}"]}], qe_${a} = info[${columns[f"qe_{a}"]}];
            const dcl_idx shift_${a} = info[${columns[f"shift_{a}"]}];
            % endfor
${c.split_position("qq", "v0", nd)}
<% offset = " + ".join(f"((q0_{a} + qq{a}) * stride{a} + shift_{a}) * os{a}" for a in range(nd)) %>\
            dcl_idx yo = ${offset};
            for (int n = 0; n < ${tn} && v0 + n < v_count; ++n) {
                if (${" && ".join(f"qq{a} < qe_{a}" for a in range(nd))}) {
                    ${c.store_lane(tm, tn, "yb", "out_size", "yo")}
                }
${c.next_position("qq", nd, "yo", offset, f"stride{nd - 1} * os{nd - 1}")}
            }
        }
</%def>
## One launch covers every phase: dimension 0 runs over (phase, map tile) with map tiles fastest, so the
## work-groups that read overlapping input tiles run back to back.
__kernel void ${name}(${c.params(signatures[""])})
{
    const int map_tiles = co_tiles * groups;
    if (get_global_id(0) >= nphases * map_tiles) return;
    const int p = get_global_id(0) / map_tiles, mt = get_global_id(0) % map_tiles;
    __global const dcl_idx* info = phase_info + p * ${len(columns)};
    const int vt = get_global_id(1);
    if (vt >= info[${columns["v_tiles"]}]) return;
    const dcl_idx v_count = info[${columns["v_count"]}];
    const int tap0 = info[${columns["tap_start"]}], ntaps = info[${columns["tap_count"]}];
    const int b = get_global_id(2);
    const int g = mt / co_tiles;
    const int co0 = (mt % co_tiles) * ${tm};
    const dcl_idx v0 = (dcl_idx)vt * ${tn};
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;
    __global const dcl_t* xb = xp + ((dcl_idx)b * cin + (dcl_idx)g * cig) * x_plane + info[${columns["base"]}] + v0;
    __global const dcl_t* wb = wp + ((dcl_idx)mt * cig * ks + tap0) * ${tm};
    __global const dcl_idx* offsets = tap_offsets + tap0;
${c.accumulators(tm, nvec, "(dcl_accv)(has_bias ? (dcl_acc)DCL_LOAD(bias + g * cog + DCL_MIN(co0 + {mi}, cog - 1)) : (dcl_acc)0)")}
    switch (ntaps) {
    % for n in counts:
    case ${n}: {
        % for t in range(n):
        const dcl_idx off${t} = offsets[${t}];
        % endfor
        for (int ci = 0; ci < cig; ++ci) {
            % for t in range(n):
${c.mac_block(tm, nvec, vw, f"xb + off{t}", f"wb + {t * tm}")}
            % endfor
            xb += x_plane;
            wb += ks * ${tm};
        }
        break;
    }
    % endfor
    default:
        for (int ci = 0; ci < cig; ++ci) {
            for (int t = 0; t < ntaps; ++t) {
${c.mac_block(tm, nvec, vw, "xb + offsets[t]", f"wb + t * {tm}")}
            }
            xb += x_plane;
            wb += ks * ${tm};
        }
    }
${store_tile()}
}
