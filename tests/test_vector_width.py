"""The register-tiled kernels' vectors are as wide as the registers the device's compiler targets, which the
hardware's reported width may exceed (PoCL 3.0 on an AMD Zen 4 reports 16 float lanes and compiles for AVX2)."""

import platform
import warnings

import numpy as np
import pytest

from deconvnd_cl.device_kind import compiled_float_lanes, float_lanes, kind_of, vector_width


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


@pytest.fixture
def x86_pocl(queue):
    if platform.machine() not in ("x86_64", "AMD64") or "portable computing language" not in \
            queue.device.platform.name.lower() or not kind_of(queue.device).cpu_like:
        pytest.skip("the probe's answer is known here for PoCL's CPU device on x86-64")


def test_probe_names_registers_the_cpu_has(queue, x86_pocl):
    lanes = compiled_float_lanes(queue.device)
    assert lanes in (4, 8, 16), lanes
    flags = _cpu_flags()
    if flags:
        assert lanes < 16 or "avx512f" in flags
        assert lanes < 8 or "avx" in flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_vectors_fit_the_compiled_registers(queue, dtype):
    device, dtype = queue.device, np.dtype(dtype)
    if not kind_of(device).cpu_like:
        pytest.skip("GPU-like devices take vectors of 4")
    lanes = vector_width(device, dtype)
    accumulator_bits = lanes * (64 if dtype == np.float64 else 32)
    compiled = compiled_float_lanes(device) or device.native_vector_width_float
    assert lanes in (4, 8, 16)
    assert accumulator_bits <= max(256, 32 * compiled)
    assert float_lanes(device) <= device.native_vector_width_float


def test_probe_is_silent(queue):
    """The probe's build says nothing to the user, whatever its compiler prints (Intel's runtime always does)."""
    compiled_float_lanes.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled_float_lanes(queue.device)
