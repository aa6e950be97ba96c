## Pack: copy a (planes, *extents) tensor into the padded, stride-split layout the tiled kernels read (part of the
## shared program, shared.mako, whose prelude declares the types).
##     dst[plane, R, p] = src[plane, (p + lo)*split + R]   where inside src, else 0,
## for p on the grid of extents grid0..grid{nd-1} (row-major), and 0 on the tail [grid size, dst_plane) that
## keeps every tile's reads inside its own plane. Writing every element means padding and tail are zeros, so
## junk lanes of the tiled kernels compute on zeros, never on stale memory or another plane's data.
## A work-item copies a block of grid rows (one more block zero-fills the plane's tail): row coordinates are
## divided out once per block and then stepped, each row a plain copy loop between two zero runs. Extents,
## coordinates and positions are dcl_idx: one axis of a tensor past 2^31 elements needs a 64-bit build.
<%namespace name="c" file="common.mako"/>\
<% last = nd - 1 %>
#define PACK_RUN 128
## Sets up the block: a work-item owns one source plane's rows row0..row1 for one residue of every axis, or,
## with `all_last`, for one residue of every axis but the last, and then writes the consecutive destination
## planes of all the last axis's residues from them (plane0 the first), so each source row is read
## once, while it is in cache (the channels-last pack, whose work-item reads a block of maps' rows). `tail` is
## the statement that zero-fills destination plane `plane`'s tail (run by the extra block).
<%def name="block_setup(tail, all_last)">
    const dcl_idx blocks = (rows + rows_per_item - 1) / rows_per_item;
    const dcl_idx block = get_global_id(0);
    if (block > blocks) return;
    % if all_last:
    const dcl_idx plane0 = get_global_id(1) * split${last};
    if (block == blocks) {
        for (dcl_idx plane = plane0; plane < plane0 + split${last}; ++plane) {
            ${tail}
        }
        return;
    }
    % else:
    const dcl_idx plane0 = get_global_id(1), plane = plane0;
    if (block == blocks) {
        ${tail}
        return;
    }
    % endif
    const dcl_idx row0 = block * rows_per_item, row1 = DCL_MIN(rows, row0 + rows_per_item);
    int rl = plane0 % n_split${f" / split{last}" if all_last else ""};
    % for a in reversed(range(nd - 1 if all_last else nd)):
    const int r${a} = rl % split${a}; rl /= split${a};
    % endfor
</%def>
## Declares the grid coordinates g{a} of row0.
<%def name="first_row()">
    dcl_idx rr = row0;
    % for a in reversed(range(nd - 1)):
    dcl_idx g${a} = rr % grid${a}; rr /= grid${a};
    % endfor
</%def>
## Per row: `inside` and `src_offset` (of grid position p = 0 on this row, at the work-item's last-axis residue
## where `residue`, else at residue 0).
<%def name="row_source(residue)">
        bool inside = true;
        dcl_idx src_offset = lo${last} * split${last}${f" + r{last}" if residue else ""}, src_stride = ext${last};
        % for a in reversed(range(nd - 1)):
        {
            const dcl_idx ja = (g${a} + lo${a}) * split${a} + r${a};
            inside = inside && ja >= 0 && ja < ext${a};
            src_offset += ja * src_stride;
            src_stride *= ext${a};
        }
        % endfor
</%def>
## For the last axis's residue r: the source index (p + lo)*split + r is inside for p in [p_lo, p_hi).
<%def name="last_axis_range()">
            const dcl_idx p_lo = DCL_MIN(grid${last}, DCL_MAX(0, (split${last} - 1 - r${last}) / split${last} - lo${last}));
            const dcl_idx p_hi = DCL_MAX(p_lo, DCL_MIN(grid${last}, (ext${last} - r${last} + split${last} - 1) / split${last} - lo${last}));
</%def>
## A row of every residue of the last axis (the kernels that write them all): its columns t = p * split + r, t_end
## of them, and those inside the source row, [t_in0, t_in1) (the rest are padding: zeros).
<%def name="row_columns()">
    const dcl_idx t_end = grid${last} * split${last}, j_lo = lo${last} * split${last};
    const dcl_idx t_in0 = DCL_MIN(t_end, DCL_MAX(0, -j_lo)), t_in1 = DCL_MAX(t_in0, DCL_MIN(t_end, ext${last} - j_lo));
