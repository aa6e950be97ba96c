"""The weight gradient from x packed channels-last, gy read where it lies (WeightsTile(..., gy="in_place",
x="channels_last")): seeded sweeps of layers (kernel size = stride, and any size, stride, pad, dilation and
postpad, whose taps at gy's borders are checked) and tiles against the float64 reference, other dtypes, the
default's choice, and the tiles it refuses."""

import random
import zlib

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional, reference
from deconvnd_cl.strategies import cpu_tiles
from deconvnd_cl.variants import GySource, XSource
from configs import Config, direct_strides
from conftest import assert_close, to_device


def random_layer(rng):
    """Kernel size = stride (a last stride of 1 or 2, others 1-3, one above 1 at least), no pad, no dilation;
    input maps per group from 1 to 40, so blocks of 8 or 16 maps are whole, partial or mostly dead lanes; rows
    from 1 to 20 positions; batches of 1 to 3 (the rows carry into the next batch item); a postpad on a third
    of them (gy elements no tap reads, which the bias gradient sums all the same)."""
    nd = rng.choice((1, 2, 2, 3))
    stride = direct_strides(rng, nd)
    spatial = tuple(rng.randint(1, 4) for _ in range(nd - 1)) + (rng.randint(1, 20),)
    groups = rng.choice((1, 1, 2))
    postpad = tuple(rng.randint(0, s - 1) for s in stride) if rng.random() < 1 / 3 else (0,) * nd
    return Config(rng.randint(1, 3), groups * rng.randint(1, 40), groups * rng.randint(1, 9), spatial, stride,
                  stride, (0,) * nd, (1,) * nd, postpad, groups)


