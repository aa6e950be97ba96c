## Pack: copy a (planes, *extents) tensor into the padded, stride-split layout the tiled kernels read.
##     dst[plane, R, p] = src[plane, (p + lo)*split + R]   where inside src, else 0,
## for p on the grid of extents grid0..grid{nd-1} (row-major), and 0 on the tail [grid size, dst_plane) that
## keeps every tile's reads inside its own plane. Writing every element means padding and tail are zeros, so
## junk lanes of the tiled kernels compute on zeros, never on stale memory or another plane's data.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, 4)}
__kernel void ${name}(
    __global const dcl_t* restrict src, __global dcl_t* restrict dst, const dcl_idx dst_plane,
    const dcl_idx grid_size, const dcl_idx src_plane, const int n_split
    % for a in range(nd):
    , const int grid${a}, const int lo${a}, const int split${a}, const int ext${a}
    % endfor
    )
{
    const dcl_idx p = get_global_id(0);
    if (p >= dst_plane) return;
    const dcl_idx plane = get_global_id(1);   // (source plane, residue) pairs
    dcl_acc value = 0;
    if (p < grid_size) {
        int rl = plane % n_split;
        dcl_idx rem = p, src_offset = 0, src_stride = 1;
        bool inside = true;
        % for a in reversed(range(nd)):
        {
            const int ga = rem % grid${a}; rem /= grid${a};
            const int ra = rl % split${a}; rl /= split${a};
            const int ja = (ga + lo${a}) * split${a} + ra;
            inside = inside && ja >= 0 && ja < ext${a};
            src_offset += (dcl_idx)ja * src_stride;
            src_stride *= ext${a};
        }
        % endfor
        if (inside) value = DCL_LOAD(src + (plane / n_split) * src_plane + src_offset);
    }
    DCL_STORE(value, dst + plane * dst_plane + p);
}
