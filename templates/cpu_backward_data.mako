## Backward data (input gradient): a strided direct convolution of the output gradient with W,
##     gx[b, ci, i] = sum_{co, k} gy[b, co, i*stride + k*dilation - pad] * W[ci, co, k].
## The host splits gy into stride residue planes (j = (i + D)*stride + R, see Geometry.backward_taps) with zero
## borders, so every tap reads TN contiguous elements at a constant offset, which the host passes in a table
## (`tap_offsets`; in place: one per row of last-axis taps). The taps are unrolled when their number is
## counts[-1] (within the unroll budget) and run as a loop otherwise, so one program serves every layer of a
## rank, tile and tap count. A work-item owns TM input maps x TN virtual positions of the padded plane grid
## (rows PS apart; positions past a row's end are never stored), or NVEC row vectors of VW input positions.
## W is first repacked (_wpack) so each work-item streams its weights contiguously: wp[g][ci tile][co][tap][TM],
## maps past cig zero-filled (with TM = 1 that layout is W's own, and the host passes W as it is).
## in_place (GySource.IN_PLACE, for Geometry.direct_backward: kernel size = stride, no pad, no dilation, last
## stride <= 2): every output position has exactly one tap, so gy is read where it lies, with no residue planes
## and no packing pass.
## A work-item owns TM input maps x TN positions of one input row. With a last stride of 2, a vector of gy holds
## VW/2 positions' taps 0 and 1 in alternate lanes: it is multiplied by a vector of alternating tap-0 / tap-1
## weights, and each position's pair of lanes is added in the epilogue (splitting gy's lanes instead spilled).
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, vw)}
## sl: the last axis' taps interleaved in a vector's lanes (in place), else 1; ntaps: the taps (in place: tap
## rows) to unroll, 0 for a loop over the table (the host's `counts`)
<%
nvec = tn // vw
# packed weight order per (g, ci tile, co): [tap][TM]; reading gy in place with a last stride of 2:
# [tap row][TM][last-axis tap], so an input map's two taps load as one pair
wpack_slot = "(t / 2 * %d + mi) * 2 + t %% 2" % tm if sl == 2 else "t * %d + mi" % tm
%>
${c.wpack(name, signatures["_wpack"], tm, "ks", "ci", "t", wpack_slot)}

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

% if in_place:
<% nacc = tn // (vw // sl) %>\
## One tap row: gy's vectors hold the row's sl taps interleaved; with sl == 2 they meet alternating weights.
<%def name="in_place_mac(t, offset)">
<% nacc = tn // (vw // sl) %>\
        {
            % for j in range(nacc):
            const dcl_accv y${j} = DCL_LOADV(gb + ${offset} + ${j * vw});
            % endfor
            % for mi in range(tm):
            {
            % if sl == 2:
                // lanes alternate the last axis' taps 0 and 1, as gy's elements do
                const dcl_acc w0 = DCL_LOAD(wb + (${t} * ${tm} + ${mi}) * 2), w1 = DCL_LOAD(wb + (${t} * ${tm} + ${mi}) * 2 + 1);
                const dcl_accv wv = (dcl_accv)(${", ".join(["w0, w1"] * (vw // 2))});
            % else:
                const dcl_acc wv = DCL_LOAD(wb + ${t} * ${tm} + ${mi});
            % endif
                % for j in range(nacc):
                acc${mi}_${j} = wv * y${j} + acc${mi}_${j};
                % endfor
            }
            % endfor
        }
</%def>
__kernel void ${name}(${c.params(signatures[""])})
{
    const int mt = get_global_id(0);
    if (mt >= ci_tiles * groups) return;
    const dcl_idx row = get_global_id(1) / tiles_per_row;
    const int b = get_global_id(2);
    const int g = mt / ci_tiles;
    const int ci0 = (mt % ci_tiles) * ${tm};
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;
    // The row's last tile is moved back to end at the row's end (the host asks in_last >= TN): its loads stay
    // inside the row, and it stores only the positions the tile before it did not.
    int il = (get_global_id(1) % tiles_per_row) * ${tn};
    const int skip = DCL_MAX(0, il + ${tn} - in_last);
    il -= skip;
    dcl_idx rem = row;
    dcl_idx x_off = il, g_off = (dcl_idx)${sl} * il;
    % for a in reversed(range(nd - 1)):
    {
        const int ia = rem % in${a}; rem /= in${a};
        x_off += (dcl_idx)ia * is${a};
        g_off += (dcl_idx)(stride${a} * ia) * os${a};
    }
    % endfor

    __global const dcl_t* gb = gy + ((dcl_idx)b * cout + (dcl_idx)g * cog) * out_size + g_off;
    __global const dcl_t* wb = wp + (dcl_idx)mt * cog * ks * ${tm};
${c.accumulators(tm, nacc, "(dcl_accv)(0)")}
${tap_loop(in_place_mac, f"gb += out_size; wb += ks * {tm};")}

    // Epilogue: an input position's value is the sum of its tap-0 and tap-1 lanes.
    __global dcl_t* xr = gx + ((dcl_idx)b * cin + (dcl_idx)g * cig + ci0) * in_size + x_off;
    const int m_count = DCL_MIN(${tm}, cig - ci0);
    % if sl == 2:
${c.spill(tm, nacc, "dcl_acch", lambda mi, j: f"acc{mi}_{j}.even + acc{mi}_{j}.odd")}
    % else:
${c.spill(tm, nacc)}
    % endif
    for (int mi = 0; mi < m_count; ++mi)
        for (int n = skip; n < ${tn}; ++n)
            DCL_STORE(tile[mi * ${tn} + n], xr + mi * in_size + n);
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
__kernel void ${name}(${c.params(signatures[""])})
{
    // dimension 0 (the fastest on CPU devices) runs over map tiles, so the work-groups that share an input
    // tile run back to back while it is still in cache
    const int mt = get_global_id(0);
    if (mt >= ci_tiles * groups) return;
    const int vt = get_global_id(1);
    const int b = get_global_id(2);
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
${c.accumulators(tm, nvec, "(dcl_accv)(0)")}
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
        for (int mi = 0; mi < m_count; ++mi)
            for (int n = skip; n < ${tn}; ++n)
                DCL_STORE(tile[mi * ${tn} + n], xb + xo + mi * in_size + n);
        return;
    }
    // lane by lane: the offset moves on by one along a row and is worked out anew where the lanes wrap
    for (int n = 0; n < ${tn} && v0 + n < v_count; ++n) {
        if (${" && ".join(f"i{a} < in{a}" for a in range(nd))}) {
            ${c.store_lane(tm, tn, "xb", "in_size", "xo")}
        }
${c.next_position("i", nd, "xo", offset, "1")}
    }
}
% endif
