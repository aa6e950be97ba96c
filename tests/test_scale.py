"""Calls whose scratch would not fit one allocation (or the scratch budget) are split along the batch, and where
one batch item is too large along its first spatial axis: forward and input gradients bitwise those of the
unsplit call, parameter gradients equal within float32 rounding, nothing half-written; scratch that does not fit
even for one row of one batch item, and arrays no allocation can hold, are ModuleErrors that say so."""

import dataclasses
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional, reference, row_split
from deconvnd_cl.errors import ScratchTooLarge
from deconvnd_cl.problem import Problem
from deconvnd_cl.strategies import cpu_tiles
from deconvnd_cl.variants import GySource, XSource
from configs import random_config
from conftest import assert_close, to_device

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [  # (conv, x shape, W shape, scratch budget of a few batch items): overlapping k4 s2 p1 (packed gy),
    # and k2 s2 (gy read in place; rows shorter than the forward's in-place tile, so the forward packs x)
    (dict(stride=2, pad=1), (5, 8, 12, 13), (8, 6, 4, 4), "48K"),
    (dict(stride=2), (4, 6, 9, 12), (6, 5, 2, 2), "3K"),
]


def random_operands(conv, x_shape, w_shape, seed):
    """(x, W, b, gy, wgrad0, bgrad0) drawn from `seed`: a layer's operands, an output gradient and the gradients
    the parameter gradients are blended into."""
    rng = np.random.default_rng(seed)
    x, W = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal((1, w_shape[1] * conv.get("groups", 1)) + (1,) * (len(x_shape) - 2))
    gy = rng.standard_normal(reference.forward(x, W, b, **conv).shape)
    return x, W, b, gy, rng.standard_normal(W.shape), rng.standard_normal(b.shape)


def assert_split_matches(conv, operands, whole, split):
    """all_passes of a split call against the unsplit one's (forward and input gradient bitwise) and against the
    reference."""
    x, W, b, gy, wgrad0, bgrad0 = operands
    for name, a, c in zip(("forward", "input grad"), whole[:2], split[:2]):
        assert np.array_equal(a, c), f"{name}: split result differs from the whole call's"
    assert_close(split[0], reference.forward(x, W, b, **conv), what="forward")
    dW, db = reference.backward_params(x, gy, W.shape, **{k: v for k, v in conv.items() if k != "postpad"})
    assert_close(split[2], 0.5 * dW + 2.0 * wgrad0, what="W grad")
    assert_close(split[3], 0.5 * db + 2.0 * bgrad0, what="b grad")


def all_passes(queue, conv, x, W, b, gy, wgrad0, bgrad0):
    xd, Wd, bd, gyd = (to_device(queue, a) for a in (x, W, b, gy))
    y = dcl.deconvNd(xd, Wd, bd, **conv).get()
    conv = {k: v for k, v in conv.items() if k != "postpad"}  # the backward passes infer it from gy
    gx = dcl.deconvNdBackwardData(gyd, Wd, xd, **conv).get()
    wg, bg = dcl.deconvNdBackwardParams(xd, gyd, Wd, bd, wgrad=to_device(queue, wgrad0), bgrad=to_device(queue, bgrad0),
                                        scale=0.5, momentum=2.0, **conv)
    return y, gx, wg.get(), bg.get()


@pytest.mark.parametrize("strategy", ["cpu", "gpu"])
@pytest.mark.parametrize("layer", LAYERS, ids=["k4s2p1", "k2s2"])
def test_scratch_budget_splits_the_batch(queue, monkeypatch, layer, strategy):
    conv, x_shape, w_shape, budget = layer
    monkeypatch.setenv("DECONVND_CL_STRATEGY", strategy)
    operands = random_operands(conv, x_shape, w_shape, seed=1)
    whole = all_passes(queue, conv, *operands)

    chunks = []
    real_chunk = functional.batch_chunk
    monkeypatch.setattr(functional, "batch_chunk", lambda p, b0, b1: chunks.append((b0, b1)) or real_chunk(p, b0, b1))
    monkeypatch.setenv("DECONVND_CL_SCRATCH_LIMIT", budget)
    split = all_passes(queue, conv, *operands)
    if strategy == "cpu":
        assert len(chunks) >= 4, "the calls were not split"
    assert_split_matches(conv, operands, whole, split)