</%def>
<%def name="step_row()">
        ${c.odometer([f"g{a}" for a in range(nd - 1)], [f"grid{a}" for a in range(nd - 1)], "")}
</%def>

__kernel void ${name}_pack(${c.params(signatures["_pack"])})
{
    ${block_setup("for (dcl_idx e = grid_size; e < dst_plane; ++e) DCL_STORE((dcl_acc)0, dst + plane * dst_plane + e);", False)}
    ${first_row()}
    ${last_axis_range()}
    __global const dcl_t* s_plane = src + (plane / n_split) * src_plane;
    for (dcl_idx row = row0; row < row1; ++row) {
        ${row_source(True)}
        __global dcl_t* d = dst + plane * dst_plane + row * grid${last};
        __global const dcl_t* s = s_plane + src_offset;
        const dcl_idx lo_end = inside ? p_lo : grid${last}, hi_end = inside ? p_hi : grid${last};
        dcl_idx p = 0;
        for (; p < lo_end; ++p)
            DCL_STORE((dcl_acc)0, d + p);
        if (split${last} == 1)
            for (; p < hi_end; ++p)
                DCL_STORE((dcl_acc)DCL_LOAD(s + p), d + p);
        else if (split${last} == 2)
            for (; p < hi_end; ++p)
                DCL_STORE((dcl_acc)DCL_LOAD(s + 2 * p), d + p);
        else
            for (; p < hi_end; ++p)
                DCL_STORE((dcl_acc)DCL_LOAD(s + p * split${last}), d + p);
        for (; p < grid${last}; ++p)
            DCL_STORE((dcl_acc)0, d + p);
        ${step_row()}
    }
}

## The same layout for a last-axis split above 2 (packing.py): a work-item writes every residue of the last axis
## (destination planes plane0 .. plane0 + split - 1) from the rows it reads, so each source row is read once, in
## order, rather than once a residue at every split-th element. Column t = p * split + r of a row goes to residue
## r's plane at position p and is inside the source row for t in [t_in0, t_in1); the positions whose columns are
## all inside are copied without that test, four at a time for the splits in SPLIT_BLOCKS.
<%def name="split_column(p, r)">
            {
                const dcl_idx t = ${p} * split${last} + ${r};
                DCL_STORE(inside && t >= t_in0 && t < t_in1 ? (dcl_acc)DCL_LOAD(s + t) : (dcl_acc)0, d + ${r} * dst_plane + ${p});
            }
</%def>
## Four positions of a split of S at once: S vectors of the source row (4 positions x S residues) and one
## vector of 4 positions stored to each residue's plane.
<% SPLIT_BLOCKS = (4, 8) %>
<%def name="split_block(S)">
            for (; p + 4 <= mid1; p += 4) {
                % for k in range(S):
                const dcl_accv u${k} = DCL_LOADV(s + p * ${S} + ${4 * k});
                % endfor
                % for r in range(S):
                DCL_STOREV((dcl_accv)(${", ".join(f"u{(i * S + r) // 4}.s{(i * S + r) % 4}" for i in range(4))}), d + ${r} * dst_plane + p);
                % endfor
            }
</%def>
__kernel void ${name}_pack_split(${c.params(signatures["_pack_split"])})
{
    ${block_setup("for (dcl_idx e = grid_size; e < dst_plane; ++e) DCL_STORE((dcl_acc)0, dst + plane * dst_plane + e);", True)}
    ${first_row()}
    __global const dcl_t* s_plane = src + (plane0 / n_split) * src_plane;
    const int sl = split${last};
${row_columns()}
    const dcl_idx p_in0 = (t_in0 + sl - 1) / sl, p_in1 = DCL_MAX(p_in0, t_in1 / sl);
    for (dcl_idx row = row0; row < row1; ++row) {
        ${row_source(False)}
        __global dcl_t* d = dst + plane0 * dst_plane + row * grid${last};
        __global const dcl_t* s = s_plane + src_offset;
        const dcl_idx mid0 = inside ? p_in0 : grid${last}, mid1 = inside ? p_in1 : grid${last};
        dcl_idx p = 0;
        for (; p < mid0; ++p)
            for (int r = 0; r < sl; ++r)
${split_column("p", "r")}
        switch (sl) {
        % for S in SPLIT_BLOCKS:
        case ${S}:
${split_block(S)}
            break;
        % endfor
        }
        for (; p < mid1; ++p)
            for (int r = 0; r < sl; ++r)
                DCL_STORE((dcl_acc)DCL_LOAD(s + p * sl + r), d + r * dst_plane + p);
        for (; p < grid${last}; ++p)
            for (int r = 0; r < sl; ++r)
${split_column("p", "r")}
        ${step_row()}
    }
}

