"""Kernel variants (`tile=` of the functional calls, what optimizeForShape picks): every value a user might pass
ends in a ModuleError naming what is wrong, before anything is built or launched, or in a correct result; a
variant a module tuned for one shape falls back to the default on shapes it does not fit."""

import random

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional, reference
from deconvnd_cl.strategies import implementation
from deconvnd_cl.variants import GySource
from conftest import assert_close, to_device

FAMILIES = ("forward", "backward_data", "backward_weights")


def layer_operands(queue, seed=0, size=4, stride=2, pad=1, spatial=(5, 6), cin=6, cout=10):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, cin) + spatial)
    W = rng.standard_normal((cin, cout) + (size,) * len(spatial))
    y_shape = reference.forward(x, W, None, stride, pad).shape
    gy = rng.standard_normal(y_shape)
    return (x, W, gy), tuple(to_device(queue, a) for a in (x, W, gy))


def run(family, tile, xd, Wd, gyd, stride=2, pad=1):
    if family == "forward":
        return dcl.deconvNd(xd, Wd, stride=stride, pad=pad, tile=tile).get()
    if family == "backward_data":
        return dcl.deconvNdBackwardData(gyd, Wd, xd, stride=stride, pad=pad, tile=tile).get()
    return dcl.deconvNdBackwardParams(xd, gyd, Wd, stride=stride, pad=pad, tile=tile)[0].get()


def expected(family, x, W, gy, stride=2, pad=1):
    if family == "forward":
        return reference.forward(x, W, None, stride, pad)
    if family == "backward_data":
        return reference.backward_data(gy, W, x.shape[2:], stride, pad)
    return reference.backward_params(x, gy, W.shape, stride, pad)[0]


# the examples, and every kind of malformed value
BAD_TILES = [
    ("forward", (6, 12, 8), "tn a multiple of vw"),
    ("backward_data", (3, 7, 4), "tn a multiple of vw"),
    ("forward", (6, 16), "tuple of 3 to 4 values"),
    ("forward", (0, 16, 8), "tm must be an int >= 1"),
    ("forward", (6, -16, 8), "tn must be an int >= 1"),
    ("forward", (6.0, 16, 8), "tm must be an int"),
    ("forward", ("6", 16, 8), "tm must be an int"),
    ("forward", (6, 16, True), "vw must be an int"),
    ("forward", (6, 16, 8, "planar"), r"a stride of 1 on every axis, no postpad and pad <= dilation \* \(size - 1\) "
                                      "for x 'planar'"),
    ("forward", (6, 16, 8, "packed", 1), "tuple of 3 to 4 values"),
    ("forward", (2, 6, 3), "vw one of 2, 4, 8, 16"),
    ("forward", (64, 64, 8), "at most 32 vector accumulators"),
    ("forward", 6, "tuple of 3 to 4 values"),
    ("forward", "6x16x8", "tuple of 3 to 4 values"),
    ("backward_data", (6, 16, 8, 2), "field gy must be one of"),
    ("backward_data", (6, 16, 8, "channels_last"), "gy 'planar', 'in_place' or 'over_maps'"),
    ("backward_data", (12, 16, 8, "over_maps"), "tm a multiple of vw"),
    ("backward_data", (32, 17, 16, "over_maps"), r"at most 32 vector accumulators \(tm / vw \* tn\)"),
    ("backward_data", (6, 16, 8, "in_place"), "input rows of at least tn = 16 positions"),
    ("backward_data", (6, 16, 8, "in_place", 1), "tuple of 3 to 4 values"),
    ("backward_weights", (4, 3, 8, 2), "field gy must be one of"),
    ("backward_weights", (4, 3, 8, "in_place"), "kernel size = stride"),
    ("backward_weights", (4, 12, 8, "channels_last"), "tn a multiple of vw"),
    ("backward_weights", (8, 8, 8), "at most 32 vector accumulators"),
    ("backward_weights", (4, 3), "tuple of 3 to 5 values"),
    ("backward_weights", (16, 3, 8, "planar", "channels_last"), "gy .in_place. with x .channels_last."),
    ("backward_weights", (12, 3, 8, "in_place", "channels_last"), "tm a multiple of vw"),
    ("forward", (6, 16, 8, "channels_last"), "x .packed., .in_place., .planar., .interleaved. or .over_maps."),
    ("forward", (12, 16, 8, "over_maps"), "tm a multiple of vw"),
    ("forward", (32, 17, 16, "over_maps"), r"at most 32 vector accumulators \(tm / vw \* tn\)"),
    ("forward", (6, 16, 8, "interleaved"), r"output rows of at least 2 \* vw - 1 = 15 positions for x 'interleaved'"),
    ("forward", (4, 32, 4, "interleaved"), "at most 32 vector accumulators"),
]


