"""The forward and backward data with vectors over maps (XSource.OVER_MAPS, GySource.OVER_MAPS): a seeded sweep of
layers and tiles against the float64 reference with every output checked written, other dtypes, beside the weight
gradient's own pack, and where they are the default (the tiles they refuse: test_variants.py)."""

import random
import zlib

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import device_kind, functional, reference
from deconvnd_cl.strategies import cpu_tiles
from deconvnd_cl.variants import GySource, XSource
from configs import Config
from conftest import assert_close, assert_forward_tile_in_dtype, assert_sampled_forward_tiles, to_device


def random_layer(rng):
    """Any rank, stride, kernel size, pad, dilation, postpad and groups; short inputs (the phases this form is
    for) and longer ones, maps a group from 1 to past two vectors."""
    nd = rng.choice((1, 2, 2, 3))
    size = tuple(rng.randint(1, 5) for _ in range(nd))
    stride = tuple(rng.randint(1, 3) for _ in range(nd))
    dilation = tuple(rng.choice((1, 1, 2)) for _ in range(nd))
    pad = tuple(rng.randint(0, d * (k - 1) // 2) for k, d in zip(size, dilation))
    postpad = tuple(rng.choice((0, 0, 1)) if max(s, d) > 1 else 0 for s, d in zip(stride, dilation))
    spatial = tuple(rng.randint(1, 9) for _ in range(nd))
    groups = rng.choice((1, 1, 2))
    return Config(rng.randint(1, 2), groups * rng.randint(1, 20), groups * rng.randint(1, 36), spatial, size, stride,
                  pad, dilation, postpad, groups)


CONFIGS = [random_layer(random.Random(4000 + seed)) for seed in range(20)]
NAN_FILLED_AT_LEAST = 1  # a forward call or two a test (conftest's nan_filled_outputs)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_over_maps_forward_tiles_against_the_reference(queue, cpu_strategy, nan_filled_outputs, config):
    assert_sampled_forward_tiles(queue, config, XSource.OVER_MAPS,
                                 (config.stride, config.pad, config.dilation, config.postpad, config.groups))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_over_maps_backward_data_tiles_against_the_reference(queue, cpu_strategy, nan_filled_outputs, config):
    """Two of backward data's candidate tiles over maps on the layer, seeded by its id."""
    rng = np.random.default_rng(zlib.crc32(config.id.encode()))
    x = rng.standard_normal((config.batch, config.cin) + config.spatial)
    W = rng.standard_normal((config.cin, config.cout // config.groups) + config.size)
    conv = (config.stride, config.pad, config.dilation, config.groups)
    gy = rng.standard_normal(reference.forward(x, W, None, *conv[:3], config.postpad, config.groups).shape)
    xd, Wd, gyd = to_device(queue, x), to_device(queue, W), to_device(queue, gy)
    problem = functional.backward_problem(gyd, Wd, x.shape, *conv)
    tiles = [t for t in cpu_tiles.backward_data_candidates(problem) if t.gy is GySource.OVER_MAPS]
    assert tiles, "no over_maps tile fits the layer"
    want = reference.backward_data(gy, W, config.spatial, *conv)
    for tile in random.Random(config.id).sample(tiles, min(2, len(tiles))):
        got = dcl.deconvNdBackwardData(gyd, Wd, xd, *conv, tile=tile).get()
        assert_close(got, want, what=f"tile {tile.key()}")


@pytest.mark.parametrize("tile", [(8, 5, 4, "over_maps"), (16, 3, 8, "over_maps"), (4, 1, 2, "over_maps")])
def test_over_maps_forward_with_maps_and_positions_past_the_tile(queue, cpu_strategy, nan_filled_outputs, tile):
    """7 output maps a group in tiles of 4-16 (the last tile's maps partly past the group's), 3 input maps (a
    block of x's channels-last pack partly zeros), phases whose positions are no multiple of the tile."""
    rng = np.random.default_rng(6)
    x, W = rng.standard_normal((2, 6, 5, 7)), rng.standard_normal((6, 7, 3, 4))
    bias = rng.standard_normal((1, 14, 1, 1))
    want = reference.forward(x, W, bias, 2, 1, groups=2)
    got = dcl.deconvNd(*(to_device(queue, a) for a in (x, W, bias)), stride=2, pad=1, groups=2, tile=tile).get()
    assert_close(got, want, what=f"tile {tile}")


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_over_maps_forward_in_other_dtypes(queue, cpu_strategy, dtype, request):
    if dtype == np.float64:
        request.getfixturevalue("fp64")
    assert_forward_tile_in_dtype(queue, dtype, (2, 5, 3, 6), (5, 20, 4, 4), (16, 6, 8, "over_maps"), 2, 1)


def test_over_maps_backward_data_in_a_training_step(queue, cpu_strategy):
    """Backward data over maps beside a weight gradient that packs gy channels-last in blocks of its own size: each
    reads its own pack, and both match the reference."""
    rng = np.random.default_rng(8)
    x, W = rng.standard_normal((2, 40, 4, 5)), rng.standard_normal((40, 24, 4, 4))
    gy = rng.standard_normal(reference.forward(x, W, None, 2, 1).shape)
    xd, Wd, gyd = (to_device(queue, a) for a in (x, W, gy))
    gx = dcl.deconvNdBackwardData(gyd, Wd, xd, 2, 1, tile=(32, 8, 16, "over_maps")).get()
    gw, _ = dcl.deconvNdBackwardParams(xd, gyd, Wd, None, 2, 1, tile=(4, 16, 8, "channels_last"))
    assert_close(gx, reference.backward_data(gy, W, (4, 5), 2, 1))
    assert_close(gw.get(), reference.backward_params(x, gy, W.shape, 2, 1)[0])


def default_forward_tile(queue, cin, cout, spatial):
    x = to_device(queue, np.ones((2, cin) + spatial))
    W = to_device(queue, np.ones((cin, cout) + (4,) * len(spatial)))
    problem = functional.forward_problem(x, W, None, 2, 1, 1, 0, 1)
    if not problem.on_cpu or device_kind.accumulator_budget(problem.device, problem.dtype) <= 12:
        pytest.skip("vectors over maps are a default with 512-bit vectors on CPU devices")
    return cpu_tiles.forward_tile(problem)


def default_backward_data_tile(queue, cin, cout, spatial):
    gy = to_device(queue, np.ones((2, cout) + tuple(2 * i for i in spatial)))
    W = to_device(queue, np.ones((cin, cout) + (4,) * len(spatial)))
    x = to_device(queue, np.ones((2, cin) + spatial))
    problem = functional.backward_problem(gy, W, x.shape, 2, 1, 1, 1)
    if not problem.on_cpu or device_kind.accumulator_budget(problem.device, problem.dtype) <= 12:
        pytest.skip("vectors over maps are a default with 512-bit vectors on CPU devices")
    return cpu_tiles.backward_data_tile(problem)


def test_short_inputs_with_many_maps_default_to_backward_data_over_maps(queue):
    assert default_backward_data_tile(queue, 512, 256, (8, 8)).gy is GySource.OVER_MAPS     # DCGAN 512->256
    assert default_backward_data_tile(queue, 128, 64, (4, 4, 4)).gy is GySource.OVER_MAPS
    assert default_backward_data_tile(queue, 3, 128, (8, 8)).gy is not GySource.OVER_MAPS    # 3 input maps
    assert default_backward_data_tile(queue, 64, 64, (32, 32)).gy is not GySource.OVER_MAPS  # rows fill vectors


def test_short_phases_with_many_maps_default_to_vectors_over_maps(queue):
    assert default_forward_tile(queue, 512, 256, (8, 8)).x is XSource.OVER_MAPS     # DCGAN 512->256
    assert default_forward_tile(queue, 1024, 512, (4, 4)).x is XSource.OVER_MAPS
    assert default_forward_tile(queue, 128, 64, (4, 4, 4)).x is XSource.OVER_MAPS
    assert default_forward_tile(queue, 128, 3, (8, 8)).x is not XSource.OVER_MAPS   # 3 maps: lanes wasted
    assert default_forward_tile(queue, 256, 128, (16, 16)).x is not XSource.OVER_MAPS  # rows fill vectors