## Map-blocked channels-last variant for backward weights, whose work-items vectorise over output maps:
## dst[b, R, block, p, lane], each group's maps cut into blocks of `block_maps` maps (lanes past the group's maps
## are zero), so the maps a work-item reads for consecutive positions are one contiguous stream.
## A source row, all residues of the last axis together, is the run of columns t = p * split + r (position p,
## residue r) from the grid's first; column t of a block's maps is one vector of the destination, in residue r's
## plane at position p. So the kernel transposes 4 maps x 4 columns at a time: four vector loads along the
## maps' rows, four vector stores across them. The row is walked in runs of PACK_RUN columns, every map of the
## block for a run before the next run, so a run's destination (block_maps x PACK_RUN elements) is written while
## it is in cache and only four of the block's map rows, a plane apart, are read at once. Runs of 128 columns
## (block_maps x 512 bytes of float32 written a run) packed the audio layer's gy (rows of 8208 columns) 25-35%
## faster than runs of 32; runs of 256 and 512 were no faster. A row shorter than a run is one run.
<%
quad = range(4)

def quad_column(k):
    """Column k of the quad of map rows maprow0..3: one vector across the four maps."""
    return "(dcl_accv)(" + ", ".join(f"maprow{i}.s{k}" for i in quad) + ")"
%>\
## The quad of maps' rows from column t: four vector loads.
<%def name="quad_rows()">
                        % for i in quad:
                        const dcl_accv maprow${i} = DCL_LOADV(s${i} + t);
                        % endfor
</%def>
__kernel void ${name}_pack_cl(${c.params(signatures["_pack_cl"])})
{
    const int map_blocks = channels / group_maps * blocks_per_group;
    const int bl = get_global_id(2);   // the block of maps
    ${block_setup("for (dcl_idx e = grid_size * block_maps; e < dst_plane * block_maps; ++e) DCL_STORE((dcl_acc)0, dst + (plane * map_blocks + bl) * dst_plane * block_maps + e);", True)}
    __global const dcl_t* s_plane = src + (plane0 / n_split) * channels * src_plane;
    const dcl_idx residue_pitch = (dcl_idx)map_blocks * dst_plane * block_maps;   // one residue's plane to the next
${row_columns()}
    ${first_row()}
    for (dcl_idx row = row0; row < row1; ++row) {
        ${row_source(False)}
        const int co0 = (bl % blocks_per_group) * block_maps;
        // the maps of the block that exist (a group's last block may be partial: its other lanes are zeros)
        const int live = inside ? DCL_MIN(block_maps, group_maps - co0) : 0;
        __global const dcl_t* sc = s_plane + src_offset
                                   + (dcl_idx)((bl / blocks_per_group) * group_maps + co0) * src_plane;
        __global dcl_t* d = dst + ((plane0 * map_blocks + bl) * dst_plane + row * grid${last}) * block_maps;
        for (dcl_idx t0 = 0; t0 < t_end; t0 += PACK_RUN) {
            const dcl_idx t1 = DCL_MIN(t_end, t0 + PACK_RUN);
            for (int q0 = 0; q0 < block_maps; q0 += 4) {
                // a block's last quad of maps ends at the block's end, sharing maps with the one before it (they
                // are written twice, the same values): a block of 6 maps is two whole quads, not one and a half
                const int m0 = block_maps >= 4 ? DCL_MIN(q0, block_maps - 4) : q0;
                % for i in quad:
                __global const dcl_t* s${i} = sc + (dcl_idx)DCL_MIN(m0 + ${i}, DCL_MAX(live - 1, 0)) * src_plane;
                % endfor
                dcl_idx t = t0;
                if (split${last} == 1 && m0 + 4 <= live && t0 >= t_in0) {
                    // no residues on the last axis and a whole quad of maps: the columns inside the row go
                    // straight through, transposed 4 x 4, without the loop below's per-column bookkeeping
                    const dcl_idx t_fast = DCL_MIN(t1, t_in1);
                    for (; t + 4 <= t_fast; t += 4) {
${quad_rows()}
                        % for k in quad:
                        DCL_STOREV(${quad_column(k)}, d + (t + ${k}) * block_maps + m0);
                        % endfor
                    }
                }
                dcl_idx p = t / split${last};
                int r = t - p * split${last};
                for (; t < t1; t += 4) {
                    dcl_accv ${", ".join(f"col{k}" for k in quad)};
                    if (m0 + 4 <= live && t >= t_in0 && t + 4 <= t_in1) {
${quad_rows()}
                        % for k in quad:
                        col${k} = ${quad_column(k)};
                        % endfor
                    } else {   // at the row's ends, the block's last maps, or its dead lanes
                        % for k in quad:
                        {
                            const bool in_row = t + ${k} >= t_in0 && t + ${k} < t_in1;
                            % for i in quad:
                            col${k}.s${i} = in_row && m0 + ${i} < live ? (dcl_acc)DCL_LOAD(s${i} + t + ${k}) : (dcl_acc)0;
                            % endfor
                        }
                        % endfor
                    }
                    % for k in quad:
                    if (t + ${k} < t1) {
                        __global dcl_t* dp = d + r * residue_pitch + p * block_maps + m0;
                        if (m0 + 4 <= block_maps) {
                            DCL_STOREV(col${k}, dp);
                        } else {
                            % for i in range(3):
                            if (m0 + ${i} < block_maps) DCL_STORE(col${k}.s${i}, dp + ${i});
                            % endfor
                        }
                    }
                    if (++r == split${last}) { r = 0; ++p; }
                    % endfor
                }
            }
        }
        ${step_row()}
    }
}

