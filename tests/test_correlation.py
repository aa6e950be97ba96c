"""The forward of a stride-1 layer run as a correlation (correlation.py: backward data's kernel on the mirrored
call, x in place or packed into planes, ForwardTile(..., x="in_place" or "planar")): a seeded sweep of layers and
tiles against the float64 reference, with and without a bias, other dtypes, the default's choice, and the layers
it refuses."""

import random
import zlib

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import correlation, functional, reference
from deconvnd_cl.strategies import cpu_tiles
from deconvnd_cl.variants import XSource
from configs import Config
from conftest import assert_close, to_device


def random_layer(rng):
    """Stride 1, kernel sizes 1-5, dilation 1-3 and pad from 0 to dilation * (size - 1) on every axis (the last
    one's pads border lanes of a vector of 8 or 16), groups, batches of 1-2; inputs large enough for an output
    (a pad past half the kernel's reach shrinks it), rows of 32 to 60 outputs, so tiles of two vectors of 16
    fit."""
    nd = rng.choice((1, 2, 2, 3))
    size = tuple(rng.randint(1, 5) for _ in range(nd))
    dilation = tuple(rng.randint(1, 3) for _ in range(nd))
    pad = tuple(rng.randint(0, d * (k - 1)) for k, d in zip(size, dilation))
    shrink = [max(0, 2 * p - d * (k - 1)) for k, d, p in zip(size, dilation, pad)]
    spatial = (tuple(rng.randint(1, 3) + s for s in shrink[:-1]) + (rng.randint(32, 60) + shrink[-1],))
    groups = rng.choice((1, 1, 2))
    return Config(rng.randint(1, 2), groups * rng.randint(1, 5), groups * rng.randint(1, 9), spatial, size,
                  (1,) * nd, pad, dilation, (0,) * nd, groups)


CONFIGS = [random_layer(random.Random(4000 + seed)) for seed in range(24)]