def random_overlapping_layer(rng):
    """Any geometry: sizes 1-4, strides 1-3, dilations 1-3, any valid pad (taps past gy's borders at both ends of
    rows, rows of gy that do not exist for some tap rows), postpads below the stride; rows from 1 to 20
    positions, so some have no position whose every tap lies inside gy."""
    nd = rng.choice((1, 2, 2, 3))
    size = tuple(rng.randint(1, 4) for _ in range(nd))
    stride = tuple(rng.randint(1, 3) for _ in range(nd))
    dilation = tuple(rng.choice((1, 1, 2, 3)) for _ in range(nd))
    postpad = tuple(rng.randint(0, s - 1) for s in stride)
    spatial = tuple(rng.randint(1, 4) for _ in range(nd - 1)) + (rng.randint(1, 20),)
    pad = tuple(rng.randint(0, min(d * (k - 1), ((i - 1) * s + d * (k - 1) + pp) // 2))  # gy at least 1 long
                for i, k, s, d, pp in zip(spatial, size, stride, dilation, postpad))
    groups = rng.choice((1, 1, 2))
    return Config(rng.randint(1, 3), groups * rng.randint(1, 40), groups * rng.randint(1, 9), spatial, size,
                  stride, pad, dilation, postpad, groups)


CONFIGS = ([random_layer(random.Random(3000 + seed)) for seed in range(20)]
           + [random_overlapping_layer(random.Random(4000 + seed)) for seed in range(30)])


def x_channels_last_tiles(problem):
    return [t for t in cpu_tiles.weights_candidates(problem) if t.x is XSource.CHANNELS_LAST]


def operands(queue, config, dtype=np.float32):
    rng = np.random.default_rng(zlib.crc32(config.id.encode()))
    x = rng.standard_normal((config.batch, config.cin) + config.spatial)
    gy = rng.standard_normal((config.batch, config.cout) + config.out_spatial)
    W = rng.standard_normal((config.cin, config.cout // config.groups) + config.size)
    bias = rng.standard_normal((1, config.cout) + (1,) * config.nd)
    return (x, gy, W, bias), tuple(to_device(queue, a, dtype) for a in (x, gy, W, bias))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_x_channels_last_tiles_against_the_reference(queue, cpu_strategy, config):
    (x, gy, W, _), (xd, gyd, Wd, bd) = operands(queue, config)
    problem = functional.backward_problem(gyd, Wd, xd.shape, config.stride, config.pad, config.dilation,
                                          config.groups)
    tiles = x_channels_last_tiles(problem)
    assert tiles, "no x channels-last tile fits the layer"
    want_w, want_b = reference.backward_params(x, gy, W.shape, config.stride, config.pad, config.dilation,
                                               config.groups)
    for tile in random.Random(config.id).sample(tiles, min(2, len(tiles))):
        wg, bg = dcl.deconvNdBackwardParams(xd, gyd, Wd, bd, **config.conv, tile=tile)
        assert_close(wg.get(), want_w, what=f"weight gradient, tile {tile.key()}")
        assert_close(bg.get(), want_b, what=f"bias gradient, tile {tile.key()}")


def test_x_channels_last_blends_into_the_callers_gradient(queue, cpu_strategy):
    """scale * new + momentum * old, over several chunks of rows (a batch of 8 long planes) and over one."""
    for batch in (8, 1):
        config = Config(batch, 24, 6, (12, 20), (2, 2), (2, 2), (0, 0), (1, 1), (0, 0), 1)
        (x, gy, W, _), (xd, gyd, Wd, _) = operands(queue, config)
        old = np.random.default_rng(batch).standard_normal(W.shape)
        wgrad = to_device(queue, old)
        dcl.deconvNdBackwardParams(xd, gyd, Wd, None, 2, wgrad=wgrad, scale=0.5, momentum=0.25,
                                   tile=(16, 3, 8, "in_place", "channels_last"))
        want, _ = reference.backward_params(x, gy, W.shape, (2, 2), 0, 1, 1)
        assert_close(wgrad.get(), 0.5 * want + 0.25 * old, what=f"blended gradient, batch {batch}")


def test_x_channels_last_propagates_nan_and_inf_from_rows_gy_lacks(queue, cpu_strategy):
    """x's first row meets no gy row for the tap rows above it (pad 1), and the definition multiplies it by
    zeros there: a NaN or an Inf in it makes those taps' gradients NaN, as in the reference, though the kernel
    reads no gy for them."""
    config = Config(2, 16, 8, (5, 6), (3, 3), (2, 2), (1, 1), (1, 1), (0, 0), 1)
    (x, gy, W, _), _ = operands(queue, config)
    x[0, 3, 0, 2], x[1, 5, 0, 0], x[1, 9, 4, 5] = np.nan, np.inf, -np.inf
    with np.errstate(invalid="ignore"):
        want, _ = reference.backward_params(x, gy, W.shape, config.stride, config.pad, config.dilation, 1)
    got, _ = dcl.deconvNdBackwardParams(to_device(queue, x), to_device(queue, gy), to_device(queue, W), None,
                                        **config.conv, tile=(16, 2, 8, "in_place", "channels_last"))
    got = got.get()
    assert np.isnan(want[3, :, 0]).all() and np.isnan(want[5, :, 0]).all()  # the tap rows gy lacks
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite])


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_x_channels_last_in_other_dtypes(queue, cpu_strategy, dtype, request):
    if dtype == np.float64:
        request.getfixturevalue("fp64")
    config = Config(2, 20, 7, (3, 9), (2, 2), (2, 2), (0, 0), (1, 1), (0, 0), 1)
    _, (xd, gyd, Wd, bd) = operands(queue, config, dtype)
    x, gy, W = (a.get().astype(np.float64) for a in (xd, gyd, Wd))
    want_w, want_b = reference.backward_params(x, gy, W.shape, (2, 2), 0, 1, 1)
    wg, bg = dcl.deconvNdBackwardParams(xd, gyd, Wd, bd, 2, tile=(16, 3, 8, "in_place", "channels_last"))
    assert_close(wg.get().astype(np.float64), want_w, dtype)
    assert_close(bg.get().astype(np.float64), want_b, dtype)


def test_a_u_net_layer_packs_x_for_its_weight_gradient_and_a_narrow_one_does_not(queue):
    gy = to_device(queue, np.ones((1, 4, 8, 8)))
    for cin, expected in ((64, XSource.CHANNELS_LAST), (3, XSource.IN_PLACE)):
        W = to_device(queue, np.ones((cin, 4, 2, 2)))
        problem = functional.backward_problem(gy, W, (1, cin, 4, 4), 2, 0, 1, 1)
        if not problem.on_cpu:
            pytest.skip("the register-tiled defaults are for CPU devices")
        tile = cpu_tiles.weights_tile(problem)
        assert (tile.gy, tile.x) == (GySource.IN_PLACE, expected)


def test_x_channels_last_needs_a_fitting_tile(queue, cpu_strategy, no_launch):
    x = to_device(queue, np.ones((1, 16, 3, 4)))
    gy = to_device(queue, np.ones((1, 4, 6, 8)))
    W = to_device(queue, np.ones((16, 4, 2, 2)))
    with pytest.raises(dcl.ModuleError, match="tm a multiple of vw"):
        dcl.deconvNdBackwardParams(x, gy, W, stride=2, tile=(12, 3, 8, "in_place", "channels_last"))
    with pytest.raises(dcl.ModuleError, match="at most 32 vector accumulators"):
        dcl.deconvNdBackwardParams(x, gy, W, stride=2, tile=(64, 3, 8, "in_place", "channels_last"))
    with pytest.raises(dcl.ModuleError, match="gy 'in_place' with x 'channels_last'"):
        dcl.deconvNdBackwardParams(x, gy, W, stride=2, tile=(16, 3, 8, "planar", "channels_last"))
    with pytest.raises(dcl.ModuleError, match="at most 32 vector accumulators"):  # 2 x 3 maps x 6 last-axis taps
        gy_k6, W_k6 = to_device(queue, np.ones((1, 4, 5, 10))), to_device(queue, np.ones((16, 4, 3, 6)))
        dcl.deconvNdBackwardParams(x, gy_k6, W_k6, stride=2, pad=1, tile=(16, 3, 8, "in_place", "channels_last"))
