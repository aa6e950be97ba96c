"""The packing kernels (pack.mako, launched by packing.pack) against the layout's definition:
dst[plane, R, p] = src[plane, (p + lo) * split + R] where that lies inside src, else 0, each (plane, R) plane's
tail past the grid zero. A last-axis split of 1 or 2 runs the kernel that writes one residue a work-item, a
larger one the kernel that writes every residue of the last axis from one read of each source row (four
positions at a time for splits of 4 and 8, one at a time otherwise); zero borders before and after a row, grids
that end before or after the source and rows of other axes outside it are all in the cases below.

The channels-last pack (the weight gradient's operands) interleaves the maps of each group in blocks:
dst[b, R, group's block, p, lane] = src[b, the block's map `lane`, (p + lo) * split + R], zero past a group's
maps; its path for whole quads of maps without residues (a block's last quad moved back to end at the block's
end) and its per-column path (residues, a row's zero borders, a group's partial last block) are all in the cases
below."""

from math import ceil, prod

import numpy as np
import pyopencl as cl
import pytest

from deconvnd_cl.layouts import PackSpec
from deconvnd_cl.packing import pack
from deconvnd_cl.problem import Problem

SPECS = [
    # grid, lo, split, ext, tail past the grid
    ((40,), (-2,), (1,), (37,), 3),
    ((300,), (-2,), (1,), (290,), 0),       # rows of several of the channels-last pack's runs of 128 columns
    ((70,), (-1,), (4,), (275,), 3),
    ((33,), (-1,), (2,), (61,), 0),
    ((40,), (-1,), (3,), (100,), 5),
    ((11,), (-1,), (4,), (41,), 2),
    ((10,), (-1,), (8,), (61,), 4),
    ((9,), (1,), (8,), (64,), 0),
    ((5,), (0,), (16,), (64,), 1),
    ((3,), (-2,), (8,), (12,), 2),
    ((5, 10), (-1, -2), (2, 4), (7, 30), 3),
    ((6, 7), (0, -1), (3, 5), (15, 33), 0),
    ((3, 4, 12), (0, -1, -1), (2, 1, 8), (5, 3, 80), 7),
    ((4, 3, 9), (-1, 0, 0), (2, 2, 2), (6, 6, 17), 1),
]


def expected_pack(src, spec):
    """The packed layout of src (planes, *spec.ext) by its definition, in NumPy."""
    out = np.zeros((src.shape[0], spec.nsplit, spec.plane), src.dtype)
    for r, residue in enumerate(np.ndindex(*spec.split)):   # the last axis's residue fastest, as the kernels
        index = [(np.arange(g) + lo) * s + rr for g, lo, s, rr in zip(spec.grid, spec.lo, spec.split, residue)]
        inside = np.ones(spec.grid, bool)
        for axis, (i, e) in enumerate(zip(index, spec.ext)):
            shape = [1] * len(spec.grid)
            shape[axis] = -1
            inside = inside & ((i >= 0) & (i < e)).reshape(shape)
        values = src[(slice(None),) + np.ix_(*[np.clip(i, 0, e - 1) for i, e in zip(index, spec.ext)])]
        out[:, r, :prod(spec.grid)] = np.where(inside, values, 0).reshape(src.shape[0], -1)
    return out


@pytest.mark.parametrize("index_bits", [32, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("grid, lo, split, ext, tail", SPECS)
def test_pack_matches_its_definition(queue, grid, lo, split, ext, tail, dtype, index_bits):
    if dtype == np.float64 and "cl_khr_fp64" not in queue.device.extensions:
        pytest.skip("the device has no cl_khr_fp64")
    nd, planes = len(grid), 3
    spec = PackSpec(grid=grid, lo=lo, split=split, ext=ext, plane=prod(grid) + tail)
    src = np.random.default_rng(len(SPECS)).integers(-50, 50, (planes,) + ext).astype(dtype)
    problem = Problem.create(queue, (1, 1) + (1,) * nd, (1, 1) + (1,) * nd, dtype, 1, 0, 1, 0, 1)
    src_buffer = cl.Buffer(queue.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=src)
    dst = pack(problem, src_buffer, planes, spec, index_bits)
    got = np.empty((planes, spec.nsplit, spec.plane), dtype)
    cl.enqueue_copy(queue, got, dst)
    np.testing.assert_array_equal(got, expected_pack(src, spec))


def expected_pack_channels_last(src, spec, groups, block):
    """The map-blocked channels-last layout of src (planes, channels, *spec.ext) by its definition, in NumPy."""
    planes, channels = src.shape[:2]
    group_maps = channels // groups
    blocks = ceil(group_maps / block)
    out = np.zeros((planes, spec.nsplit, groups * blocks, spec.plane, block), src.dtype)
    for g in range(groups):
        for b in range(blocks):
            for lane in range(block):
                m = b * block + lane
                if m < group_maps:
                    planar = expected_pack(src[:, g * group_maps + m], spec)   # (planes, nsplit, plane)
                    out[:, :, g * blocks + b, :, lane] = planar
    return out


CHANNELS_LAST = [
    # channels, groups, block
    (16, 1, 16),
    (12, 1, 6),
    (10, 1, 4),
    (12, 2, 4),
    (6, 2, 2),
]


@pytest.mark.parametrize("channels, groups, block", CHANNELS_LAST)
@pytest.mark.parametrize("grid, lo, split, ext, tail", SPECS)
def test_channels_last_pack_matches_its_definition(queue, grid, lo, split, ext, tail, channels, groups, block):
    nd, planes = len(grid), 2
    spec = PackSpec(grid=grid, lo=lo, split=split, ext=ext, plane=prod(grid) + tail)
    src = np.random.default_rng(channels).integers(-50, 50, (planes, channels) + ext).astype(np.float32)
    problem = Problem.create(queue, (1, channels) + (1,) * nd, (channels, 1) + (1,) * nd, np.float32, 1, 0, 1, 0,
                             groups)
    src_buffer = cl.Buffer(queue.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=src)
    dst = pack(problem, src_buffer, planes, spec, 32, channels=channels, block=block)
    want = expected_pack_channels_last(src, spec, groups, block)
    got = np.empty(want.shape, np.float32)
    cl.enqueue_copy(queue, got, dst)
    np.testing.assert_array_equal(got, want)