@pytest.mark.parametrize("family, tile, message", BAD_TILES, ids=[f"{f}-{t}" for f, t, _ in BAD_TILES])
def test_bad_tiles_are_module_errors_before_any_build(queue, cpu_strategy, no_launch, family, tile, message):
    _, (xd, Wd, gyd) = layer_operands(queue)
    with pytest.raises(dcl.ModuleError, match=message):
        run(family, tile, xd, Wd, gyd)


def test_a_variant_of_another_family_is_refused(queue, cpu_strategy, no_launch):
    _, (xd, Wd, gyd) = layer_operands(queue)
    problem = functional.forward_problem(xd, Wd, None, 2, 1, 1, 0, 1)
    forward_variant = implementation("forward", problem).default_variant(problem)
    backward = functional.backward_problem(gyd, Wd, xd.shape, 2, 1, 1, 1)
    weights_variant = implementation("backward_weights", backward).default_variant(backward)
    with pytest.raises(dcl.ModuleError, match="takes a BackwardDataTile variant"):
        run("backward_data", forward_variant, xd, Wd, gyd)
    with pytest.raises(dcl.ModuleError, match="takes a ForwardTile variant"):
        run("forward", weights_variant, xd, Wd, gyd)


def test_in_place_tiles_on_rows_too_short(queue, cpu_strategy, no_launch):
    """Reading gy in place needs rows of at least TN positions: named, not computed wrong."""
    _, (xd, Wd, gyd) = layer_operands(queue, size=2, stride=2, pad=0, spatial=(3, 5))
    with pytest.raises(dcl.ModuleError, match="input rows of at least tn = 8 positions"):
        run("backward_data", (4, 8, 8, "in_place"), xd, Wd, gyd, pad=0)


def random_tile(rng, family):
    """A plausible tile (tm, tn = a few vectors, vw, maybe where x or gy is read from), one of its fields replaced
    by an odd value half of the time: a wrong type, zero, negative, a vector width OpenCL lacks, a length off by
    one."""
    vw = rng.choice([2, 4, 8])
    values = [rng.randint(1, 6), vw * rng.randint(1, 3), vw]
    if rng.random() < 0.6:
        values.append(rng.choice(["packed", "in_place", "planar", "interleaved"] if family == "forward"
                                 else ["planar", "channels_last", "in_place"]))
    if rng.random() < 0.5:
        odd = rng.choice([0, -2, 3, 5, 24, 1.5, "4", None, "diagonal", 1])
        at = rng.randrange(len(values) + 1)
        values = values[:at] + [odd] + values[at + 1:]
    return tuple(values)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer", ["k4s2p1", "k2s2"])
def test_any_tile_is_an_error_or_a_correct_result(queue, cpu_strategy, family, layer):
    """Seeded random tiles, valid and not: each gives a ModuleError or the reference's result, and at least
    some of each kind occur."""
    size, stride, pad = (4, 2, 1) if layer == "k4s2p1" else (2, 2, 0)
    ops, (xd, Wd, gyd) = layer_operands(queue, 3, size, stride, pad, spatial=(3, 17))
    want = expected(family, *ops, stride, pad)
    rng = random.Random(f"{family}-{layer}")
    assert_errors_or_correct([random_tile(rng, family) for _ in range(16)], family, (xd, Wd, gyd), want, stride, pad)


TWO_LANE_TILES = [("forward", (2, 4, 2)), ("forward", (2, 4, 2, "interleaved")), ("backward_data", (2, 4, 2)),
                  ("backward_data", (2, 4, 2, "in_place")),
                  ("backward_weights", (2, 3, 2)), ("backward_weights", (2, 4, 2, "channels_last"))]


@pytest.mark.parametrize("family, tile", TWO_LANE_TILES, ids=[f"{f}-{t}" for f, t in TWO_LANE_TILES])
def test_two_lane_vectors(queue, cpu_strategy, family, tile):
    """vw = 2, the narrowest vector OpenCL has (its half vector is a scalar): built and right."""
    ops, (xd, Wd, gyd) = layer_operands(queue, 4, spatial=(3, 17))
    assert_close(run(family, tile, xd, Wd, gyd), expected(family, *ops), what=f"{family} with tile {tile}")


