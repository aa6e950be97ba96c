"""Shared test setup: which OpenCL device runs the tests, tolerances, and small helpers.

DECONVND_CL_TEST_DEVICES picks the device by a substring of "platform, platform version / device" (like
PYOPENCL_TEST); unset, the library's default device is used. Every test session gets its own kernel cache
directory unless DECONVND_CL_CACHE_DIR is set, so tests never touch a user's cache.
"""

import os
import random
import tempfile
import zlib

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

os.environ.setdefault("DECONVND_CL_CACHE_DIR", tempfile.mkdtemp(prefix="deconvnd_cl_test_cache_"))

import deconvnd_cl as dcl  # noqa: E402  (after the cache directory is chosen)
from deconvnd_cl.device import create_queue, find_device  # noqa: E402
from deconvnd_cl import functional, memory, reference  # noqa: E402
from deconvnd_cl.reference import rel_l2  # noqa: E402
from deconvnd_cl.strategies import cpu_tiles  # noqa: E402

# Relative L2 error allowed against the float64 reference, per dtype.
REL_L2 = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12, np.dtype(np.float16): 1e-3}


def _test_device():
    wanted = os.environ.get("DECONVND_CL_TEST_DEVICES")
    if not wanted:
        return None
    device = find_device(wanted)
    if device is None:
        raise pytest.UsageError(f"DECONVND_CL_TEST_DEVICES={wanted!r} matches no OpenCL device")
    return device


def select_test_queue():
    """The library's default queue, on DECONVND_CL_TEST_DEVICES's device when that is set (test scripts run in
    subprocesses call this too)."""
    device = _test_device()
    if device is not None:
        dcl.set_default_queue(create_queue(device))
    return dcl.default_queue()


@pytest.fixture(scope="session")
def queue():
    return select_test_queue()


@pytest.fixture(scope="session")
def fp64(queue):
    if "cl_khr_fp64" not in queue.device.extensions:
        pytest.skip("device has no cl_khr_fp64")


@pytest.fixture
def cpu_strategy(monkeypatch):
    """The tests of the register-tiled kernels' tiles run that strategy whatever the device."""
    monkeypatch.setenv("DECONVND_CL_STRATEGY", "cpu")


@pytest.fixture
def gpu_strategy(monkeypatch):
    monkeypatch.setenv("DECONVND_CL_STRATEGY", "gpu")


@pytest.fixture
def no_launch(monkeypatch, queue):
    """Any kernel build or launch during the test fails it: what the test checks happens before both."""
    from deconvnd_cl.kernel_manager import manager

    def forbidden(*args, **kwargs):
        raise AssertionError("a kernel was launched or built before validation finished")
    monkeypatch.setattr(cl, "enqueue_nd_range_kernel", forbidden)
    monkeypatch.setattr(manager(), "program", forbidden)
    monkeypatch.setattr(manager(), "prepare", forbidden)  # a training module's programs built ahead


def to_device(queue, array, dtype=np.float32):
    return cla.to_device(queue, np.ascontiguousarray(array, dtype=dtype))


def assert_close(actual, expected, dtype=np.float32, what="result"):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values (unwritten output?)"
    err = rel_l2(actual, expected)
    assert err <= REL_L2[np.dtype(dtype)], f"{what}: relative L2 error {err:.3g} > {REL_L2[np.dtype(dtype)]}"


def assert_sampled_forward_tiles(queue, config, source, conv):
    """Two of the forward's candidate tiles that read x from `source` (configs.Config's layer, seeded by its id),
    one with a bias and one without, against the float64 reference; `conv`: (stride, pad, dilation, postpad,
    groups) as deconvNd takes them."""
    rng = np.random.default_rng(zlib.crc32(config.id.encode()))
    x = rng.standard_normal((config.batch, config.cin) + config.spatial)
    W = rng.standard_normal((config.cin, config.cout // config.groups) + config.size)
    bias = rng.standard_normal((1, config.cout) + (1,) * config.nd)
    xd, Wd, bd = to_device(queue, x), to_device(queue, W), to_device(queue, bias)
    problem = functional.forward_problem(xd, Wd, bd, *conv)
    tiles = [t for t in cpu_tiles.forward_candidates(problem) if t.x is source]
    assert tiles, f"no {source.value} tile fits the layer"
    for tile, with_bias in zip(random.Random(config.id).sample(tiles, min(2, len(tiles))), (True, False)):
        want = reference.forward(x, W, bias if with_bias else None, *conv)
        got = dcl.deconvNd(xd, Wd, bd if with_bias else None, *conv, tile=tile).get()
        assert_close(got, want, what=f"tile {tile.key()}")


def assert_forward_tile_in_dtype(queue, dtype, x_shape, w_shape, tile, stride, pad=0):
    """A forward tile on seeded operands stored as `dtype`, against the float64 reference on the same values."""
    rng = np.random.default_rng(1)
    x, W = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    bias = rng.standard_normal((1, w_shape[1]) + (1,) * (len(x_shape) - 2))
    xd, Wd, bd = (to_device(queue, a, dtype) for a in (x, W, bias))
    want = reference.forward(*(a.get().astype(np.float64) for a in (xd, Wd, bd)), stride, pad)
    got = dcl.deconvNd(xd, Wd, bd, stride=stride, pad=pad, tile=tile).get()
    assert_close(got.astype(np.float64), want, dtype)


@pytest.fixture
def nan_filled_outputs(monkeypatch, request):
    """Outputs start as NaN (whether the pool hands out a new block or a used one): an element no kernel
    writes fails the comparison. (Tests that run nothing on the device take no queue and are not checked; a test
    module of fewer calls a test says how many in NAN_FILLED_AT_LEAST.)"""
    real_empty, filled = memory.empty, []

    def empty_nan(queue, shape, dtype):
        array = real_empty(queue, shape, dtype)
        if array.size:
            array.set(np.full(shape, np.nan, dtype))
            filled.append(shape)
        return array
    monkeypatch.setattr(memory, "empty", empty_nan)
    yield
    if "queue" in request.fixturenames:
        assert len(filled) >= getattr(request.module, "NAN_FILLED_AT_LEAST", 3), \
            "the library's outputs did not come from memory.empty: nothing was NaN-filled"