## W repacked tile-major for the register-tiled kernels, which then stream a tile's weights contiguously. One
## work-item a row (g, tile, other map) of ks * tm elements: the tile runs over output maps (`tile_of_co`: the
## forward, rows over input maps) or input maps (backward data), and `taps` says per tap t of the row which of
## W's taps it holds and where: wp[row][taps[3t + 1] + mi * taps[3t + 2]] = W[g][ci][co][taps[3t]] for map mi of
## the tile, maps past the group's count zero-filled. One kernel for every layer and tile: a new layer's
## programs carry no repack kernel of their own to compile. Taps outer, maps inner: a tap's table entry is read
## once for the tile's maps. A whole tile (every tile but a group's last, where maps run out) takes a loop of its
## own, without the zero fill: together 35-40% faster on DCGAN 512->256's W than a loop over maps with the taps
## inside (the repack is bound by instructions on a CPU, not by memory).
<%def name="copy_taps(maps)">
    for (int t = 0; t < ks; ++t) {
        __global const dcl_t* st = s + taps[4 * t];
        __global dcl_t* dt = d + taps[4 * t + 1] + (dcl_idx)ci * taps[4 * t + 3];
        const int step = taps[4 * t + 2];
        for (int mi = 0; mi < ${maps}; ++mi)
            DCL_STORE((dcl_acc)DCL_LOAD(st + mi * map_step), dt + mi * step);
        % if maps != "tm":
        for (int mi = ${maps}; mi < tm; ++mi)
            DCL_STORE((dcl_acc)0, dt + mi * step);
        % endif
    }
</%def>
__kernel void ${name}_pack_w(${c.params(signatures["_pack_w"])})
{
    const dcl_idx item = get_global_id(0);
    if (item >= rows) return;
    const int others = tile_of_co ? cig : cog, tiled_count = tile_of_co ? cog : cig;
    // Work-items walk W in its own order, input maps outermost: the forward's rows taken in wp's order read W
    // a tile of output maps from each input map in turn, 16 KiB apart on DCGAN 512->256 (1.3-1.5 ms, now 1.05-1.1).
    const int tile = tile_of_co ? item % tiles : (item / others) % tiles;
    const int other = tile_of_co ? (item / tiles) % others : item % others;
    const int g = item / others / tiles;
    const dcl_idx row = ((dcl_idx)g * tiles + tile) * others + other;
    const int live = DCL_MIN(tm, tiled_count - tile * tm);  // the tile's maps inside the group
    const int ci = tile_of_co ? other : tile * tm, co = tile_of_co ? tile * tm : other;
    const dcl_idx map_step = tile_of_co ? (dcl_idx)ks : (dcl_idx)cog * ks;  // from one of the tile's maps to the next
    __global const dcl_t* s = w + (((dcl_idx)g * cig + ci) * cog + co) * ks;
    __global dcl_t* d = wp + row * ks * tm;
    if (live == tm) {
${copy_taps("tm")}
        return;
    }
${copy_taps("live")}
}