def assert_errors_or_correct(tiles, family, device_operands, want, stride, pad):
    """Each tile gives a ModuleError or the right result, and some of each occur."""
    outcomes = {"error": 0, "correct": 0}
    for tile in tiles:
        try:
            got = run(family, tile, *device_operands, stride, pad)
        except dcl.ModuleError:
            outcomes["error"] += 1
            continue
        assert_close(got, want, what=f"{family} with tile {tile}")
        outcomes["correct"] += 1
    assert outcomes["error"] and outcomes["correct"], outcomes


@pytest.mark.parametrize("strategy", ["cpu", "gpu"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_candidate_computes_the_right_result(queue, family, strategy, monkeypatch):
    """The tuner's candidates all fit the call, and each computes it correctly (for the GPU strategy, whose
    kernels take PoCL seconds each to build, a spread of six of its 20-odd candidates)."""
    monkeypatch.setenv("DECONVND_CL_STRATEGY", strategy)
    ops, (xd, Wd, gyd) = layer_operands(queue, 4, size=2, stride=2, pad=0, spatial=(3, 18))
    problem = (functional.forward_problem(xd, Wd, None, 2, 0, 1, 0, 1) if family == "forward"
               else functional.backward_problem(gyd, Wd, xd.shape, 2, 0, 1, 1))
    candidates = implementation(family, problem).candidates(problem)
    assert len(candidates) >= 3
    if family != "forward" and strategy == "cpu":
        assert any(c.gy is GySource.IN_PLACE for c in candidates)
    want = expected(family, *ops, 2, 0)
    if strategy == "gpu":
        candidates = candidates[::max(1, len(candidates) // 6)]
    for variant in candidates:
        assert variant.fits(problem)
        assert_close(run(family, variant, xd, Wd, gyd, 2, 0), want, what=f"{family} {variant}")


# the work-group tiled (GPU) strategy's variants: (wm, wn, tm, tn, kc[, window][, subgroup])
BAD_GPU_TILES = [
    ("forward", (0, 16, 4, 8, 8), "wm must be an int >= 1"),
    ("forward", (16, 16, 4, 8), "tuple of 5 to 7 values"),
    ("forward", (16, 16, 16, 16, 8), "tm \\* tn <= 64"),
    ("forward", (16, 16, 4, 8, 8, 2), "window 0 or 1"),
    ("backward_data", (16, 16, 4, 8, 100000), "bytes of __local memory"),
    ("backward_data", (128, 128, 1, 1, 1), "work-items"),
    ("backward_weights", (16, 16, 4, 8, 8, 1, 0), "tuple of 5 to 6 values"),
    ("backward_weights", (16, 8, 4, 8, 8, 2), "subgroup 0 or 1"),
    ("backward_weights", (16, 16, 4, 8, "8"), "kc must be an int"),
]


@pytest.mark.parametrize("family, tile, message", BAD_GPU_TILES, ids=[f"{f}-{t}" for f, t, _ in BAD_GPU_TILES])
def test_bad_gpu_tiles_are_module_errors_before_any_build(queue, gpu_strategy, no_launch, family, tile, message):
    _, (xd, Wd, gyd) = layer_operands(queue)
    with pytest.raises(dcl.ModuleError, match=message):
        run(family, tile, xd, Wd, gyd)


def random_gpu_tile(rng, family):
    """A plausible work-group tile, one field replaced by an odd value half of the time."""
    values = [rng.choice([1, 2, 4, 8, 16]), rng.choice([1, 4, 8, 16, 32]), rng.randint(1, 8), rng.randint(1, 8),
              rng.choice([1, 2, 4, 8, 16])]
    if family != "backward_weights" and rng.random() < 0.5:
        values.append(rng.choice([0, 1]))
    if rng.random() < 0.4:
        odd = rng.choice([0, -1, 3.5, "2", None, 64, 2])
        at = rng.randrange(len(values) + 1)
        values = values[:at] + [odd] + values[at + 1:]
    return tuple(values)


@pytest.mark.parametrize("family", FAMILIES)
def test_any_gpu_tile_is_an_error_or_a_correct_result(queue, gpu_strategy, family):
    ops, (xd, Wd, gyd) = layer_operands(queue, 6, 3, 2, 1, spatial=(4, 9))
    want = expected(family, *ops, 2, 1)
    rng = random.Random(f"gpu-{family}")
    assert_errors_or_correct([random_gpu_tile(rng, family) for _ in range(16)], family, (xd, Wd, gyd), want, 2, 1)


SUBGROUP_TILES = {"forward": (8, 8, 4, 4, 1, 0, 1), "backward_data": (16, 8, 4, 8, 1, 0, 1),
                  "backward_weights": (8, 8, 8, 4, 1, 1)}


@pytest.mark.parametrize("family", FAMILIES)
def test_subgroup_tiles(queue, gpu_strategy, family):
    """The cl_intel_subgroups path: the right result where the device has the extension (Intel's runtimes; CI
    runs this on Intel's CPU runtime), a ModuleError naming it elsewhere; and its own constraints."""
    ops, (xd, Wd, gyd) = layer_operands(queue, 7, 3, 2, 1, spatial=(4, 9))
    tile = SUBGROUP_TILES[family]
    if "cl_intel_subgroups" not in queue.device.extensions:
        with pytest.raises(dcl.ModuleError, match="cl_intel_subgroups on the device"):
            run(family, tile, xd, Wd, gyd, 2, 1)
        return
    assert_close(run(family, tile, xd, Wd, gyd, 2, 1), expected(family, *ops, 2, 1), what=f"{family} {tile}")
    wide = tile[:1] + (16,) + tile[2:]
    with pytest.raises(dcl.ModuleError, match="wn = 8, the subgroup's lanes"):
        run(family, wide, xd, Wd, gyd, 2, 1)


def test_unknown_strategy_is_a_module_error(queue, monkeypatch, no_launch):
    monkeypatch.setenv("DECONVND_CL_STRATEGY", "fpga")
    _, (xd, Wd, gyd) = layer_operands(queue)
    with pytest.raises(dcl.ModuleError, match="DECONVND_CL_STRATEGY='fpga' is not a strategy"):
        run("forward", None, xd, Wd, gyd)


# ---------------------------------------------------------------------------------------------- tuned modules

def check_module(queue, layer, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(to_device(queue, x))
    W, b = layer.W.get(), layer.b.get()
    conv = dict(stride=layer.stride, pad=layer.pad, dilation=layer.dilation, groups=layer.groups)
    assert_close(y.get(), reference.forward(x, W, b, postpad=layer.postpad, **conv), what=f"forward {shape}")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = layer.backward(to_device(queue, gy))
    assert_close(gx.get(), reference.backward_data(gy, W, shape[2:], **conv), what=f"input grad {shape}")
    dW, db = reference.backward_params(x, gy, W.shape, **conv)
    assert_close(layer.vars["W"].grad.get(), dW, what=f"W grad {shape}")
    assert_close(layer.vars["b"].grad.get(), db, what=f"b grad {shape}")


def test_tuned_module_computes_other_shapes(queue):
    """The issue's case: tuned on long rows (where gy is read in place with wide tiles), then called on short
    rows and another batch size."""
    layer = dcl.Deconv2D(16, 16, 2, stride=2)
    variants = layer.optimizeForShape((1, 16, 40, 40))
    assert set(variants) == set(FAMILIES)
    for shape in ((2, 16, 5, 3), (3, 16, 1, 1), (1, 16, 40, 40)):
        check_module(queue, layer, shape, seed=sum(shape))


@pytest.mark.parametrize("nd", [1, 3])
def test_module_with_variants_that_do_not_fit_falls_back(queue, cpu_strategy, nd):
    """A module holding the widest in-place variants of its long-row shape computes short rows correctly."""
    layer = dcl.DeconvND(nd, 8, 8, 2, stride=2)
    long_shape = (1, 8) + (2,) * (nd - 1) + (40,)
    x = to_device(queue, np.zeros(long_shape))
    y = layer(x)
    backward = functional.backward_problem(y, layer.W, long_shape, 2, 0, 1, 1)
    for family in ("backward_data", "backward_weights"):
        widest = max((v for v in implementation(family, backward).candidates(backward) if v.gy is GySource.IN_PLACE),
                     key=lambda v: v.tn)
        layer.variants[family] = widest
    short_shape = (2, 8) + (3,) * (nd - 1) + (5,)
    short = functional.backward_problem(to_device(queue, np.zeros((2, 8) + (6,) * (nd - 1) + (10,))), layer.W,
                                        short_shape, 2, 0, 1, 1)
    assert not layer.variants["backward_data"].fits(short)
    check_module(queue, layer, short_shape, seed=nd)
    check_module(queue, layer, long_shape, seed=nd + 10)


def test_backward_data_without_data_infers_the_smallest_input(queue):
    """grad of length 8 from a k3 s2 p1 layer: the smallest consistent input is 4 (postpad 1)."""
    rng = np.random.default_rng(5)
    gy, W = rng.standard_normal((2, 3, 8)), rng.standard_normal((4, 3, 3))
    gx = dcl.deconvNdBackwardData(to_device(queue, gy), to_device(queue, W), stride=2, pad=1)
    assert gx.shape == (2, 4, 4)
    assert_close(gx.get(), reference.backward_data(gy, W, (4,), 2, 1))
