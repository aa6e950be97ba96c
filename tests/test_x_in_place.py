"""The forward reading x where it lies (XSource.IN_PLACE, kernel size = stride): a seeded sweep of layers and
tiles against the float64 reference, and the layers it refuses."""

import random

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional
from deconvnd_cl.strategies import cpu_tiles
from deconvnd_cl.variants import XSource
from configs import Config, direct_strides
from conftest import assert_forward_tile_in_dtype, assert_sampled_forward_tiles, to_device


def random_layer(rng):
    """Kernel size = stride (a last stride of 1 or 2, others 1-3, one above 1 at least), no pad, no dilation, no
    postpad; rows of at least 40 inputs (tiles of 2 vectors of 16 fit)."""
    nd = rng.choice((1, 2, 2, 3))
    stride = direct_strides(rng, nd)
    spatial = tuple(rng.randint(1, 3) for _ in range(nd - 1)) + (rng.randint(40, 64),)
    groups = rng.choice((1, 1, 2))
    return Config(rng.randint(1, 2), groups * rng.randint(1, 6), groups * rng.randint(1, 9), spatial, stride,
                  stride, (0,) * nd, (1,) * nd, (0,) * nd, groups)


CONFIGS = [random_layer(random.Random(2000 + seed)) for seed in range(20)]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_in_place_forward_tiles_against_the_reference(queue, cpu_strategy, config):
    assert_sampled_forward_tiles(queue, config, XSource.IN_PLACE, (config.stride, 0, 1, 0, config.groups))


def test_in_place_forward_needs_a_fitting_layer(queue, cpu_strategy, no_launch):
    x = to_device(queue, np.ones((1, 2, 3, 20)))
    W = to_device(queue, np.ones((2, 3, 2, 2)))
    with pytest.raises(dcl.ModuleError, match="no postpad and a last stride <= 2, or a stride of 1 on every axis"):
        dcl.deconvNd(x, W, stride=2, postpad=1, tile=(3, 16, 8, "in_place"))
    with pytest.raises(dcl.ModuleError, match="kernel size = stride"):
        dcl.deconvNd(x, to_device(queue, np.ones((2, 3, 3, 3))), stride=2, tile=(3, 16, 8, "in_place"))
    with pytest.raises(dcl.ModuleError, match="input rows of at least tn = 24 positions to read x in place"):
        dcl.deconvNd(x, W, stride=2, tile=(3, 24, 8, "in_place"))
    with pytest.raises(dcl.ModuleError, match="at most 32 vector accumulators"):
        dcl.deconvNd(x, W, stride=2, tile=(16, 16, 8, "in_place"))


def test_the_default_forward_of_a_u_net_layer_reads_x_in_place(queue):
    x = to_device(queue, np.ones((1, 8, 4, 40)))
    W = to_device(queue, np.ones((8, 4, 2, 2)))
    problem = functional.forward_problem(x, W, None, 2, 0, 1, 0, 1)
    if not problem.on_cpu:
        pytest.skip("the register-tiled defaults are for CPU devices")
    assert cpu_tiles.forward_tile(problem).x is XSource.IN_PLACE


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_in_place_forward_in_other_dtypes(queue, cpu_strategy, dtype, request):
    if dtype == np.float64:
        request.getfixturevalue("fp64")
    assert_forward_tile_in_dtype(queue, dtype, (2, 5, 3, 40), (5, 7, 2, 2), (3, 16, 8, "in_place"), 2)