def test_float16_gradients_split_exactly_on_small_integers(queue, monkeypatch):
    """The chunks' parameter gradients are summed in float32, so integer-valued half data stays exact."""
    monkeypatch.setenv("DECONVND_CL_STRATEGY", "cpu")  # whose weight gradient has scratch to split
    conv, x_shape, w_shape, budget = LAYERS[0]
    rng = np.random.default_rng(3)
    x, W = rng.integers(-2, 3, x_shape), rng.integers(-2, 3, w_shape)
    gy = rng.integers(-2, 3, reference.forward(x, W, None, **conv).shape)
    monkeypatch.setenv("DECONVND_CL_SCRATCH_LIMIT", "24K")
    xd, Wd, gyd = (to_device(queue, a, np.float16) for a in (x, W, gy))
    chunks = []
    real_chunk = functional.batch_chunk
    monkeypatch.setattr(functional, "batch_chunk", lambda p, b0, b1: chunks.append((b0, b1)) or real_chunk(p, b0, b1))
    wg, _ = dcl.deconvNdBackwardParams(xd, gyd, Wd, **conv)
    assert chunks, "the call was not split"
    np.testing.assert_array_equal(wg.get().astype(np.float64), reference.backward_params(x, gy, W.shape, **conv)[0])


def test_bad_scratch_limit_setting(queue, monkeypatch):
    monkeypatch.setenv("DECONVND_CL_SCRATCH_LIMIT", "lots")
    x, W = to_device(queue, np.ones((1, 2, 3, 3))), to_device(queue, np.ones((2, 2, 2, 2)))
    with pytest.raises(dcl.ModuleError, match="DECONVND_CL_SCRATCH_LIMIT='LOTS' is not a positive size"):
        dcl.deconvNd(x, W, stride=2)


def test_module_memlimit(queue, monkeypatch):
    """optimizeForShape's memlimit bounds the module's scratch: its calls split, results unchanged."""
    monkeypatch.setenv("DECONVND_CL_STRATEGY", "cpu")
    layer = dcl.Deconv2D(4, 3, size=2, stride=2)
    x = np.random.default_rng(2).standard_normal((6, 4, 5, 7)).astype(np.float32)
    y_whole = layer(to_device(queue, x)).get()
    with pytest.raises(dcl.ModuleError, match="memlimit must be a positive number of bytes"):
        layer.optimizeForShape(x.shape, memlimit=-1)
    layer.optimizeForShape(x.shape, memlimit=2048)
    chunks = []
    real_chunk = functional.batch_chunk
    monkeypatch.setattr(functional, "batch_chunk", lambda p, b0, b1: chunks.append((b0, b1)) or real_chunk(p, b0, b1))
    assert np.array_equal(layer(to_device(queue, x)).get(), y_whole)
    assert chunks, "the module's memlimit did not split the call"


ROW_LAYERS = [  # (conv, x shape, W shape, per strategy: a scratch budget one batch item's call is over, and how
    # many of the three passes then split): pad, dilation and postpad, gaps between taps (stride > size), kernel
    # size = stride, grouped 1d, 3d. Where the CPU tiles read gy (gy_in_place.py) or x (kernel size = stride) in
    # place, backward data or the forward needs no scratch: a pass fewer each. The GPU strategy's backward
    # kernels read W and gy where they lie, so there only the forward splits.
    (dict(stride=2, pad=1), (2, 4, 40, 16), (4, 3, 4, 4), {"cpu": ("6K", 3), "gpu": ("6K", 1)}),
    (dict(stride=3, pad=2, dilation=2, postpad=1), (1, 3, 30, 7), (3, 2, 3, 3), {"cpu": ("3K", 3), "gpu": ("3K", 1)}),
    (dict(stride=4), (2, 4, 24, 5), (4, 3, 2, 2), {"cpu": ("6K", 2), "gpu": ("6K", 0)}),
    (dict(stride=2), (1, 6, 30, 20), (6, 5, 2, 2), {"cpu": ("3K", 3), "gpu": ("4K", 1)}),
    (dict(stride=2, pad=1, groups=2), (1, 8, 400), (8, 3, 4), {"cpu": ("8K", 3), "gpu": ("8K", 1)}),
    (dict(stride=(2, 1, 2), pad=(1, 0, 1)), (1, 4, 16, 5, 4), (4, 3, 3, 2, 3), {"cpu": ("4K", 3), "gpu": ("4K", 1)}),
]


