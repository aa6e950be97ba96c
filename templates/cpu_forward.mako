## Forward deconvolution, owner-side: for each stride phase r (o + pad = q*stride + r) a register-tiled
## implicit GEMM. A work-item owns TM output maps x TN consecutive "virtual" positions v of the phase's
## output grid laid over the padded input grid (rows PS apart), so the input reads of a tap are TN contiguous
## elements; positions past a row's end are computed on padding and never stored. Where rows are short beside
## their padding, a phase's tiles are NVEC row vectors instead, each VW positions of one row (row_vector).
## The layer's geometry comes in tables the host computes (cpu_forward.py): per phase a row of phase_info
## (`columns` names its entries) and, per tap in phase order, the tap's offset in the padded grid. The taps of
## a phase are unrolled for each tap count in `counts` (the layer's, within a budget) and run as a loop
## otherwise: one program serves every layer of a rank, tile and tap counts, and its code, and so its build
## time, does not grow with the stride.
## W is first repacked (pack.mako's _pack_w kernel) so each work-item streams its weights contiguously:
## wp[g][co tile][ci][tap][TM], taps in phase order, maps past cog zero-filled.
## in_place (XSource.IN_PLACE, Geometry.direct: kernel size = stride, no pad, no dilation, a last stride sl <= 2):
## every output is one tap of one input, so x is read where it lies, with no packing pass. A work-item owns TM
## output maps x TN input positions of one row, for one phase of the leading axes and all sl phases of the last:
## its outputs are then one contiguous run of TN * sl per map, stored as whole vectors (with sl == 2, the two
## phases' accumulators interleaved lane by lane), where the phases apart would each store every other element.
## interleaved_phases (XSource.INTERLEAVED, a last stride of 2): the same stores for any kernel, over x packed into
## a grid of its own (layouts.InterleavedLayout), both last-axis phases of a row vector in one work-item.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, vw, target=target)}
<%
nvec = tn // vw
lanes = [f"s{l:x}" for l in range(vw)]

