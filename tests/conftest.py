"""Shared test setup: which OpenCL device runs the tests, tolerances, and small helpers.

DECONVND_CL_TEST_DEVICES picks the device by a substring of "platform, platform version / device" (like
PYOPENCL_TEST); unset, the library's default device is used. Every test session gets its own kernel cache
directory unless DECONVND_CL_CACHE_DIR is set, so tests never touch a user's cache.
"""

import os
import tempfile

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

os.environ.setdefault("DECONVND_CL_CACHE_DIR", tempfile.mkdtemp(prefix="deconvnd_cl_test_cache_"))

import deconvnd_cl as dcl  # noqa: E402  (after the cache directory is chosen)
from deconvnd_cl.device import create_queue, find_device  # noqa: E402
from deconvnd_cl.reference import rel_l2  # noqa: E402

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