@pytest.mark.parametrize("strategy", ["cpu", "gpu"])
@pytest.mark.parametrize("layer", ROW_LAYERS, ids=["k4s2p1", "dilated-postpad", "gaps", "k2s2", "grouped-1d", "3d"])
def test_one_item_too_large_splits_along_rows(queue, monkeypatch, layer, strategy):
    """Scratch over the budget even for one batch item: each item in chunks of rows of its first spatial axis,
    with their halos; forward and input gradient bitwise those of the unsplit call, parameter gradients right."""
    conv, x_shape, w_shape, per_strategy = layer
    budget, passes_split = per_strategy[strategy]
    monkeypatch.setenv("DECONVND_CL_STRATEGY", strategy)
    if strategy == "cpu":  # 256-bit vectors read such a layer's gy in place, 512-bit ones from packed planes
        problem = Problem.create(queue, x_shape, w_shape, np.dtype(np.float32),
                                 **dict(dict(stride=1, pad=0, dilation=1, postpad=0, groups=1), **conv))
        passes_split -= cpu_tiles.backward_data_tile(problem).gy is GySource.IN_PLACE
        passes_split -= cpu_tiles.forward_tile(problem).x is XSource.IN_PLACE
    operands = random_operands(conv, x_shape, w_shape, seed=7)
    whole = all_passes(queue, conv, *operands)

    splits = []
    real_split = row_split.split
    monkeypatch.setattr(row_split, "split", lambda extent, run: splits.append(extent) or real_split(extent, run))
    monkeypatch.setenv("DECONVND_CL_SCRATCH_LIMIT", budget)
    split = all_passes(queue, conv, *operands)
    assert len(splits) == passes_split, f"passes split along rows: {len(splits)} (expected: {passes_split})"
    assert_split_matches(conv, operands, whole, split)


def row_sweep(count, seed):
    """Random layers (every parameter, nd 1-3) with a first spatial axis long enough to cut, and how many chunks of
    rows to cut it into (2 up to one row a chunk)."""
    rng = random.Random(seed)
    found = []
    while len(found) < count:
        config = random_config(rng)
        if config.nd == 4:
            continue
        config = dataclasses.replace(config, spatial=(rng.randint(5, 14),) + config.spatial[1:])
        if all(o > 0 for o in config.out_spatial):
            found.append(pytest.param(config, rng.choice([2, 3, 5, 64]), id=config.id))
    return found


