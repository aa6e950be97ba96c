"""Backward data reading gy where it lies (deconvnd_cl/gy_in_place.py): the border lanes against a brute-force
walk of every vector a tile reads, and a seeded sweep of layers and tiles against the float64 reference."""

import random
import zlib
from math import ceil

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional, gy_in_place, reference
from deconvnd_cl.geometry import Geometry
from deconvnd_cl.strategies import cpu_tiles, implementation
from deconvnd_cl.variants import GySource
from configs import Config
from conftest import assert_close, to_device


def random_layer(rng):
    """A layer gy_in_place supports, with rows long enough for in-place tiles: last stride 1 (any dilation) or 2
    (no dilation), any kernel size, a last-axis pad below 7, an output, and tiles that fit in vectors of 8 and
    of 16 (AVX2's and AVX-512's); other axes anything."""
    nd = rng.choice((1, 2, 2, 3))
    while True:
        s_last = rng.choice((1, 2))
        size, stride, dilation = [rng.randint(1, 5)], [s_last], [1 if s_last == 2 else rng.randint(1, 3)]
        for _ in range(nd - 1):
            size.insert(0, rng.randint(1, 4))
            stride.insert(0, rng.randint(1, 3))
            dilation.insert(0, rng.randint(1, 2))
        pad = [rng.randint(0, (k - 1) * d) for k, d in zip(size, dilation)]
        pad[-1] = min(pad[-1], 6)  # border lanes within a vector of 8
        postpad = [rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation)]
        spatial = [rng.randint(1, 3) for _ in range(nd - 1)] + [rng.randint(40, 72)]
        groups = rng.choice((1, 1, 2))
        config = Config(rng.randint(1, 2), groups * rng.randint(1, 7), groups * rng.randint(1, 4), tuple(spatial),
                        tuple(size), tuple(stride), tuple(pad), tuple(dilation), tuple(postpad), groups)
        if all(o > 0 for o in config.out_spatial) and all(any(
                tn * s_last % vw == 0 and all(holds for holds, _ in gy_in_place.constraints(
                    geometry(config), spatial[-1], config.out_spatial[-1], tn, vw)) for tn in (8, 16, 32))
                for vw in (8, 16)):
            return config


def geometry(config):
    return Geometry.create(config.nd, config.size, config.stride, config.pad, config.dilation, config.postpad,
                           config.groups)


@pytest.mark.parametrize("seed", range(60))
def test_border_lanes_match_a_walk_of_every_vector(seed):
    """Where a tile fits, every vector of every tile reads inside gy's row but the first vector of a row's first
    tile (lefts lanes before the row) and the last of its last tile (rights lanes past it)."""
    rng = random.Random(seed)
    config = random_layer(rng)
    geo = geometry(config)
    lefts, rights = gy_in_place.borders(geo)
    offsets = gy_in_place.group_offsets(geo)
    in_last, out_last, s = config.spatial[-1], config.out_spatial[-1], config.stride[-1]
    for tn in (4, 8, 12, 16, 24):
        vw = 8
        if tn * s % vw or not all(holds for holds, _ in gy_in_place.constraints(geo, in_last, out_last, tn, vw)):
            continue
        nv = tn * s // vw
        starts = [t * tn for t in range(ceil(in_last / tn) - 1)] + [in_last - tn]
        for il in starts:
            for q, offset in enumerate(offsets):
                for v in range(nv):
                    first = s * il + offset + v * vw
                    before = max(0, -first)
                    past = max(0, first + vw - out_last)
                    assert before == (lefts[q] if il == 0 and v == 0 else 0), (config, tn, il, q, v)
                    assert past == (rights[q] if il + tn == in_last and v == nv - 1 else 0), (config, tn, il, q, v)


def in_place_tiles(problem):
    return [t for t in cpu_tiles.backward_data_candidates(problem) if t.gy is GySource.IN_PLACE]


# the loop over rows of taps (more than the unroll budget), an odd kernel with a last stride of 2 on a 3d layer
FIXED = [Config(1, 3, 2, (5, 5, 41), (5, 5, 3), (1, 1, 1), (2, 2, 1), (1, 1, 1), (0, 0, 0), 1),
         Config(2, 4, 3, (3, 4, 40), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), (0, 1, 0), 1)]
