## Backward data (input gradient): a strided direct convolution of the output gradient with W,
##     gx[b, ci, i] = sum_{co, k} gy[b, co, i*stride + k*dilation - pad] * W[ci, co, k].
## The host splits gy into stride residue planes (j = (i + D)*stride + R, see Geometry.backward_taps) with zero
## borders, so every tap reads TN contiguous elements at a constant offset, which the host passes in a table
## (`tap_offsets`). The taps (in place: the rows of taps) are unrolled when their number is counts[-1] (in
## place: counts[1]; within the unroll budget) and run as a loop otherwise, so one program serves every layer of
## a rank, tile and tap count. A work-item owns TM input maps x TN virtual positions of the padded plane grid
## (rows PS apart; positions past a row's end are never stored), or NVEC row vectors of VW input positions.
## W is first repacked (pack.mako's _pack_w kernel) so each work-item streams its weights contiguously:
## wp[g][ci tile][co][tap][TM], maps past cig zero-filled (with TM = 1 that layout is W's own, and the host passes
## W as it is); reading gy in place with a last stride of 2, [tap row][tap group][TM][the group's taps], so an
## input map's two taps load as one pair (strategies/weight_repack.py).
## in_place (GySource.IN_PLACE, deconvnd_cl/gy_in_place.py: a last stride of 1, or of 2 without last-axis
## dilation): gy is read where it lies, with no residue planes and no packing pass. A work-item owns TM input maps
## x TN positions of one input row. The last axis' taps come in groups of `sl` (the last stride), each group's
## reads one contiguous run of gy: with sl == 2 a vector holds VW/2 positions' two taps in alternate lanes, meets a
## vector of alternating weights, and each position's pair of lanes is added in the epilogue (splitting gy's lanes
## instead spilled). Lanes before a row's start or past its end (`lefts` / `rights` per group, in a row's first or
## last vector only) are loaded from the row's first or last whole vector and shifted, filling zeros; rows of taps
## whose gy row lies outside gy are skipped.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, vw, target=target)}
## sl: the last stride, whose taps a vector interleaves (in place), else 1; ntaps: the taps (in place: tap rows) to
## unroll, 0 for a loop over the table; in place also kl, the last axis' taps, and per tap group the border lanes
## `lefts` and `rights` (the host's `counts`)
<%
nvec = tn // vw
# a stride-1 layer's forward runs here as a correlation (correlation.py), its bias the outputs' start
with_bias = "(dcl_accv)(has_bias ? (dcl_acc)DCL_LOAD(bias + g * cig + DCL_MIN(ci0 + {mi}, cig - 1)) : (dcl_acc)0)"
%>

## The tap loop: `body(t, offset)` for each tap, unrolled with the offsets read once when there are `ntaps`,
## else a loop over the table.
<%def name="tap_loop(body, step)">
    % if ntaps:
    % for t in range(ntaps):
    const dcl_idx off${t} = tap_offsets[${t}];
    % endfor
    for (int co = 0; co < cog; ++co) {
        % for t in range(ntaps):
${body(str(t), f"off{t}")}
        % endfor
        ${step}
    }
    % else:
    for (int co = 0; co < cog; ++co) {
        for (int t = 0; t < tap_count; ++t) {
${body("t", "tap_offsets[t]")}
        }
        ${step}
    }
    % endif
</%def>