def interleaved(a, b, half):
    """Lanes half*VW/2 .. of a and b, alternating: the outputs of two last-axis phases in output order."""
    return "(dcl_accv)(" + ", ".join(f"{v}.{lanes[half * vw // 2 + l]}" for l in range(vw // 2) for v in (a, b)) + ")"
%>\
% if x_in_place:
<%
def out_vector(mi, j, h):
    """Vector h of the TN * sl outputs of map mi that accumulator vector j holds."""
    return f"acc{mi}_{j}_0" if sl == 1 else interleaved(f"acc{mi}_{j}_0", f"acc{mi}_{j}_1", h)
%>\
${c.kernel_head(name, signatures[""], target)}
{
    const int mt = DCL_GID(0);   // map tiles fastest: the work-items that read one x tile run back to back
    if (mt >= co_tiles * groups) return;
    const int g = mt / co_tiles;
    const int co0 = (mt % co_tiles) * ${tm};
    const int b = DCL_GID(2);
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;
    // dimension 1: (input row of the leading axes, their phase, tile of the row), the tile fastest. The row's last
    // tile is moved back to end at the row's end (the host asks in_last >= TN), storing only what the tile
    // before it did not.
    dcl_idx rest = DCL_GID(1);
    int il = (rest % tiles_per_row) * ${tn};
    rest /= tiles_per_row;
    const int skip = DCL_MAX(0, il + ${tn} - in_last);
    il -= skip;
    int phase = rest % lead_phases;
    rest /= lead_phases;
    const int tap0 = phase * ${sl};   // W's taps are row-major: the leading phase's first last-axis tap
    dcl_idx x_off = il, y_off = (dcl_idx)il * ${sl};
    % for a in reversed(range(nd - 1)):
    {
        const int ra = rest % in${a}; rest /= in${a};
        const int pa = phase % stride${a}; phase /= stride${a};
        x_off += (dcl_idx)ra * is${a};
        y_off += (dcl_idx)(ra * stride${a} + pa) * os${a};
    }
    % endfor
    __global const dcl_t* xb = x + ((dcl_idx)b * cin + (dcl_idx)g * cig) * in_size + x_off;
    __global const dcl_t* wb = wp + ((dcl_idx)mt * cig * ks + tap0) * ${tm};
    % for mi in range(tm):
    const dcl_acc bias${mi} = has_bias ? (dcl_acc)DCL_LOAD(bias + g * cog + DCL_MIN(co0 + ${mi}, cog - 1)) : (dcl_acc)0;
    % for j in range(nvec):
    % for r in range(sl):
    dcl_accv acc${mi}_${j}_${r} = (dcl_accv)(bias${mi});
    % endfor
    % endfor
    % endfor
    for (int ci = 0; ci < cig; ++ci) {
        % for j in range(nvec):
        const dcl_accv x${j} = DCL_LOADV(xb + ${j * vw});
        % endfor
        % for r in range(sl):
        % for mi in range(tm):
        {
            const dcl_acc w = DCL_LOAD(wb + ${r * tm + mi});
            % for j in range(nvec):
            acc${mi}_${j}_${r} = w * x${j} + acc${mi}_${j}_${r};
            % endfor
        }
        % endfor
        % endfor
        xb += in_size;
        wb += ks * ${tm};
    }

    __global dcl_t* yr = y + ((dcl_idx)b * cout + (dcl_idx)g * cog + co0) * out_size + y_off;
    const int m_count = DCL_MIN(${tm}, cog - co0);
    if (skip == 0 && m_count == ${tm}) {
        % for mi in range(tm):
        % for j in range(nvec):
        % for h in range(sl):
        DCL_STOREV(${out_vector(mi, j, h)}, yr + ${mi} * out_size + ${(j * sl + h) * vw});
        % endfor
        % endfor
        % endfor
        return;
    }
${c.spill(tm, nvec * sl, value=lambda mi, v: out_vector(mi, v // sl, v % sl))}
${c.store_from(tn * sl, f"skip * {sl}", "yr", "out_size")}
}
% else:

## Row vectors (phase table column vpr > 0, layouts.row_tiling): vector j of tile vt is the phase's row vector
## u = vt*NVEC + j (the tile's tail past the last one repeats it and stores nothing): row u / vpr, its
## (u % vpr)-th vector of VW positions, the row's last moved back to end at the row's end (`skip` lanes it
## shares with the one before). Declares live{j}, skip{j}, the output column c{j} and row coordinates r{j}_a,
## and vo{j}: the vector's first virtual position relative to the phase's base.
<%def name="row_vector(j)">
            const dcl_idx u${j}_all = (dcl_idx)vt * ${tn // vw} + ${j};
            const bool live${j} = u${j}_all < row_vectors;
            dcl_idx rest${j} = (live${j} ? u${j}_all : row_vectors - 1) / vpr;
            const int k${j} = (live${j} ? u${j}_all : row_vectors - 1) - rest${j} * vpr;
            const int c${j} = DCL_MIN(k${j} * ${vw}, (int)info[${columns[f"qe_{nd - 1}"]}] - ${vw});
            const int skip${j} = k${j} * ${vw} - c${j};
            % for a in reversed(range(nd - 1)):
            const int r${j}_${a} = rest${j} % info[${columns[f"qe_{a}"]}]; rest${j} /= info[${columns[f"qe_{a}"]}];
            % endfor
            vo${j} = ${" + ".join([f"(dcl_idx)r{j}_{a} * ps{a}" for a in range(nd - 1)] + [f"c{j}"])};
</%def>

## Epilogue: store the lanes of the tile that are real output positions, o = q*stride + r - pad (r - pad is the
## phase's `shift`). Row vectors store their lanes from `skip` on along their row. Otherwise the grid
## coordinates of v0 and the output offset are worked out once; lane by lane the offset then moves by the last
## axis' stride, and is worked out anew only where the lanes wrap onto the next grid row. (For layers with few
## maps per group this epilogue is most of a work-item's time.)
<%def name="store_tile()">
        {
${c.spill(tm, tn // vw)}
            __global dcl_t* yb = y + ((dcl_idx)b * cout + (dcl_idx)g * cog + co0) * out_size;
            const int m_count = DCL_MIN(${tm}, cog - co0);
            % for a in range(nd):
            const dcl_idx q0_${a} = info[${columns[f"q0_{a}"]}], qe_${a} = info[${columns[f"qe_{a}"]}];
            const dcl_idx shift_${a} = info[${columns[f"shift_{a}"]}];
            % endfor
            if (vpr) {
                % for j in range(tn // vw):
                {
                    dcl_idx vo${j};
${row_vector(j)}
                    dcl_idx yo = ${" + ".join([f"((q0_{a} + r{j}_{a}) * stride{a} + shift_{a}) * os{a}" for a in range(nd - 1)] + [f"((q0_{nd - 1} + c{j} + skip{j}) * stride{nd - 1} + shift_{nd - 1}) * os{nd - 1}"])};
                    for (int n = ${j * vw} + (live${j} ? skip${j} : ${vw}); n < ${(j + 1) * vw}; ++n) {
                        ${c.store_lane(tm, tn, "yb", "out_size", "yo")}
                        yo += stride${nd - 1} * os${nd - 1};
                    }
                }
                % endfor
                return;
            }
${c.split_position("qq", "v0", nd)}
${c.store_rows(tm, tn, "qq", nd, lambda a: f"qe_{a}", "yb", "out_size",
               " + ".join(f"((q0_{a} + qq{a}) * stride{a} + shift_{a}) * os{a}" for a in range(nd)),
               f"stride{nd - 1} * os{nd - 1}")}
        }
</%def>
## A work-item's place, for both kernels over x packed: dimension 0 runs over (table row, map tile) with map tiles
## fastest, `rows` the table's rows; dimension 1 over the row's tiles, 2 over the batch. Declares the row's
## `info`, the tile vt, the map tile's group g and first map co0, and `vpr` and `row_vectors` for row vectors.
<%def name="work_item(rows)">
    const int map_tiles = co_tiles * groups;
    if (DCL_GID(0) >= ${rows} * map_tiles) return;
    const int p = DCL_GID(0) / map_tiles, mt = DCL_GID(0) % map_tiles;
    __global const dcl_idx* info = phase_info + p * ${len(columns)};
    const int vt = DCL_GID(1);
    if (vt >= info[${columns["v_tiles"]}]) return;
    const int b = DCL_GID(2);
    const int g = mt / co_tiles;
    const int co0 = (mt % co_tiles) * ${tm};
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;
    const int vpr = info[${columns["vpr"]}];
    const dcl_idx row_vectors = ${" * ".join(f"info[{columns[f'qe_{a}']}]" for a in range(nd - 1)) or "1"} * (dcl_idx)vpr;
</%def>
## The tap loops over the input maps: an unrolled case per tap count of the layer, else a loop over the table;
## `x`: the input pointer expression of the tile's vectors (mac_block's), `advance`: moving it to the next map.
## Over maps, x's positions are VW maps apart (x channels-last in blocks of VW maps) and over_maps_mac runs a step.
<%def name="tap_loops(x, advance)">
<%
def mac(x_at, w_at):
    return c.over_maps_mac(tm, tn, vw, x_at, w_at) if over_maps else c.mac_block(tm, tn // vw, vw, x_at, w_at)

scale = f" * {vw}" if over_maps else ""
w_step = "ntaps" if over_maps else "ks"   # over maps, W's rows hold the phase's taps only (phase-major)
%>\
    switch (ntaps) {
    % for n in counts:
    case ${n}: {
        % for t in range(n):
        const dcl_idx off${t} = offsets[${t}];
        % endfor
        for (int ci = 0; ci < cig; ++ci) {
            % for t in range(n):
${mac(f"{x} + off{t}{scale}", f"wb + {t * tm}")}
            % endfor
            ${advance}
            wb += ${w_step} * ${tm};
        }
        break;
    }
    % endfor
    default:
        for (int ci = 0; ci < cig; ++ci) {
            for (int t = 0; t < ntaps; ++t) {
${mac(f"{x} + offsets[t]{scale}", f"wb + t * {tm}")}
            }
            ${advance}
            wb += ${w_step} * ${tm};
        }
    }
</%def>
% if over_maps:
## Vectors over maps (XSource.OVER_MAPS): a work-item TM output maps, in TM/VW vectors, x TN output positions of
## a phase (row-major over its box, none past it: a phase of an 8x8 input is 64 positions, where vectors over
## positions compute 80 lanes of its padded rows), accumulator acc{n}_{j} holding maps j*VW .. of position n. A
## step loads a tap's TM maps as whole vectors of the repacked weights and broadcasts x at each position, from x
## packed channels-last in blocks of VW input maps, so consecutive maps' broadcasts read one cache line.
## Dimension 0 runs over a phase's position tiles (fastest: a map tile's weights stay in cache for the next
## tile), 1 over (phase, map tile), 2 over the batch.
${c.kernel_head(name, signatures[""], target)}
{
    const int map_tiles = co_tiles * groups;
    if (DCL_GID(1) >= nphases * map_tiles) return;
    __global const dcl_idx* info = phase_info + DCL_GID(1) / map_tiles * ${len(columns)};
    const int mt = DCL_GID(1) % map_tiles, b = DCL_GID(2);
    const int g = mt / co_tiles, co0 = (mt % co_tiles) * ${tm};
    const dcl_idx positions = ${" * ".join(f"info[{columns[f'qe_{a}']}]" for a in range(nd))};
    const dcl_idx first = (dcl_idx)DCL_GID(0) * ${tn};
    if (first >= positions) return;
    const int tap0 = info[${columns["tap_start"]}], ntaps = info[${columns["tap_count"]}];
    // W phase-major: the map tile's weights, then the phase's, each input map's taps in turn
    __global const dcl_t* wb = wp + ((dcl_idx)mt * cig * ks + (dcl_idx)tap0 * cig) * ${tm};
    __global const dcl_idx* offsets = tap_offsets + tap0;
    __global const dcl_t* xb = xp + (((dcl_idx)b * groups + g) * ((cig + ${vw - 1}) / ${vw}) * x_plane
                                     + info[${columns["base"]}]) * ${vw};
    // position n: its offset in x's packed grid (px, in elements) and in y (yo); past the phase's last position,
    // the last again (computed, not stored)
    dcl_idx yo[${tn}];
    % for n in range(tn):
    dcl_idx px${n};
    {
        dcl_idx q = DCL_MIN(first + ${n}, positions - 1), v = 0, o = 0;
        % for a in reversed(range(nd)):
        const dcl_idx r${a} = q % info[${columns[f"qe_{a}"]}];
        q /= info[${columns[f"qe_{a}"]}];
        v += r${a}${f" * ps{a}" if a < nd - 1 else ""};
        o += ((info[${columns[f"q0_{a}"]}] + r${a}) * stride${a} + info[${columns[f"shift_{a}"]}]) * os${a};
        % endfor
        px${n} = v * ${vw};
        yo[${n}] = o;
    }
    % endfor
${c.over_maps_accumulators(tm, tn, vw, "cog", "co0")}
${tap_loops("xb", f"xb += (ci + 1) % {vw} ? 1 : x_plane * {vw} - {vw - 1};")}
    // the real maps of the positions inside the phase
    __global dcl_t* yb = y + ((dcl_idx)b * cog * groups + (dcl_idx)g * cog + co0) * out_size;
    const int m_count = DCL_MIN(${tm}, cog - co0), n_count = (int)DCL_MIN((dcl_idx)${tn}, positions - first);
${c.over_maps_store(tm, tn, vw, "yb", "out_size", "yo[n]")}
}
% elif interleaved_phases:
## Both phases of a last stride of 2 in one work-item (x 'interleaved', layouts.InterleavedLayout): a tile of row
## vectors over positions u, output 2u + h of phase h. Each phase's taps run into accumulators of their own, kept
## as o{h}_{mi}_{j}; a vector whose outputs are all real is stored as two whole vectors of the phases' lanes
## interleaved, where the phases apart would each store every other element, one at a time. A table row per
## phase of the leading axes: dimension 0 runs over (row, map tile), map tiles fastest.
${c.kernel_head(name, signatures[""], target)}
{
${work_item("nrows")}
    __global const dcl_t* xrow = xp + ((dcl_idx)b * cin + (dcl_idx)g * cig) * x_plane + info[${columns["base"]}];
    % for j in range(nvec):
    dcl_idx vo${j};
${row_vector(j)}
    % endfor
    % for h in range(2):
    % for mi in range(tm):
    dcl_accv ${", ".join(f"o{h}_{mi}_{j}" for j in range(nvec))};
    % endfor
    {
        const int tap0 = info[${columns[f"tap_start_{h}"]}], ntaps = info[${columns[f"tap_count_{h}"]}];
        __global const dcl_t* wb = wp + ((dcl_idx)mt * cig * ks + tap0) * ${tm};
        __global const dcl_idx* offsets = tap_offsets + tap0;
        % for j in range(nvec):
        __global const dcl_t* xb${j} = xrow + vo${j};
        % endfor
${c.accumulators(tm, nvec, "(dcl_accv)(has_bias ? (dcl_acc)DCL_LOAD(bias + g * cog + DCL_MIN(co0 + {mi}, cog - 1)) : (dcl_acc)0)")}
${tap_loops("xb{j}", "".join(f"xb{j} += x_plane; " for j in range(nvec)))}
        % for mi in range(tm):
        % for j in range(nvec):
        o${h}_${mi}_${j} = acc${mi}_${j};
        % endfor
        % endfor
    }
    % endfor
    __global dcl_t* yb = y + ((dcl_idx)b * cout + (dcl_idx)g * cog + co0) * out_size;
    const int m_count = DCL_MIN(${tm}, cog - co0);
    % for j in range(nvec):
    if (live${j}) {
        const dcl_idx yo = ${" + ".join([f"((info[{columns[f'q0_{a}']}] + r{j}_{a}) * stride{a} + info[{columns[f'shift_{a}']}]) * os{a}" for a in range(nd - 1)] + [f"2 * (dcl_idx)c{j}"])};
        if (skip${j} == 0 && m_count == ${tm} && 2 * (c${j} + ${vw}) <= out_last) {
            % for mi in range(tm):
            DCL_STOREV(${interleaved(f"o0_{mi}_{j}", f"o1_{mi}_{j}", 0)}, yb + ${mi} * out_size + yo);
            DCL_STOREV(${interleaved(f"o0_{mi}_{j}", f"o1_{mi}_{j}", 1)}, yb + ${mi} * out_size + yo + ${vw});
            % endfor
        } else {
            // the row's last vector where it overlaps the one before it or passes an odd row's end, or a tile of
            // fewer real maps: lane by lane
${c.spill(tm, 2, value=lambda mi, h: f"o{h}_{mi}_{j}")}
            for (int n = skip${j}; n < ${vw}; ++n)
                for (int h = 0; h < 2; ++h)
                    if (2 * (c${j} + n) + h < out_last)
                        for (int mi = 0; mi < m_count; ++mi)
                            DCL_STORE(tile[(2 * mi + h) * ${vw} + n], yb + mi * out_size + yo + 2 * n + h);
        }
    }
    % endfor
}
% else:
## One launch covers every phase: dimension 0 runs over (phase, map tile) with map tiles fastest, so the
## work-groups that read overlapping input tiles run back to back.
${c.kernel_head(name, signatures[""], target)}
{
    // the tile's vectors: TN consecutive virtual positions from v0 through one pointer, or row vectors (vpr > 0)
    // through a pointer each; the tap loops are written for both, one pointer streaming best where it serves
${work_item("nphases")}
    const dcl_idx v_count = info[${columns["v_count"]}];
    const int tap0 = info[${columns["tap_start"]}], ntaps = info[${columns["tap_count"]}];
    const dcl_idx v0 = (dcl_idx)vt * ${tn};
    __global const dcl_t* xb = xp + ((dcl_idx)b * cin + (dcl_idx)g * cig) * x_plane + info[${columns["base"]}];
    __global const dcl_t* wb = wp + ((dcl_idx)mt * cig * ks + tap0) * ${tm};
    __global const dcl_idx* offsets = tap_offsets + tap0;
${c.accumulators(tm, nvec, "(dcl_accv)(has_bias ? (dcl_acc)DCL_LOAD(bias + g * cog + DCL_MIN(co0 + {mi}, cog - 1)) : (dcl_acc)0)")}
    if (vpr) {
        % for j in range(nvec):
        __global const dcl_t* xb${j};
        {
            dcl_idx vo${j};
${row_vector(j)}
            xb${j} = xb + vo${j};
        }
        % endfor
${tap_loops("xb{j}", "".join(f"xb{j} += x_plane; " for j in range(nvec)))}
    } else {
        xb += v0;
${tap_loops("xb", "xb += x_plane;")}
    }
${store_tile()}
}
% endif
% endif
${c.kernel_tail(name, signatures[""], target)}