CONFIGS = FIXED + [random_layer(random.Random(1000 + seed)) for seed in range(30)]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_in_place_tiles_against_the_reference(queue, cpu_strategy, config):
    rng = np.random.default_rng(zlib.crc32(config.id.encode()))
    x = rng.standard_normal((config.batch, config.cin) + config.spatial)
    W = rng.standard_normal((config.cin, config.cout // config.groups) + config.size)
    gy = rng.standard_normal((config.batch, config.cout) + config.out_spatial)
    xd, Wd, gyd = to_device(queue, x), to_device(queue, W), to_device(queue, gy)
    problem = functional.backward_problem(gyd, Wd, xd.shape, **config.conv)
    tiles = in_place_tiles(problem)
    assert tiles, "no in-place tile fits the layer"
    if config == FIXED[0]:  # no unrolled rows of taps: the kernel loops over the table
        assert implementation("backward_data", problem).counts(problem, tiles[0])[1] == 0
    want = reference.backward_data(gy, W, config.spatial, config.stride, config.pad, config.dilation,
                                   config.groups)
    for tile in random.Random(config.id).sample(tiles, min(2, len(tiles))):
        got = dcl.deconvNdBackwardData(gyd, Wd, xd, **config.conv, tile=tile).get()
        assert_close(got, want, what=f"tile {tile.key()}")


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_in_place_borders_in_other_dtypes(queue, cpu_strategy, dtype, request):
    if dtype == np.float64:
        request.getfixturevalue("fp64")
    config = Config(2, 5, 3, (3, 21), (4, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((config.batch, config.cin) + config.spatial)
    W = rng.standard_normal((config.cin, config.cout) + config.size)
    gy = rng.standard_normal((config.batch, config.cout) + config.out_spatial)
    xd, Wd, gyd = (to_device(queue, a, dtype) for a in (x, W, gy))
    want = reference.backward_data(gyd.get().astype(np.float64), Wd.get().astype(np.float64), config.spatial,
                                   config.stride, config.pad, config.dilation, config.groups)
    got = dcl.deconvNdBackwardData(gyd, Wd, xd, **config.conv, tile=(4, 8, 8, "in_place")).get()
    assert_close(got.astype(np.float64), want, dtype)


def test_an_infinite_gradient_reaches_only_the_inputs_whose_taps_read_it(queue, cpu_strategy):
    """A kernel of 3 with a last stride of 2: the last tap group has one tap, and the lanes of its missing
    partner read gy too; they are masked, so inf there makes no NaN where no real tap reads it."""
    config = Config(1, 2, 1, (1, 20), (1, 3), (1, 2), (0, 1), (1, 1), (0, 0), 1)
    gy = np.ones((1, 1) + config.out_spatial)
    W = np.full((2, 1, 1, 3), 0.5)
    for position in range(config.out_spatial[-1]):
        gy_inf = gy.copy()
        gy_inf[0, 0, 0, position] = np.inf
        want = reference.backward_data(gy_inf, W, config.spatial, config.stride, config.pad, config.dilation, 1)
        got = dcl.deconvNdBackwardData(to_device(queue, gy_inf), to_device(queue, W),
                                       to_device(queue, np.ones((1, 2) + config.spatial)), **config.conv,
                                       tile=(2, 8, 8, "in_place")).get()
        np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=f"inf at {position}")


def default_data_source(queue, cin, cout, size, groups=1, scratch_limit=None):
    """The source of gy the CPU default takes for backward data of a k`size` s2 p1 layer on 32x32 inputs."""
    W = to_device(queue, np.ones((cin, cout // groups, size, size)))
    gy = to_device(queue, np.ones((4, cout, 64, 64)))
    problem = functional.backward_problem(gy, W, (4, cin, 32, 32), 2, (size - 2) // 2, 1, groups,
                                          scratch_limit=scratch_limit)
    if not problem.on_cpu or cpu_tiles.accumulator_budget(problem) > 12:
        pytest.skip("the rule is the 256-bit register tiles' default")
    return cpu_tiles.backward_data_tile(problem).gy


def test_short_sums_beside_a_cheap_pack_read_gy_from_planes(queue):
    assert default_data_source(queue, 128, 3, 4) is GySource.PLANAR  # 48 products an input; 512 per packed element
    assert default_data_source(queue, 256, 128, 2) is GySource.IN_PLACE   # 512 products
    assert default_data_source(queue, 128, 128, 4, groups=32) is GySource.IN_PLACE  # 16 per packed element
    assert default_data_source(queue, 128, 3, 4, scratch_limit=4096) is GySource.IN_PLACE  # no room for the pack


def test_the_default_for_few_output_maps_against_the_reference(queue):
    config = Config(2, 64, 3, (5, 19), (4, 4), (2, 2), (1, 1), (1, 1), (1, 0), 1)
    rng = np.random.default_rng(7)
    W = rng.standard_normal((config.cin, config.cout) + config.size)
    gy = rng.standard_normal((config.batch, config.cout) + config.out_spatial)
    xd = to_device(queue, np.zeros((config.batch, config.cin) + config.spatial))
    Wd, gyd = to_device(queue, W), to_device(queue, gy)
    problem = functional.backward_problem(gyd, Wd, xd.shape, **config.conv)
    if problem.on_cpu and cpu_tiles.accumulator_budget(problem) <= 12:
        assert cpu_tiles.backward_data_tile(problem).gy is GySource.PLANAR
    want = reference.backward_data(gy, W, config.spatial, config.stride, config.pad, config.dilation, 1)
    assert_close(dcl.deconvNdBackwardData(gyd, Wd, xd, **config.conv).get(), want)
