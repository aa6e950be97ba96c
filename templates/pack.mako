## Pack: copy a (planes, *extents) tensor into the padded, stride-split layout the tiled kernels read.
##     dst[plane, R, p] = src[plane, (p + lo)*split + R]   where inside src, else 0,
## for p on the grid of extents grid0..grid{nd-1} (row-major), and 0 on the tail [grid size, dst_plane) that
## keeps every tile's reads inside its own plane. Writing every element means padding and tail are zeros, so
## junk lanes of the tiled kernels compute on zeros, never on stale memory or another plane's data.
## A work-item copies one grid row (the last work-item of a plane zero-fills its tail): index arithmetic once
## per row, then a plain copy loop between two zero runs.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, 4)}
<% last = nd - 1 %>
__kernel void ${name}(
    __global const dcl_t* restrict src, __global dcl_t* restrict dst, const dcl_idx dst_plane,
    const dcl_idx grid_size, const dcl_idx src_plane, const int n_split, const int rows
    % for a in range(nd):
    , const int grid${a}, const int lo${a}, const int split${a}, const int ext${a}
    % endfor
    )
{
    const int row = get_global_id(0);
    if (row > rows) return;
    const dcl_idx plane = get_global_id(1);   // (source plane, residue) pairs
    __global dcl_t* d = dst + plane * dst_plane;
    if (row == rows) {   // the tail past the grid
        for (dcl_idx p = grid_size; p < dst_plane; ++p)
            DCL_STORE((dcl_acc)0, d + p);
        return;
    }
    d += (dcl_idx)row * grid${last};
    int rl = plane % n_split;
    const int r${last} = rl % split${last}; rl /= split${last};
    int rr = row;
    bool inside = true;
    dcl_idx src_offset = 0, src_stride = ext${last};
    % for a in reversed(range(nd - 1)):
    {
        const int ga = rr % grid${a}; rr /= grid${a};
        const int ra = rl % split${a}; rl /= split${a};
        const int ja = (ga + lo${a}) * split${a} + ra;
        inside = inside && ja >= 0 && ja < ext${a};
        src_offset += (dcl_idx)ja * src_stride;
        src_stride *= ext${a};
    }
    % endfor
    // along the last axis: source index j = (p + lo)*split + r is inside for p in [p_lo, p_hi)
    int p_lo = 0, p_hi = 0;
    if (inside) {
        p_lo = DCL_MIN(grid${last}, DCL_MAX(0, (-r${last} + split${last} - 1) / split${last} - lo${last}));
        p_hi = DCL_MAX(p_lo, DCL_MIN(grid${last}, (ext${last} - r${last} + split${last} - 1) / split${last} - lo${last}));
    }
    __global const dcl_t* s = src + (plane / n_split) * src_plane + src_offset
                              + ((dcl_idx)lo${last} * split${last} + r${last});
    int p = 0;
    for (; p < p_lo; ++p)
        DCL_STORE((dcl_acc)0, d + p);
    if (split${last} == 1)
        for (; p < p_hi; ++p)
            DCL_STORE((dcl_acc)DCL_LOAD(s + p), d + p);
    else
        for (; p < p_hi; ++p)
            DCL_STORE((dcl_acc)DCL_LOAD(s + (dcl_idx)p * split${last}), d + p);
    for (; p < grid${last}; ++p)
        DCL_STORE((dcl_acc)0, d + p);
}

## Channels-last variant: dst[b, R, p, c] (c fastest, pitch cpad >= channels) for backward weights, whose
## work-items vectorise over output maps. Positions past the grid and maps past `channels` are zero.
__kernel void ${name}_cl(
    __global const dcl_t* restrict src, __global dcl_t* restrict dst, const dcl_idx dst_plane,
    const dcl_idx grid_size, const dcl_idx src_plane, const int n_split, const int rows, const int channels,
    const int cpad
    % for a in range(nd):
    , const int grid${a}, const int lo${a}, const int split${a}, const int ext${a}
    % endfor
    )
{
    const int row = get_global_id(0);
    if (row > rows) return;
    const dcl_idx plane = get_global_id(1);   // (batch item, residue) pairs
    __global dcl_t* d = dst + plane * dst_plane * cpad;
    if (row == rows) {   // the tail past the grid
        for (dcl_idx e = grid_size * cpad; e < dst_plane * cpad; ++e)
            DCL_STORE((dcl_acc)0, d + e);
        return;
    }
    d += (dcl_idx)row * grid${last} * cpad;
    int rl = plane % n_split;
    const int r${last} = rl % split${last}; rl /= split${last};
    int rr = row;
    bool inside = true;
    dcl_idx src_offset = 0, src_stride = ext${last};
    % for a in reversed(range(nd - 1)):
    {
        const int ga = rr % grid${a}; rr /= grid${a};
        const int ra = rl % split${a}; rl /= split${a};
        const int ja = (ga + lo${a}) * split${a} + ra;
        inside = inside && ja >= 0 && ja < ext${a};
        src_offset += (dcl_idx)ja * src_stride;
        src_stride *= ext${a};
    }
    % endfor
    int p_lo = 0, p_hi = 0;
    if (inside) {
        p_lo = DCL_MIN(grid${last}, DCL_MAX(0, (-r${last} + split${last} - 1) / split${last} - lo${last}));
        p_hi = DCL_MAX(p_lo, DCL_MIN(grid${last}, (ext${last} - r${last} + split${last} - 1) / split${last} - lo${last}));
    }
    __global const dcl_t* s = src + (plane / n_split) * channels * src_plane + src_offset
                              + ((dcl_idx)lo${last} * split${last} + r${last});
    for (int c = 0; c < cpad; ++c) {
        __global const dcl_t* sc = s + (dcl_idx)c * src_plane;
        for (int p = 0; p < grid${last}; ++p) {
            const dcl_acc value = (c < channels && p >= p_lo && p < p_hi)
                                  ? (dcl_acc)DCL_LOAD(sc + (dcl_idx)p * split${last}) : (dcl_acc)0;
            DCL_STORE(value, d + (dcl_idx)p * cpad + c);
        }
    }
}
