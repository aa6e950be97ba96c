## Backward weights, stage one of a deterministic two-stage reduction:
##     part[c, ci, co, k] = sum over chunk c of x[b, ci, i] * gy[b, co, i*stride + k*dilation - pad].
## Chunk c covers a fixed range of input rows (batch item and every axis but the last); along a row, x is read
## in place and gy from its stride residue planes, where tap k's partner of input position i sits at grid row
## i + D - qlo (Geometry.backward_taps), so both operands advance together. Only real input positions are
## visited: a NaN or Inf in gy meets exactly the x values it meets in the definition, never padding.
## A work-item owns TM input maps x TN output maps of one tap k.
## Where gy comes from (the variant's GySource, `gy`):
##   planar         packed residue planes: TM x TN vector accumulators along v, lanes summed in a fixed order
##                  at the end (for few output maps per group: depthwise and narrow layers);
##   channels_last  packed residue planes in blocks of TN maps (pack.mako's _pack_cl kernel): accumulators are
##                  vectors over TN output maps, one scalar x per input map per position, a GEMM like the
##                  forward's;
##   in_place       gy as it lies (with x in place: Geometry.direct, kernel size = stride, no pad, no dilation,
##                  last stride <= 2; with x channels-last any geometry, below), no packing pass. With x in place
##                  a work-item owns TM input maps x TN output maps x the last axis' taps of one tap row; with a
##                  last stride of 2 a vector of gy holds VW/2 positions' taps 0 and 1 in alternate lanes, met by
##                  x's VW/2 values each repeated twice, and the even and odd lanes are summed apart at the end.
##                  g_plane / ps{a} are then gy's own plane size and row pitches.
## With x channels-last (the variant's XSource `x`; gy in place, any geometry): x packed in blocks of TM maps
## interleaved (pack.mako's _pack_cl kernel), and the accumulators are vectors over a block's TM input maps, one per
## output map and last-axis tap (a work-item owns a tap row: all SL = size taps of the last axis): per input
## position, TM/VW vector loads of x and TN x SL scalars of gy, a GEMM step like the forward's. Tap q of input
## position v reads gy at last_stride * v + q * last_dilation + o_first (o_first = -pad); the host's [v_lo, v_hi)
## is where every tap of a row lies inside gy, and only the positions outside it check each tap. Where gy has no
## row for the tap row, every tap is checked and reads zero, so x's values meet zeros as in the definition. Rows
## as short as 16 positions run whole positions, not vectors of them, so a row's set-up is spread over VW times as
## much arithmetic as with x in place.
## Chunks depend on the shape only, so results are bitwise identical for any thread count or local size.
## reduce.mako's finalize sums the chunks in order.
<%namespace name="c" file="common.mako"/>\
<%! HEX = "0123456789abcdef" %>\
${c.prelude(dtype, index_bits, vw, target=target)}
## sl: the taps of the last axis a work-item owns (x in place: the last stride, interleaved in a vector's lanes;
## x channels-last: the last axis' size)
<%
    x_cl = x == "channels_last"
    nvec = tm // vw if x_cl else tn // vw
%>
## x channels-last: one input position's GEMM step, gy's taps checked against its row's borders or not
<%def name="x_channels_last_step(nvec, checked)">
            % for j in range(nvec):
            const dcl_accv xv${j} = DCL_LOADV(xr + v * ${tm} + ${j * vw});
            % endfor
            % for ni in range(tn):
            {
                % for q in range(sl):
                % if checked:
                const int o${q} = last_stride * v + ${q} * last_dilation + o_first;
                const dcl_acc yv${q} = row_ok && (uint)o${q} < (uint)out_last
                                       ? (dcl_acc)DCL_LOAD(y${ni} + (o${q} - o_first)) : (dcl_acc)0;
                % else:
                const dcl_acc yv${q} = DCL_LOAD(y${ni} + last_stride * v + ${q} * last_dilation);
                % endif
                % for j in range(nvec):
                acc${ni * sl + q}_${j} = yv${q} * xv${j} + acc${ni * sl + q}_${j};
                % endfor
                % endfor
            }
            % endfor
</%def>

