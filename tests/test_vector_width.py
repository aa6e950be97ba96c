"""The register-tiled kernels' vectors are as wide as the registers the device's compiler targets, which the
hardware's reported width may exceed (PoCL 3.0 on an AMD Zen 4 reports 16 float lanes and compiles for AVX2)."""

import json
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from deconvnd_cl.device_kind import (PROBE_KERNEL, _float_lanes, _probe_float_lanes, compiled_float_lanes,
                                    float_lanes, host_cpu_features, kind_of, vector_width)
from deconvnd_cl.disk_cache import entries

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def x86_pocl(queue):
    if platform.machine() not in ("x86_64", "AMD64") or "portable computing language" not in \
            queue.device.platform.name.lower() or not kind_of(queue.device).cpu_like:
        pytest.skip("the probe's answer is known here for PoCL's CPU device on x86-64")


def test_probe_names_registers_the_cpu_has(queue, x86_pocl):
    lanes = compiled_float_lanes(queue.device)
    assert lanes in (4, 8, 16), lanes
    flags = host_cpu_features()
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


def test_no_probe_where_the_reported_width_decides(queue, monkeypatch):
    """At most 8 lanes reported (rusticl's llvmpipe, AVX2 CPUs): the tiles take 8 lanes whatever the compiler
    targets, so the vector width is settled without building the probe."""
    from deconvnd_cl import device_kind
    device = queue.device
    if device.native_vector_width_float > 8:
        pytest.skip(f"{device.name.strip()} reports {device.native_vector_width_float} lanes: the probe decides")
    asked = []  # the probe's answer asked for (recorded in the cache or probed anew)
    monkeypatch.setattr(device_kind, "compiled_float_lanes", lambda d: asked.append(d) or 0)
    _float_lanes.cache_clear()
    try:
        assert float_lanes(device) == device.native_vector_width_float
        assert vector_width(device, np.dtype(np.float32)) == (8 if kind_of(device).cpu_like else 4)
        assert asked == []
    finally:
        _float_lanes.cache_clear()


def test_probe_is_silent(queue):
    """The probe's build says nothing to the user, whatever its compiler prints (Intel's runtime always does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _probe_float_lanes(queue.device)


# A fresh process's answer for the test device, and whether it built the probe for it (the probe keeps its
# contexts alive)
PROBE_IN_A_PROCESS = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "tests")!r})
from conftest import select_test_queue
from deconvnd_cl import device_kind
lanes = device_kind.compiled_float_lanes(select_test_queue().device)
print(json.dumps({{"lanes": lanes, "probed": bool(device_kind._probe_contexts)}}))
"""


def test_probe_answer_is_recorded_for_later_processes(queue, tmp_path):
    """The first process records the probe's answer beside the kernel cache's entries; a later one reads it and
    builds no probe; a damaged record is probed again and rewritten; with the cache off every process probes."""
    def run(**extra):
        env = dict(os.environ, DECONVND_CL_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT), **extra)
        if "DECONVND_CL_NO_CACHE" not in extra:
            env.pop("DECONVND_CL_NO_CACHE", None)
        result = subprocess.run([sys.executable, "-c", PROBE_IN_A_PROCESS], env=env, capture_output=True,
                                text=True, timeout=300, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    probed_here = _probe_float_lanes(queue.device)
    if probed_here is None:
        pytest.skip("the probe does not build on this device: there is no answer to record")
    first = run()
    assert first["probed"] and first["lanes"] == probed_here
    facts = list((tmp_path / "cache").glob("*/facts.json"))
    assert len(facts) == 1 and json.loads(facts[0].read_text())[PROBE_KERNEL] == first["lanes"]
    assert run() == {"lanes": first["lanes"], "probed": False}
    facts[0].write_text('{"dcl_vector_registers": ')  # a torn write
    assert run() == first
    assert json.loads(facts[0].read_text())[PROBE_KERNEL] == first["lanes"]
    facts[0].write_text('{"dcl_vector_registers": -3}')  # not a lane count
    assert run() == first
    assert run(DECONVND_CL_NO_CACHE="1") == first
    assert not entries(tmp_path / "cache")  # the record is no kernel entry for the CLI to list