def operands(queue, config, dtype=np.float32):
    rng = np.random.default_rng(zlib.crc32(config.id.encode()))
    x = rng.standard_normal((config.batch, config.cin) + config.spatial)
    W = rng.standard_normal((config.cin, config.cout // config.groups) + config.size)
    bias = rng.standard_normal((1, config.cout) + (1,) * config.nd)
    return (x, W, bias), tuple(to_device(queue, a, dtype) for a in (x, W, bias))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_correlation_tiles_against_the_reference(queue, cpu_strategy, config):
    (x, W, bias), (xd, Wd, bd) = operands(queue, config)
    problem = functional.forward_problem(xd, Wd, bd, 1, config.pad, config.dilation, 0, config.groups)
    assert correlation.applies(problem.geo)
    chosen = []
    for source in (XSource.IN_PLACE, XSource.PLANAR):
        tiles = [t for t in cpu_tiles.forward_candidates(problem) if t.x is source]
        assert tiles, f"no {source.value} tile fits the layer"
        chosen += random.Random(config.id).sample(tiles, min(2, len(tiles)))
    for tile, with_bias in zip(chosen, (True, False) * 2):
        want = reference.forward(x, W, bias if with_bias else None, 1, config.pad, config.dilation, 0,
                                 config.groups)
        got = dcl.deconvNd(xd, Wd, bd if with_bias else None, 1, config.pad, config.dilation,
                           groups=config.groups, tile=tile).get()
        assert_close(got, want, what=f"tile {tile.key()}, bias {with_bias}")


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_correlation_in_other_dtypes(queue, cpu_strategy, dtype, request):
    if dtype == np.float64:
        request.getfixturevalue("fp64")
    config = Config(2, 5, 7, (3, 40), (3, 3), (1, 1), (1, 2), (1, 2), (0, 0), 1)
    _, (xd, Wd, bd) = operands(queue, config, dtype)
    x, W, bias = (a.get().astype(np.float64) for a in (xd, Wd, bd))
    want = reference.forward(x, W, bias, 1, (1, 2), (1, 2), 0, 1)
    vw = 4 if dtype == np.float64 else 8
    got = dcl.deconvNd(xd, Wd, bd, 1, (1, 2), (1, 2), tile=(3, 4 * vw, vw, "in_place")).get()
    assert_close(got.astype(np.float64), want, dtype)


@pytest.mark.parametrize("row, source", [(48, XSource.IN_PLACE), (40, XSource.PLANAR)])
def test_a_stride_1_layer_runs_as_a_correlation_by_default_with_256_bit_tiles(queue, row, source):
    """x in place where rows are a multiple of the tile, else packed planes, whose tiles run across row ends."""
    x = to_device(queue, np.ones((1, 8, 4, row)))
    W = to_device(queue, np.ones((8, 8, 3, 3)))
    problem = functional.forward_problem(x, W, None, 1, 1, 1, 0, 1)
    if not problem.on_cpu:
        pytest.skip("the register-tiled defaults are for CPU devices")
    wanted = source if cpu_tiles.accumulator_budget(problem) <= 12 else XSource.PACKED
    assert cpu_tiles.forward_tile(problem).x is wanted


def test_a_scratch_budget_too_small_for_a_pack_reads_in_place(queue, cpu_strategy, monkeypatch):
    """Rows of 40 take packed planes by default, but under a scratch budget smaller than the pack both passes read
    in place, as they did before packed planes were a default: results, not a ScratchTooLarge."""
    config = Config(2, 16, 16, (4, 40), (3, 3), (1, 1), (1, 1), (1, 1), (0, 0), 1)
    (x, W, bias), (xd, Wd, bd) = operands(queue, config)
    problem = functional.forward_problem(xd, Wd, bd, 1, 1, 1, 0, 1)
    if cpu_tiles.accumulator_budget(problem) > 12:
        pytest.skip("packed planes are the default with 256-bit tiles")
    assert cpu_tiles.forward_tile(problem).x is XSource.PLANAR
    monkeypatch.setenv("DECONVND_CL_SCRATCH_LIMIT", "16K")  # the weights fit, x's or gy's planes for one item not
    assert cpu_tiles.forward_tile(problem).x is XSource.IN_PLACE
    y = dcl.deconvNd(xd, Wd, bd, 1, 1).get()
    assert_close(y, reference.forward(x, W, bias, 1, 1), what="forward")
    gy = np.random.default_rng(5).standard_normal(y.shape)
    gx = dcl.deconvNdBackwardData(to_device(queue, gy), Wd, xd, 1, 1).get()
    assert_close(gx, reference.backward_data(gy, W, x.shape[2:], 1, 1), what="backward data")


def test_correlation_needs_a_fitting_layer(queue, cpu_strategy, no_launch):
    x = to_device(queue, np.ones((1, 2, 8, 40)))
    W = to_device(queue, np.ones((2, 3, 3, 3)))
    with pytest.raises(dcl.ModuleError, match=r"or a stride of 1 on every axis, no postpad and pad <= dilation"):
        dcl.deconvNd(x, W, stride=1, pad=3, tile=(6, 16, 8, "in_place"))  # pad past dilation * (size - 1)
    with pytest.raises(dcl.ModuleError, match=r"or a stride of 1 on every axis, no postpad"):
        dcl.deconvNd(x, W, stride=1, dilation=2, postpad=1, tile=(6, 16, 8, "in_place"))
    with pytest.raises(dcl.ModuleError, match="output rows of at least tn = 48 positions to read x in place"):
        dcl.deconvNd(x, W, stride=1, pad=1, tile=(2, 48, 8, "in_place"))
    with pytest.raises(dcl.ModuleError, match=r"at least two vectors a tap group .* where x's borders"):
        dcl.deconvNd(x, W, stride=1, pad=1, tile=(6, 8, 8, "in_place"))