% if over_maps:
## Vectors over input maps (GySource.OVER_MAPS): a work-item TM input maps, in TM/VW vectors, x TN input positions
## (row-major, none past the input: an 8x8 input is 64, where vectors over positions compute 80 lanes of the
## padded grid), accumulator acc{n}_{j} holding maps j*VW .. of position n. A step loads a tap's TM maps as whole
## vectors of the repacked weights and broadcasts gy at each position, from gy packed channels-last in blocks of
## VW output maps on the residue planes (the weight gradient's pack), so consecutive maps' broadcasts read one
## cache line; the taps' offsets (the host's) step over residue planes of all blocks. Dimension 0 runs over
## position tiles (fastest: a map tile's weights stay in cache), 1 over map tiles, 2 over the batch.
<%def name="over_maps_mac(t, offset)">
${c.over_maps_mac(tm, tn, vw, f"gb + {offset}", f"wb + {t} * {tm}")}
</%def>
${c.kernel_head(name, signatures[""], target)}
{
    const int mt = DCL_GID(1);
    if (mt >= ci_tiles * groups) return;
    const dcl_idx first = (dcl_idx)DCL_GID(0) * ${tn};
    if (first >= in_size) return;
    const int b = DCL_GID(2), g = mt / ci_tiles, ci0 = (mt % ci_tiles) * ${tm};
    const int blocks_per_group = (cog + ${vw - 1}) / ${vw};
    __global const dcl_t* gb = gyp + ((dcl_idx)b * nplanes * groups * blocks_per_group
                                      + (dcl_idx)g * blocks_per_group) * plane * ${vw};
    __global const dcl_t* wb = wp + (dcl_idx)mt * cog * ks * ${tm};
    // position n: input position first + n (past the input's last, the last again: computed, not stored), at its
    // virtual position of the residue grid (px, in elements)
    % for n in range(tn):
    dcl_idx px${n};
    {
        dcl_idx q = DCL_MIN(first + ${n}, in_size - 1), v = 0;
        % for a in reversed(range(nd)):
        v += (q % in${a})${f" * ps{a}" if a < nd - 1 else ""};
        q /= in${a};
        % endfor
        px${n} = v * ${vw};
    }
    % endfor
${c.over_maps_accumulators(tm, tn, vw, "cig", "ci0")}
${tap_loop(over_maps_mac, f"gb += (co + 1) % {vw} ? 1 : plane * {vw} - {vw - 1}; wb += ks * {tm};")}
    // the real maps of the positions inside the input
    __global dcl_t* xb = gx + ((dcl_idx)b * cig * groups + (dcl_idx)g * cig + ci0) * in_size + first;
    const int m_count = DCL_MIN(${tm}, cig - ci0), n_count = (int)DCL_MIN((dcl_idx)${tn}, in_size - first);
${c.over_maps_store(tm, tn, vw, "xb", "in_size", "n")}
}
% elif in_place:
<%
positions = vw // sl            # input positions a vector holds
nv = tn // positions            # vectors a tap group, accumulators a map
groups = len(lefts)
first = [sl * q for q in range(groups)]                                    # a group's first last-axis tap
width = [min(sl, kl - sl * q) for q in range(groups)]                      # its taps
lanes = [f"s{l:x}" for l in range(vw)]

def shifted(z, n):
    """z moved up n lanes (n > 0, zeros first) or down -n lanes (n < 0, zeros last)."""
    parts = [f"{z}.{lanes[l - n]}" if 0 <= l - n < vw else "(dcl_acc)0" for l in range(vw)]
    return "(dcl_accv)(" + ", ".join(parts) + ")"

def even_lanes(z):
    return "(dcl_accv)(" + ", ".join(f"{z}.{lanes[l]}" if l % 2 == 0 else "(dcl_acc)0" for l in range(vw)) + ")"

def even_lanes_of_both(a, b):
    """a's even lanes in the even lanes, b's in the odd ones."""
    return "(dcl_accv)(" + ", ".join(f"{a}.{lanes[l]}" if l % 2 == 0 else f"{b}.{lanes[l - 1]}" for l in range(vw)) + ")"

# An odd last-axis kernel's last group is one tap, which would leave half of each vector idle. With the tap rows
# unrolled, two rows' lone taps share the vectors instead (row t's in the even lanes, row t+1's in the odd ones,
# summed in the epilogue like a pair of taps of one row): a quarter fewer FMAs for k3. `paired`, the tap rows
# whose lone taps pair up, comes from the host (cpu_backward_data.paired_rows), which repacks W to match: a pair
# of rows' lone taps as pairs too, after both rows' pairs of taps, so each map's two weights load as one.
lone = groups - 1
pair_rows = paired > 0

def row_start(t):
    """Where tap row t's weights start, in taps (t an int, or a variable when the rows run as a loop)."""
    if isinstance(t, int) and t < paired and t % 2:
        return (t - 1) * kl + kl - 1
    return f"{t} * {kl}"
%>\
## Vector `v` of tap group q's run of gy from `at`, in `y` (the row's first and last with their border lanes
## zeroed).
<%def name="gy_vector(y, at, q, v)">
                % if v == 0 and lefts[q]:
                dcl_accv ${y} = DCL_LOADV(${at} + lo${q});
                ${y} = left ? ${shifted(y, lefts[q])} : ${y};
                % elif v == nv - 1 and rights[q]:
                dcl_accv ${y} = DCL_LOADV(${at} - ro${q});
                ${y} = right ? ${shifted(y, -rights[q])} : ${y};
                % else:
                dcl_accv ${y} = DCL_LOADV(${at});
                % endif
