"""The forward with both phases of a last stride of 2 in one work-item (XSource.INTERLEAVED): a seeded sweep of
layers and tiles against the float64 reference, the layers it refuses, and where it is the default."""

import random

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional, reference
from deconvnd_cl.strategies import cpu_tiles
from deconvnd_cl.variants import XSource
from configs import Config
from conftest import assert_close, assert_forward_tile_in_dtype, assert_sampled_forward_tiles, to_device


def random_layer(rng):
    """A last stride of 2 (other axes 1-3), any kernel size, pad, dilation, postpad and groups; output rows of
    at least 33 positions, so tiles of 16-lane vectors fit too, odd and even."""
    nd = rng.choice((1, 2, 2, 3))
    size = tuple(rng.randint(1, 5) for _ in range(nd))
    stride = tuple(rng.randint(1, 3) for _ in range(nd - 1)) + (2,)
    dilation = tuple(rng.choice((1, 1, 2)) for _ in range(nd))
    pad = tuple(rng.randint(0, d * (k - 1) // 2) for k, d in zip(size, dilation))
    postpad = tuple(rng.choice((0, 0, 1)) if max(s, d) > 1 else 0 for s, d in zip(stride, dilation))
    spatial = tuple(rng.randint(1, 4) for _ in range(nd - 1)) + (rng.randint(17, 29),)
    groups = rng.choice((1, 1, 2, 3))
    return Config(rng.randint(1, 2), groups * rng.randint(1, 4), groups * rng.randint(1, 7), spatial, size, stride,
                  pad, dilation, postpad, groups)


CONFIGS = [random_layer(random.Random(3000 + seed)) for seed in range(20)]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_interleaved_forward_tiles_against_the_reference(queue, cpu_strategy, config):
    assert_sampled_forward_tiles(queue, config, XSource.INTERLEAVED,
                                 (config.stride, config.pad, config.dilation, config.postpad, config.groups))


@pytest.mark.parametrize("tile", [(2, 8, 4, "interleaved"), (3, 16, 8, "interleaved"), (1, 4, 2, "interleaved")])
def test_interleaved_forward_with_fewer_maps_than_the_tile(queue, cpu_strategy, tile):
    """5 output maps a group in tiles of 2 or 3 (the last tile's maps stored lane by lane), odd output rows."""
    rng = np.random.default_rng(5)
    x, W = rng.standard_normal((2, 4, 3, 11)), rng.standard_normal((4, 5, 3, 3))
    bias = rng.standard_normal((1, 5, 1, 1))
    want = reference.forward(x, W, bias, 2, 1)
    got = dcl.deconvNd(*(to_device(queue, a) for a in (x, W, bias)), stride=2, pad=1, tile=tile).get()
    assert_close(got, want, what=f"tile {tile}")


def test_interleaved_forward_needs_a_fitting_layer(queue, cpu_strategy, no_launch):
    x = to_device(queue, np.ones((1, 2, 3, 6)))
    W = to_device(queue, np.ones((2, 3, 4, 4)))
    with pytest.raises(dcl.ModuleError, match="a last stride of 2 for x 'interleaved'"):
        dcl.deconvNd(x, W, stride=(2, 3), pad=1, tile=(3, 8, 4, "interleaved"))
    with pytest.raises(dcl.ModuleError, match=r"output rows of at least 2 \* vw - 1 = 15 positions"):
        dcl.deconvNd(x, W, stride=2, pad=1, tile=(3, 8, 8, "interleaved"))
    with pytest.raises(dcl.ModuleError, match="at most 32 vector accumulators"):
        dcl.deconvNd(x, W, stride=2, pad=1, tile=(4, 16, 2, "interleaved"))


def default_forward_source(queue, cin, cout, groups):
    x = to_device(queue, np.ones((1, cin, 16, 16)))
    W = to_device(queue, np.ones((cin, cout // groups, 4, 4)))
    problem = functional.forward_problem(x, W, None, 2, 1, 1, 0, groups)
    if not problem.on_cpu:
        pytest.skip("the register-tiled defaults are for CPU devices")
    return cpu_tiles.forward_tile(problem).x


def test_short_sums_default_to_the_interleaved_forward(queue):
    assert default_forward_source(queue, 64, 64, 64) is XSource.INTERLEAVED   # depthwise
    assert default_forward_source(queue, 128, 128, 32) is XSource.INTERLEAVED  # 4 maps a group
    assert default_forward_source(queue, 64, 64, 1) is XSource.INTERLEAVED    # 256 products an output
    assert default_forward_source(queue, 128, 3, 1) is XSource.PACKED         # 512
    assert default_forward_source(queue, 256, 128, 1) is XSource.PACKED       # 1024


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_interleaved_forward_in_other_dtypes(queue, cpu_strategy, dtype, request):
    if dtype == np.float64:
        request.getfixturevalue("fp64")
    assert_forward_tile_in_dtype(queue, dtype, (2, 5, 3, 12), (5, 7, 4, 4), (3, 16, 8, "interleaved"), 2, 1)