@pytest.mark.parametrize("strategy", ["cpu", "gpu"])
@pytest.mark.parametrize("config, chunks", row_sweep(24, seed=11))
def test_row_split_sweep(queue, monkeypatch, config, chunks, strategy):
    """Every pass of a random layer with its items cut into chunks of rows (the batch split made to give up, so
    the geometry alone is tested, not a budget), but backward data reading gy in place, which needs no scratch:
    forward and input gradient bitwise the unsplit call's, all passes within float32 rounding of the
    reference."""
    monkeypatch.setenv("DECONVND_CL_STRATEGY", strategy)
    conv = dict(config.conv, postpad=config.postpad)
    operands = random_operands(conv, (config.batch, config.cin) + config.spatial,
                               (config.cin, config.cout // config.groups) + config.size, seed=5)
    whole = all_passes(queue, conv, *operands)

    real_split_batch, inside, cuts = functional.split_along_batch, [False], []

    def batch_split_gives_up_outside_row_chunks(problem, run):
        if inside[0]:
            return real_split_batch(problem, run)
        raise ScratchTooLarge("made to give up by the test")

    def rows_in(extent, run):
        inside[0] = True
        try:
            cuts.append(min(extent, chunks))
            return run(row_split.bounds(extent, min(extent, chunks)))
        finally:
            inside[0] = False
    monkeypatch.setattr(functional, "split_along_batch", batch_split_gives_up_outside_row_chunks)
    monkeypatch.setattr(row_split, "split", rows_in)
    # the split is forced by the patches above, which no key holds: the whole calls' replays would not split
    monkeypatch.setenv("DECONVND_CL_REPLAY", "0")
    split = all_passes(queue, conv, *operands)
    passes_split = 3
    if strategy == "cpu":  # backward data reading gy in place needs no scratch and runs unsplit
        problem = Problem.create(queue, (config.batch, config.cin) + config.spatial,
                                 (config.cin, config.cout // config.groups) + config.size, np.dtype(np.float32),
                                 config.stride, config.pad, config.dilation, config.postpad, config.groups)
        passes_split -= cpu_tiles.backward_data_tile(problem).gy is GySource.IN_PLACE
    assert len(cuts) == passes_split and all(c >= 2 for c in cuts), cuts
    assert_split_matches(conv, operands, whole, split)


def test_too_large_even_for_one_row(queue, monkeypatch):
    monkeypatch.setenv("DECONVND_CL_SCRATCH_LIMIT", "1K")
    monkeypatch.setenv("DECONVND_CL_STRATEGY", "cpu")
    x = to_device(queue, np.ones((1, 8, 12, 13)))
    W = to_device(queue, np.ones((8, 2, 3, 3)))
    with pytest.raises(dcl.ModuleError, match="over the 1024 bytes .* and for one row of its first spatial axis"):
        dcl.deconvNd(x, W, stride=2, pad=1)


DCGAN_OUTPUT = r"""
import numpy as np, pyopencl.array as cla, deconvnd_cl as dcl
q = dcl.default_queue()
assert q.device.max_mem_alloc_size == 2**30, q.device.max_mem_alloc_size
rng = np.random.default_rng(0)
x = rng.standard_normal((32, 512, 128, 128), dtype=np.float32)   # exactly 1 GiB, as the device's allocations
W = (0.05 * rng.standard_normal((512, 3, 4, 4))).astype(np.float32)
xd, Wd = cla.to_device(q, x), cla.to_device(q, W)
y = dcl.deconvNd(xd, Wd, stride=2, pad=1).get()
assert y.shape == (32, 3, 256, 256)
for b in (0, 31):   # items computed on their own, unsplit, give the same bits
    assert np.array_equal(y[b:b + 1], dcl.deconvNd(cla.to_device(q, x[b:b + 1]), Wd, stride=2, pad=1).get()), b
print("OK")
"""

ONE_LARGE_ITEM = r"""
import numpy as np, pyopencl.array as cla, deconvnd_cl as dcl
q = dcl.default_queue()
assert q.device.max_mem_alloc_size == 2**30, q.device.max_mem_alloc_size
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 512, 512, 1024), dtype=np.float32)   # one item of exactly 1 GiB
W = (0.05 * rng.standard_normal((512, 3, 4, 4))).astype(np.float32)
xd, Wd = cla.to_device(q, x), cla.to_device(q, W)
y = dcl.deconvNd(xd, Wd, stride=2, pad=1).get()
assert y.shape == (1, 3, 1024, 2048)
for r in (0, 300, 510):   # input rows r .. r + 2 computed alone, unsplit: their interior output rows have the same bits
    window = dcl.deconvNd(cla.to_device(q, x[:, :, r:r + 3].copy()), Wd, stride=2, pad=1).get()
    assert np.array_equal(y[:, :, 2 * r + 1:2 * r + 4], window[:, :, 1:4]), r
print("OK")
"""


def run_on_a_4_gib_device(script):
    env = dict(os.environ, POCL_MEMORY_LIMIT="4", PYTHONPATH=str(ROOT), DECONVND_CL_STRATEGY="cpu")
    env.pop("DECONVND_CL_TEST_DEVICES", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.slow
def test_one_item_of_1_gib_on_a_4_gib_device():
    """A single input item of exactly 1 GiB on a device of 4 GiB (1 GiB per allocation): its padded copy is over the
    limit even for a batch of one, so the call runs in chunks of rows."""
    run_on_a_4_gib_device(ONE_LARGE_ITEM)


@pytest.mark.slow
def test_dcgan_output_layer_on_a_4_gib_device():
    """The issue's case: an input of exactly 1 GiB on a device of 4 GiB (1 GiB per allocation): its padded copy is
    over the limit, so the call runs split along the batch."""
    run_on_a_4_gib_device(DCGAN_OUTPUT)