${c.kernel_head(name, signatures[""], target)}
{
    // The launch's dimensions (cpu_tiles.weights_taps_fastest): taps fastest where a work-item's x and gy
    // tiles fit in cache, so the work-items of one chunk's taps read them there; else map tiles fastest.
    const int id0 = DCL_GID(0), id1 = DCL_GID(1), id2 = DCL_GID(2);
    const int tap_id = taps_fastest ? id0 : id2, ci_tile = taps_fastest ? id1 : id0;
    const int co_id = taps_fastest ? id2 : id1;
    const int k = tap_id % tap_items;   // the tap (in place: the tap row)
    const int ch = tap_id / tap_items;
    const int ci0 = ci_tile * ${tm};
    if (ci_tile >= ci_tiles || (dcl_idx)ch * chunk_rows >= total_rows) return;
    const int g = co_id / co_tiles;
    const int co0 = (co_id % co_tiles) * ${tn};
    const dcl_idx cin = (dcl_idx)cig * groups, cout = (dcl_idx)cog * groups;
    // where tap k reads gy (the host's tap_table): its residue plane and its row shift per axis
    __global const int* tap = tap_table + k * ${1 + nd};
    const dcl_idx r_lin = tap[0];
    const dcl_idx shift = ${" + ".join([f"(dcl_idx)tap[{1 + a}] * ps{a}" for a in range(nd - 1)] + [f"tap[{nd}]"])};
% if x_cl:
${c.accumulators(tn * sl, nvec, "(dcl_accv)(0)")}
% else:
${c.accumulators(tm, nvec if gy == "channels_last" else tn, "(dcl_accv)(0)")}
% endif

    // The chunk's first row is divided out once; later rows step the coordinates (rows can be short, and
    // divisions per row would cost more than the row's arithmetic).
    const dcl_idx row_lo = (dcl_idx)ch * chunk_rows;
    const dcl_idx row_hi = DCL_MIN(row_lo + chunk_rows, total_rows);
    dcl_idx b = row_lo / rows_per_b;
    % if nd > 1:
    dcl_idx rem = row_lo - b * rows_per_b;
    % for a in reversed(range(nd - 1)):
    int i${a} = rem % in${a}; rem /= in${a};
    % endfor
    % endif
    // Each operand's plane for batch item b, moved on by one item when the rows carry into the next.
% if x_cl:
    __global const dcl_t* xb = x + (((b * groups + g) * ci_tiles + ci_tile) * in_plane) * ${tm};
    const dcl_idx x_item = (dcl_idx)groups * ci_tiles * in_plane * ${tm};
% else:
    % for mi in range(tm):
    __global const dcl_t* xp${mi} = x + (b * cin + (dcl_idx)g * cig + DCL_MIN(ci0 + ${mi}, cig - 1)) * in_plane;
    % endfor
    const dcl_idx x_item = cin * in_plane;
% endif
% if gy == "channels_last":
    __global const dcl_t* yp = gyp + ((b * nplanes + r_lin) * groups * blocks_per_group
                                      + g * blocks_per_group + co0 / ${tn}) * g_plane * ${tn};
    const dcl_idx y_item = (dcl_idx)nplanes * groups * blocks_per_group * g_plane * ${tn};
% else:
    % for ni in range(tn):
    __global const dcl_t* yp${ni} = gyp + ((b * cout + (dcl_idx)g * cog + DCL_MIN(co0 + ${ni}, cog - 1))${" * nplanes + r_lin" if gy == "planar" else ""}) * g_plane;
    % endfor
    const dcl_idx y_item = cout${" * nplanes" if gy == "planar" else ""} * g_plane;
% endif
% if x_cl:
    const int o_first = tap[${nd}];
% endif
    for (dcl_idx row = row_lo; row < row_hi; ++row) {
% if x_cl:
        // Where gy has no row for this tap row, the row's x still meets zeros, as in the definition (a NaN or Inf
        // in x reaches the gradient): every tap of it is checked and fails, none read.
<% rows_exist = [f"(uint)(stride{a} * i{a} + tap[{1 + a}]) < (uint)out{a}" for a in range(nd - 1)] %>\
        const bool row_ok = ${" && ".join(rows_exist) or "true"};
        const int inner_lo = row_ok ? v_lo : in_last, inner_hi = row_ok ? v_hi : in_last;
% endif
        const dcl_idx x_row = ${" + ".join([f"(dcl_idx)i{a} * is{a}" for a in range(nd - 1)] or ["0"])};
        const dcl_idx g_row = shift${"".join(f" + (dcl_idx)({f'stride{a}' if gy == 'in_place' else 1} * i{a}) * ps{a}" for a in range(nd - 1))};
% if x_cl:
        __global const dcl_t* xr = xb + x_row * ${tm};
% elif gy == "in_place":
        % for mi in range(tm):
        __global const dcl_t* x${mi} = xp${mi} + x_row;
        % endfor
% else:
        // gy packed: one index into the TM maps' rows from x_row, not a pointer each, so a row's set-up is short
        // (DCGAN 512->256's rows are 8 long)
        const dcl_idx x_end = x_row + in_last;
% endif
% if gy == "in_place":
        % for ni in range(tn):
        __global const dcl_t* y${ni} = yp${ni} + g_row;
        % endfor
% endif
% if x_cl:
        for (int v = 0; v < inner_lo; ++v) {
${x_channels_last_step(nvec, True)}
        }
        for (int v = inner_lo; v < inner_hi; ++v) {
${x_channels_last_step(nvec, False)}
        }
        for (int v = inner_hi; v < in_last; ++v) {
${x_channels_last_step(nvec, True)}
        }
% elif gy == "in_place":
<% step = vw // sl %>\
        int v = 0;
        for (; v + ${step} <= in_last; v += ${step}) {   // ${step} input positions a step
            % for mi in range(tm):
            % if sl == 2:
            const dcl_acch xh${mi} = DCL_LOADH(x${mi} + v);
            const dcl_accv xv${mi} = (dcl_accv)(${", ".join(f"xh{mi}.s{HEX[l]}, xh{mi}.s{HEX[l]}" for l in range(step))});
            % else:
            const dcl_accv xv${mi} = DCL_LOADV(x${mi} + v);
            % endif
            % endfor
            % for ni in range(tn):
            {
                const dcl_accv yv = DCL_LOADV(y${ni} + ${sl} * v);
                % for mi in range(tm):
                acc${mi}_${ni} = xv${mi} * yv + acc${mi}_${ni};
                % endfor
            }
            % endfor
        }
        if (v < in_last) {   // the row's last positions: lanes past the row stay zero on both sides
            const int left = in_last - v;
            % for mi in range(tm):
            dcl_accv xv${mi} = (dcl_accv)(0);
            % for l in range(step - 1):
            if (${l} < left) { const dcl_acc e = DCL_LOAD(x${mi} + v + ${l}); ${" ".join(f"xv{mi}.s{HEX[l * sl + q]} = e;" for q in range(sl))} }
            % endfor
            % endfor
            % for ni in range(tn):
            {
                dcl_accv yv = (dcl_accv)(0);
                % for l in range(vw - sl):
                if (${l // sl} < left) yv.s${HEX[l]} = DCL_LOAD(y${ni} + ${sl} * v + ${l});
                % endfor
                % for mi in range(tm):
                acc${mi}_${ni} = xv${mi} * yv + acc${mi}_${ni};
                % endfor
            }
            % endfor
        }
% elif gy == "planar":
        dcl_idx xi = x_row, yi = g_row;
        for (; xi + ${vw} <= x_end; xi += ${vw}, yi += ${vw}) {
        % if tn < tm:
            ## the smaller operand set is held, the other streamed: TM*TN accumulators + min(TM, TN) + 1 registers
            % for ni in range(tn):
            const dcl_accv yv${ni} = DCL_LOADV(yp${ni} + yi);
            % endfor
            % for mi in range(tm):
            {
                const dcl_accv xv = DCL_LOADV(xp${mi} + xi);
                % for ni in range(tn):
                acc${mi}_${ni} = xv * yv${ni} + acc${mi}_${ni};
                % endfor
            }
            % endfor
        % else:
            % for mi in range(tm):
            const dcl_accv xv${mi} = DCL_LOADV(xp${mi} + xi);
            % endfor
            % for ni in range(tn):
            {
                const dcl_accv yv = DCL_LOADV(yp${ni} + yi);
                % for mi in range(tm):
                acc${mi}_${ni} = xv${mi} * yv + acc${mi}_${ni};
                % endfor
            }
            % endfor
        % endif
        }
        if (xi < x_end) {   // the row's last, partial vector: lanes past the row are zero on both sides
            const int left = x_end - xi;
            % for mi in range(tm):
            dcl_accv xv${mi} = (dcl_accv)(0);
            % for l in range(vw - 1):
            if (${l} < left) xv${mi}.s${HEX[l]} = DCL_LOAD(xp${mi} + xi + ${l});
            % endfor
            % endfor
            % for ni in range(tn):
            {
                dcl_accv yv = DCL_LOADV(yp${ni} + yi);
                % for l in range(1, vw):
                if (${l} >= left) yv.s${HEX[l]} = 0;
                % endfor
                % for mi in range(tm):
                acc${mi}_${ni} = xv${mi} * yv + acc${mi}_${ni};
                % endfor
            }
            % endfor
        }
% else:
        __global const dcl_t* yb = yp + g_row * ${tn};
        for (dcl_idx xv = x_row; xv < x_end; ++xv, yb += ${tn}) {
            % for j in range(nvec):
            const dcl_accv y${j} = DCL_LOADV(yb + ${j * vw});
            % endfor
            % for mi in range(tm):
            {
                const dcl_acc xs = DCL_LOAD(xp${mi} + xv);
                % for j in range(nvec):
                acc${mi}_${j} = xs * y${j} + acc${mi}_${j};
                % endfor
            }
            % endfor
        }
% endif
        // next row: step the coordinates, the last axis but one fastest, then the batch item
<% rebase = " ".join((["xb += x_item;"] if x_cl else [f"xp{mi} += x_item;" for mi in range(tm)]) + (["yp += y_item;"] if gy == "channels_last" else [f"yp{ni} += y_item;" for ni in range(tn)])) %>\
        ${c.odometer([f"i{a}" for a in range(nd - 1)], [f"in{a}" for a in range(nd - 1)], rebase)}
    }

    __global dcl_acc* pb = part + (dcl_idx)ch * cin * cog * ks;
% if x_cl:
${c.spill(tn * sl, nvec)}
    const int m_count = DCL_MIN(${tm}, cig - ci0), n_count = DCL_MIN(${tn}, cog - co0);
    for (int ni = 0; ni < n_count; ++ni)
        for (int q = 0; q < ${sl}; ++q)
            for (int mi = 0; mi < m_count; ++mi)
                pb[(((dcl_idx)g * cig + ci0 + mi) * cog + co0 + ni) * ks + k * ${sl} + q] = tile[(ni * ${sl} + q) * ${tm} + mi];
% elif gy == "in_place":
    % for mi in range(tm):
    % for ni in range(tn):
    if (ci0 + ${mi} < cig && co0 + ${ni} < cog) {
        __global dcl_acc* pw = pb + (((dcl_idx)g * cig + ci0 + ${mi}) * cog + co0 + ${ni}) * ks + k * ${sl};
        % for kl in range(sl):
        pw[${kl}] = ${" + ".join(f"acc{mi}_{ni}.s{HEX[l]}" for l in range(kl, vw, sl))};
        % endfor
    }
    % endfor
    % endfor
% elif gy == "planar":
    % for mi in range(tm):
    % for ni in range(tn):
    if (ci0 + ${mi} < cig && co0 + ${ni} < cog)
        pb[(((dcl_idx)g * cig + ci0 + ${mi}) * cog + co0 + ${ni}) * ks + k] = ${" + ".join(f"acc{mi}_{ni}.s{HEX[l]}" for l in range(vw))};
    % endfor
    % endfor
% else:
${c.spill(tm, nvec)}
    const int m_count = DCL_MIN(${tm}, cig - ci0), n_count = DCL_MIN(${tn}, cog - co0);
    for (int mi = 0; mi < m_count; ++mi)
        for (int ni = 0; ni < n_count; ++ni)
            pb[(((dcl_idx)g * cig + ci0 + mi) * cog + co0 + ni) * ks + k] = tile[mi * ${tn} + ni];
% endif
}
${c.kernel_tail(name, signatures[""], target)}
