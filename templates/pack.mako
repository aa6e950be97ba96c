## Pack: copy a (planes, *extents) tensor into the padded, stride-split layout the tiled kernels read.
##     dst[plane, R, p] = src[plane, (p + lo)*split + R]   where inside src, else 0,
## for p on the grid of extents grid0..grid{nd-1} (row-major), and 0 on the tail [grid size, dst_plane) that
## keeps every tile's reads inside its own plane. Writing every element means padding and tail are zeros, so
## junk lanes of the tiled kernels compute on zeros, never on stale memory or another plane's data.
## A work-item copies a block of grid rows (one more block zero-fills the plane's tail): row coordinates are
## divided out once per block and then stepped, each row a plain copy loop between two zero runs. Extents,
## coordinates and positions are dcl_idx: one axis of a tensor past 2^31 elements needs a 64-bit build.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, 4)}
<% last = nd - 1 %>
## Sets up the block: row0/row1, the residues r{a}, the grid coordinates g{a} of row0; `tail` is the statement
## that zero-fills the plane's tail (run by the extra block).
<%def name="block_setup(tail)">
    const dcl_idx blocks = (rows + rows_per_item - 1) / rows_per_item;
    const dcl_idx block = get_global_id(0);
    if (block > blocks) return;
    const dcl_idx plane = get_global_id(1);
    if (block == blocks) {
        ${tail}
        return;
    }
    const dcl_idx row0 = block * rows_per_item, row1 = DCL_MIN(rows, row0 + rows_per_item);
    int rl = plane % n_split;
    % for a in reversed(range(nd)):
    const int r${a} = rl % split${a}; rl /= split${a};
    % endfor
    dcl_idx rr = row0;
    % for a in reversed(range(nd - 1)):
    dcl_idx g${a} = rr % grid${a}; rr /= grid${a};
    % endfor
    // along the last axis the source index (p + lo)*split + r is inside for p in [p_lo, p_hi)
    const dcl_idx p_lo = DCL_MIN(grid${last}, DCL_MAX(0, (split${last} - 1 - r${last}) / split${last} - lo${last}));
    const dcl_idx p_hi = DCL_MAX(p_lo, DCL_MIN(grid${last}, (ext${last} - r${last} + split${last} - 1) / split${last} - lo${last}));
</%def>
## Per row: `inside` and `src_offset` (of grid position p = 0 on this row); then steps the coordinates.
<%def name="row_source()">
        bool inside = true;
        dcl_idx src_offset = lo${last} * split${last} + r${last}, src_stride = ext${last};
        % for a in reversed(range(nd - 1)):
        {
            const dcl_idx ja = (g${a} + lo${a}) * split${a} + r${a};
            inside = inside && ja >= 0 && ja < ext${a};
            src_offset += ja * src_stride;
            src_stride *= ext${a};
        }
        % endfor
</%def>
<%def name="step_row()">
        ${c.odometer([f"g{a}" for a in range(nd - 1)], [f"grid{a}" for a in range(nd - 1)], "")}
</%def>

__kernel void ${name}(${c.params(signatures[""])})
{
    ${block_setup("for (dcl_idx e = grid_size; e < dst_plane; ++e) DCL_STORE((dcl_acc)0, dst + plane * dst_plane + e);")}
    __global const dcl_t* s_plane = src + (plane / n_split) * src_plane;
    for (dcl_idx row = row0; row < row1; ++row) {
        ${row_source()}
        __global dcl_t* d = dst + plane * dst_plane + row * grid${last};
        __global const dcl_t* s = s_plane + src_offset;
        const dcl_idx lo_end = inside ? p_lo : grid${last}, hi_end = inside ? p_hi : grid${last};
        dcl_idx p = 0;
        for (; p < lo_end; ++p)
            DCL_STORE((dcl_acc)0, d + p);
        if (split${last} == 1)
            for (; p < hi_end; ++p)
                DCL_STORE((dcl_acc)DCL_LOAD(s + p), d + p);
        else
            for (; p < hi_end; ++p)
                DCL_STORE((dcl_acc)DCL_LOAD(s + p * split${last}), d + p);
        for (; p < grid${last}; ++p)
            DCL_STORE((dcl_acc)0, d + p);
        ${step_row()}
    }
}

## Map-blocked channels-last variant for backward weights, whose work-items vectorise over output maps:
## dst[b, R, block, p, lane], each group's maps cut into blocks of `block_maps` maps (lanes past the group's maps
## are zero), so the maps a work-item reads for consecutive positions are one contiguous stream.
__kernel void ${name}_cl(${c.params(signatures["_cl"])})
{
    const int map_blocks = channels / group_maps * blocks_per_group;
    ${block_setup("for (int bl = 0; bl < map_blocks; ++bl) for (dcl_idx e = grid_size * block_maps; e < dst_plane * block_maps; ++e) DCL_STORE((dcl_acc)0, dst + (plane * map_blocks + bl) * dst_plane * block_maps + e);")}
    __global const dcl_t* s_plane = src + (plane / n_split) * channels * src_plane;
    for (dcl_idx row = row0; row < row1; ++row) {
        ${row_source()}
        __global const dcl_t* s = s_plane + src_offset;
        // a blocked transpose: 16 positions at a time, read along each map's row, written into the block
        for (dcl_idx p0 = 0; p0 < grid${last}; p0 += 16) {
            const dcl_idx p1 = DCL_MIN(grid${last}, p0 + 16);
            for (int bl = 0; bl < map_blocks; ++bl) {
                __global dcl_t* d = dst + ((plane * map_blocks + bl) * dst_plane + row * grid${last}) * block_maps;
                const int g = bl / blocks_per_group;
                for (int lane = 0; lane < block_maps; ++lane) {
                    const int co = (bl % blocks_per_group) * block_maps + lane;
                    const bool live = inside && co < group_maps;
                    __global const dcl_t* sc = s + (dcl_idx)(g * group_maps + DCL_MIN(co, group_maps - 1)) * src_plane;
                    __global dcl_t* dl = d + lane;
                    // [p0, copy_lo) zeros, [copy_lo, copy_hi) copied, [copy_hi, p1) zeros: no test per element
                    const dcl_idx copy_lo = live ? DCL_MAX(p0, DCL_MIN(p1, p_lo)) : p1;
                    const dcl_idx copy_hi = live ? DCL_MAX(copy_lo, DCL_MIN(p1, p_hi)) : p1;
                    dcl_idx p = p0;
                    for (; p < copy_lo; ++p)
                        DCL_STORE((dcl_acc)0, dl + p * block_maps);
                    for (; p < copy_hi; ++p)
                        DCL_STORE((dcl_acc)DCL_LOAD(sc + p * split${last}), dl + p * block_maps);
                    for (; p < p1; ++p)
                        DCL_STORE((dcl_acc)0, dl + p * block_maps);
                }
            }
        }
        ${step_row()}
    }
}