</%def>
## Each map's weights `wv` (`weights(mi)` declares them) times the nv vectors of gy, into its accumulators.
<%def name="maps_mac(weights)">
                % for mi in range(tm):
                {
${weights(mi)}
                    % for v in range(nv):
                    acc${mi}_${v} = wv * y${v} + acc${mi}_${v};
                    % endfor
                }
                % endfor
</%def>
<%def name="pair_weights(mi)">
                    const dcl_acc2 w2 = DCL_LOAD2(wq + ${mi * 2});  // one broadcast of the pair
                    const dcl_accv wv = (dcl_accv)(${", ".join(["w2"] * (vw // 2))});
</%def>
<%def name="lone_weight(mi)">
                    const dcl_acc wv = DCL_LOAD(wq + ${mi});
</%def>
## Group q of one tap row `t` whose run of gy starts at gb + `base` + the group's offset: nv vectors of gy, times
## each map's weights.
<%def name="group_mac(t, base, q)">
            {
                % for v in range(nv):
${gy_vector(f"y{v}", f"gb + {base} + {f'{first[q]}' if sl == 2 else f'go{q}'} + {v * vw}", q, v)}
                % if sl == 2 and width[q] == 1:
                y${v} = ${even_lanes(f"y{v}")};  // the group's one tap: its odd lanes hold no tap
                % endif
                % endfor
                __global const dcl_t* wq = wb + (${row_start(t)} + ${first[q]}) * ${tm};
${maps_mac(pair_weights if width[q] == 2 else lone_weight)}
            }
</%def>
## The lone taps of tap rows `t` and `u` = t + 1 in one set of vectors. A row gy lacks reads a run of zeros
## (`zrow`), so both rows' lanes are filled whichever lies inside gy. The branch also bounds LLVM's scheduler:
## the pairs written one after another in one basic block had their loads hoisted together, and spilled.
<%def name="rows_mac(t, u)">
            if (ok${t} || ok${u}) {
                __global const dcl_t* pt = ok${t} ? gb + b${t} : zrow;
                __global const dcl_t* pu = ok${u} ? gb + b${u} : zrow;
                % for v in range(nv):
                dcl_accv y${v};
                {
${gy_vector("yt", f"pt + {first[lone]} + {v * vw}", lone, v)}
${gy_vector("yu", f"pu + {first[lone]} + {v * vw}", lone, v)}
                    y${v} = ${even_lanes_of_both("yt", "yu")};
                }
                % endfor
                __global const dcl_t* wq = wb + ${(t * kl + 2 * (kl - 1)) * tm};
${maps_mac(pair_weights)}
            }
</%def>
## Where tap row `t` reads gy: declares ok{t} (its gy row lies inside gy) and b{t}, the row's offset plus the
## tile's start on the last axis.
<%def name="tap_row(t)">
        bool ok${t} = true;
        dcl_idx b${t} = lead;
        % for a in range(nd - 1):
        {
            const int ja = stride${a} * r${a} + tap_rows[${t} * ${nd - 1} + ${a}];
            ok${t} = ok${t} && ja >= 0 && ja < out${a};
            b${t} += (dcl_idx)ja * os${a};
        }
        % endfor
</%def>
${c.kernel_head(name, signatures[""], target)}
{
    const int mt = DCL_GID(0);
    if (mt >= ci_tiles * groups) return;
    const dcl_idx row = DCL_GID(1) / tiles_per_row;
    const int b = DCL_GID(2);
    const int g = mt / ci_tiles;
    const int ci0 = (mt % ci_tiles) * ${tm};
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;
    // The row's last tile is moved back to end at the row's end (the host asks in_last >= TN): its loads stay
    // inside the row, and it stores only the positions the tile before it did not.
    int il = (DCL_GID(1) % tiles_per_row) * ${tn};
    const int skip = DCL_MAX(0, il + ${tn} - in_last);
    il -= skip;
    const bool left = il == 0, right = il + ${tn} == in_last;
    dcl_idx rem = row;
    dcl_idx x_off = il;
    % for a in reversed(range(nd - 1)):
    const int r${a} = rem % in${a}; rem /= in${a};
    x_off += (dcl_idx)r${a} * is${a};
    % endfor
    const dcl_idx lead = (dcl_idx)${sl} * il - last_pad;
    % for q in range(groups):
    % if sl == 1:
    const int go${q} = ${q} * last_dilation;
    % endif
    % if lefts[q]:
    const int lo${q} = left ? ${lefts[q]} : 0;
    % endif
    % if rights[q]:
    const int ro${q} = right ? ${rights[q]} : 0;
    % endif
    % endfor

    __global const dcl_t* gb = gy + ((dcl_idx)b * cout + (dcl_idx)g * cog) * out_size;
    __global const dcl_t* wb = wp + (dcl_idx)mt * cog * ks * ${tm};
    % if sl == 1:
${c.accumulators(tm, nv, with_bias)}
    % else:
${c.accumulators(tm, nv, "(dcl_accv)(0)")}
    % endif
    % if ntaps:
    % for t in range(ntaps):
${tap_row(t)}
    % endfor
    % if pair_rows:
    __global const dcl_t* zrow = zeros + ${vw};
    % endif
    for (int co = 0; co < cog; ++co) {
        % for t in range(ntaps):
        if (ok${t}) {
            % for q in range(groups):
            % if not (q == lone and t < paired):
${group_mac(t, f"b{t}", q)}
            % endif
            % endfor
        }
        % endfor
        % for t in range(0, paired, 2):
${rows_mac(t, t + 1)}
        % endfor
        gb += out_size; wb += ks * ${tm};
    }
    % else:
    for (int co = 0; co < cog; ++co) {
        for (int t = 0; t < tap_count; ++t) {
${tap_row("t")}
            if (okt) {
                % for q in range(groups):
${group_mac("t", "bt", q)}
                % endfor
            }
        }
        gb += out_size; wb += ks * ${tm};
    }
    % endif

    // Epilogue: with sl == 2 an input position's value is the sum of its two lanes. A tile of all TM maps that
    // shares no position with the one before it stores whole vectors; others go lane by lane from `skip` on.
    __global dcl_t* xr = gx + ((dcl_idx)b * cin + (dcl_idx)g * cig + ci0) * in_size + x_off;
    const int m_count = DCL_MIN(${tm}, cig - ci0);
    if (skip == 0 && m_count == ${tm}) {
        % for mi in range(tm):
        % for v in range(nv):
        % if sl == 2:
        DCL_STOREH(acc${mi}_${v}.even + acc${mi}_${v}.odd, xr + ${mi} * in_size + ${v * positions});
        % else:
        DCL_STOREV(acc${mi}_${v}, xr + ${mi} * in_size + ${v * positions});
        % endif
        % endfor
        % endfor
        return;
    }
    % if sl == 2:
${c.spill(tm, nv, "dcl_acch", lambda mi, j: f"acc{mi}_{j}.even + acc{mi}_{j}.odd")}
    % else:
${c.spill(tm, nv)}
    % endif
${c.store_from(tn, "skip", "xr", "in_size")}
}
% else:
<%def name="planar_mac(t, offset)">
${c.mac_block(tm, tn // vw, vw, f"gb + {offset}", f"wb + {t} * {tm}")}
</%def>
<%def name="row_vectors_mac(t, offset)">
${c.mac_block(tm, tn // vw, vw, f"gb{{j}} + {offset}", f"wb + {t} * {tm}")}
</%def>
## Row vectors (vpr > 0): vector j of tile vt is the input's row vector u = vt*NVEC + j (the tile's tail past the
## last one repeats it and stores nothing): row u / vpr, its (u % vpr)-th vector of VW positions, the row's
## last moved back to end at the row's end (`skip` lanes it shares with the one before). Declares live{j},
## skip{j}, the column c{j}, the row coordinates r{j}_a, and vo{j}: the vector's first virtual position.
<%def name="row_vector(j)">
            const dcl_idx u${j}_all = (dcl_idx)vt * ${tn // vw} + ${j};
            const bool live${j} = u${j}_all < row_vectors;
            dcl_idx rest${j} = (live${j} ? u${j}_all : row_vectors - 1) / vpr;
            const int k${j} = (live${j} ? u${j}_all : row_vectors - 1) - rest${j} * vpr;
            const int c${j} = DCL_MIN(k${j} * ${vw}, in${nd - 1} - ${vw});
            const int skip${j} = k${j} * ${vw} - c${j};
            % for a in reversed(range(nd - 1)):
            const int r${j}_${a} = rest${j} % in${a}; rest${j} /= in${a};
            % endfor
            const dcl_idx vo${j} = ${" + ".join([f"(dcl_idx)r{j}_{a} * ps{a}" for a in range(nd - 1)] + [f"c{j}"])};
</%def>
${c.kernel_head(name, signatures[""], target)}
{
    // dimension 0 (the fastest on CPU devices) runs over map tiles, so the work-groups that share an input
    // tile run back to back while it is still in cache
    const int mt = DCL_GID(0);
    if (mt >= ci_tiles * groups) return;
    const int vt = DCL_GID(1);
    const int b = DCL_GID(2);
    const int g = mt / ci_tiles;
    const int ci0 = (mt % ci_tiles) * ${tm};
    // Three tilings of the input positions (the host's choice, whichever computes the fewest lanes):
    // - TN consecutive virtual positions of the padded grid, tiles running across row ends;
    // - tiles_per_row > 0: TN positions of one input row (rows >= TN), the row's last tile moved back to end at
    //   the row's end: no junk lanes, and stores are whole vectors but for the positions the moved tile shares
    //   with the one before it (`skip`);
    // - vpr > 0: row vectors (rows of at least VW but shorter than TN), each vector through a pointer of its own,
    //   so the tap loop is written twice: one pointer streams best where the vectors of a tile are contiguous.
    dcl_idx v0 = (dcl_idx)vt * ${tn};
    int skip = 0;
    if (tiles_per_row) {
        int il = (vt % tiles_per_row) * ${tn};
        skip = DCL_MAX(0, il + ${tn} - in${nd - 1});
        il -= skip;
        dcl_idx rem = vt / tiles_per_row;
        v0 = il;
        % for a in reversed(range(nd - 1)):
        v0 += (dcl_idx)(rem % in${a}) * ps${a}; rem /= in${a};
        % endfor
    }
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;
    const dcl_idx row_vectors = (dcl_idx)vpr${"".join(f" * in{a}" for a in range(nd - 1))};

    __global const dcl_t* gb = gyp + ((dcl_idx)b * cout + (dcl_idx)g * cog) * nplanes * plane;
    __global const dcl_t* wb = wp + (dcl_idx)mt * cog * ks * ${tm};
${c.accumulators(tm, nvec, with_bias)}
    if (vpr) {
        % for j in range(nvec):
        __global const dcl_t* gb${j};
        {
${row_vector(j)}
            gb${j} = gb + vo${j};
        }
        % endfor
${tap_loop(row_vectors_mac, "".join(f"gb{j} += nplanes * plane; " for j in range(nvec)) + f"wb += ks * {tm};")}
    } else {
        gb += v0;
${tap_loop(planar_mac, f"gb += nplanes * plane; wb += ks * {tm};")}
    }

    // Epilogue. Input positions are contiguous along a row, so a row vector, or a tile whose TN lanes are all
    // real positions of one row (the common case), is stored as whole vectors straight from the accumulators;
    // other tiles are spilled to private memory and stored lane by lane: a row tile or row vector from `skip`
    // on, other tiles the real positions only. The grid coordinates of v0 are the input coordinates of its
    // first lane.
    __global dcl_t* xb = gx + ((dcl_idx)b * cin + (dcl_idx)g * cig + ci0) * in_size;
    const int m_count = DCL_MIN(${tm}, cig - ci0);
    if (vpr) {
${c.spill(tm, nvec)}
        % for j in range(nvec):
        {
${row_vector(j)}
            const dcl_idx xo = ${" + ".join([f"(dcl_idx)r{j}_{a} * is{a}" for a in range(nd - 1)] + [f"c{j}"])};
            if (live${j} && skip${j} == 0 && m_count == ${tm}) {
                % for mi in range(tm):
                DCL_STOREV(acc${mi}_${j}, xb + xo + ${mi} * in_size);
                % endfor
            } else if (live${j}) {
                for (int mi = 0; mi < m_count; ++mi)
                    for (int n = skip${j}; n < ${vw}; ++n)
                        DCL_STORE(tile[mi * ${tn} + ${j * vw} + n], xb + xo + mi * in_size + n);
            }
        }
        % endfor
        return;
    }
${c.split_position("i", "v0", nd)}
<% offset = " + ".join(f"(dcl_idx)i{a} * is{a}" for a in range(nd)) %>\
    dcl_idx xo = ${offset};
    if (m_count == ${tm} && skip == 0 && i${nd - 1} + ${tn} <= in${nd - 1}${"".join(f" && i{a} < in{a}" for a in range(nd - 1))}) {
        % for mi in range(tm):
        % for j in range(nvec):
        DCL_STOREV(acc${mi}_${j}, xb + xo + ${mi} * in_size + ${j * vw});
        % endfor
        % endfor
        return;
    }
${c.spill(tm, nvec)}
    if (tiles_per_row) {
${c.store_from(tn, "skip", "xb + xo", "in_size")}
        return;
    }
${c.store_rows(tm, tn, "i", nd, lambda a: f"in{a}", "xb", "in_size", offset, "1")}
}
% endif
${c.kernel_tail(name, signatures[""], target)}
