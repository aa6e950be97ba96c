"""DECONVND_CL_TARGET_FEATURES: the register-tiled kernels compiled on PoCL's CPU device for target features of the
host CPU beyond PoCL's own target, each through a work function of its own that the kernel calls (common.mako's
kernel_head), built alone and as a layer's combined program; and the values it refuses before any kernel could
stop the process with an illegal instruction."""

import zlib

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import device_kind, kernel_manager, program_sets, reference
from configs import sweep
from conftest import assert_close, to_device
from test_sweep import NON_OVERLAPPING, ROW_VECTORS, operands, reference_passes, run_all_passes

SWITCH = "DECONVND_CL_TARGET_FEATURES"
# features every x86-64 CPU with AVX2 has, so that kernels compiled for them run here; PoCL's own target (the
# host's) has them already, so only the work function's path is new
HOST_FEATURES = ("avx2", "fma")
CONFIGS = sweep(16, seed=20261207) + sweep(4, seed=20261208, long_rows=True) + NON_OVERLAPPING[:3] + ROW_VECTORS[:3]


@pytest.fixture
def pocl_cpu(queue):
    if device_kind.kind_of(queue.device).name != "pocl-cpu":
        pytest.skip("target features apply to PoCL's CPU device")


@pytest.fixture
def built_keys(monkeypatch):
    """The keys of the programs the kernel manager is asked for (each, or each member of a combined build)."""
    keys, real_program, real_prepare = [], kernel_manager.KernelManager.program, kernel_manager.KernelManager.prepare

    def program(self, queue, key, kernel_source):
        keys.append(key)
        return real_program(self, queue, key, kernel_source)

    def prepare(self, queue, requests):
        keys.extend(key for key, _ in requests)
        return real_prepare(self, queue, requests)
    monkeypatch.setattr(kernel_manager.KernelManager, "program", program)
    monkeypatch.setattr(kernel_manager.KernelManager, "prepare", prepare)
    return keys


def host_has(features):
    host = device_kind.host_cpu_features()
    return host is not None and set(map(device_kind.feature_key, features)) <= host


@pytest.fixture
def host_features(monkeypatch, pocl_cpu, cpu_strategy):
    """The switch set to HOST_FEATURES (skipped where the CPU lists no such features)."""
    if not host_has(HOST_FEATURES):
        pytest.skip(f"the CPU lists no {', '.join(HOST_FEATURES)}")
    monkeypatch.setenv(SWITCH, ",".join(HOST_FEATURES))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_passes_compiled_for_the_features_match_the_reference(queue, host_features, nan_filled_outputs, built_keys,
                                                               config):
    rng = np.random.default_rng(zlib.crc32(config.id.encode()))
    names = ("forward", "input grad", "W grad", "b grad")
    for integer in (True, False):
        ops = operands(config, rng, integer=integer)
        for name, got, want in zip(names, run_all_passes(queue, config, *ops), reference_passes(config, *ops)):
            assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
            if integer:
                np.testing.assert_array_equal(got, want, err_msg=f"{name} differs on integer-valued data")
            else:
                assert_close(got, want, what=name)
    tiled = [k for k in built_keys if k.strategy == "cpu"]
    assert tiled and all(k.target == "avx2,fma" and k.name.endswith("_avx2_fma") for k in tiled)
    assert all(k.target == "" for k in built_keys if k.strategy != "cpu")  # the packs keep PoCL's target


def test_a_training_layer_builds_its_passes_as_one_program(queue, host_features, monkeypatch):
    """The work functions belong to the bodies, so the passes' sources share one head and build as one."""
    combined = []
    real = program_sets.combinable
    monkeypatch.setattr(kernel_manager, "combinable", lambda sources: combined.append(real(sources)) or combined[-1])
    layer = dcl.DeconvND(2, 6, 4, 3, stride=2, pad=1, name="features")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 9, 11)).astype(np.float32)
    y = layer(to_device(queue, x))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = layer.backward(to_device(queue, gy))
    W, b = layer.W.get(), layer.b.get()
    assert_close(y.get(), reference.forward(x, W, b, stride=(2, 2), pad=(1, 1), dilation=(1, 1), groups=1))
    assert_close(gx.get(), reference.backward_data(gy, W, (9, 11), stride=(2, 2), pad=(1, 1), dilation=(1, 1),
                                                   groups=1))
    groups = [keys for found in combined for keys in found]
    assert any(len(keys) >= 2 and all(k.strategy == "cpu" and k.target == "avx2,fma" for k in keys)
               for keys in groups), groups


def test_features_named_as_llvm_names_them(queue, pocl_cpu, cpu_strategy, monkeypatch, built_keys):
    """LLVM's sse4.2 is Linux's sse4_2; a dot in a feature makes no kernel name invalid."""
    if not host_has(("sse4.2", "fma")):
        pytest.skip("the CPU lists no sse4_2 and fma")
    monkeypatch.setenv(SWITCH, "sse4.2,fma")
    x = np.random.default_rng(3).standard_normal((1, 3, 24)).astype(np.float32)
    W = np.random.default_rng(4).standard_normal((3, 2, 4)).astype(np.float32)
    y = dcl.deconvNd(to_device(queue, x), to_device(queue, W), stride=2, pad=1)
    assert_close(y.get(), reference.forward(x, W, None, stride=(2,), pad=(1,), dilation=(1,), groups=1))
    assert any(k.name.endswith("_sse4_2_fma") for k in built_keys)


@pytest.mark.parametrize("value", ["avx512f,,avx512vl", "+avx512f", "avx512f avx512vl", "avx512f;"])
def test_a_malformed_list_is_refused(queue, pocl_cpu, monkeypatch, value):
    monkeypatch.setenv(SWITCH, value)
    x = to_device(queue, np.ones((1, 2, 20)))
    W = to_device(queue, np.ones((2, 3, 4)))
    with pytest.raises(dcl.ModuleError, match=f"{SWITCH}=.* is not a list of target features"):
        dcl.deconvNd(x, W, stride=2)


def test_a_feature_the_cpu_lacks_is_refused(queue, pocl_cpu, cpu_strategy, monkeypatch):
    host = device_kind.host_cpu_features()
    if host is None:
        pytest.skip("the CPU's features cannot be read here")
    lacking = next((f for f in ("avx512f", "avx512fp16", "amxtile", "avx10.2") if f not in host), None)
    if lacking is None:
        pytest.skip("this CPU has every feature the test would ask for")
    monkeypatch.setenv(SWITCH, f"fma,{lacking}")
    x = to_device(queue, np.ones((1, 2, 20)))
    W = to_device(queue, np.ones((2, 3, 4)))
    with pytest.raises(dcl.ModuleError, match=f"names {lacking}, which this CPU does not have"):
        dcl.deconvNd(x, W, stride=2)


def test_a_feature_the_compiler_does_not_know_is_refused(queue, pocl_cpu, cpu_strategy, monkeypatch):
    """A flag the CPU lists that is no LLVM feature (`hypervisor`) would make the compiler ignore the whole
    attribute, and the kernels run at tiles sized for features they were not compiled for."""
    if not host_has(("hypervisor", "fma")):
        pytest.skip("the CPU lists no hypervisor flag")
    monkeypatch.setenv(SWITCH, "fma,hypervisor")
    x = to_device(queue, np.ones((1, 2, 20)))
    W = to_device(queue, np.ones((2, 3, 4)))
    with pytest.raises(dcl.ModuleError, match=r"the compiler ignored them \(unsupported 'hypervisor'"):
        dcl.deconvNd(x, W, stride=2)


def test_unreadable_cpu_features_are_refused(queue, pocl_cpu, cpu_strategy, monkeypatch, tmp_path):
    monkeypatch.setattr(device_kind, "CPUINFO", str(tmp_path / "no-cpuinfo"))
    monkeypatch.setenv(SWITCH, "fma")
    x = to_device(queue, np.ones((1, 2, 20)))
    W = to_device(queue, np.ones((2, 3, 4)))
    with pytest.raises(dcl.ModuleError, match="the CPU's features cannot be read"):
        dcl.deconvNd(x, W, stride=2)


def test_avx512_takes_vectors_of_16_floats(queue, pocl_cpu, cpu_strategy, monkeypatch, built_keys):
    """Where the CPU has AVX-512 (PoCL 3.0 compiles for AVX2 on an AMD Zen 4): 16-lane tiles, right results."""
    features = ("avx512f", "avx512vl", "avx512bw", "avx512dq")
    if not host_has(features):
        pytest.skip("the CPU lists no AVX-512")
    monkeypatch.setenv(SWITCH, ",".join(features))
    assert device_kind.vector_width(queue.device, np.dtype(np.float32)) == 16
    for config in NON_OVERLAPPING[:2] + CONFIGS[:6]:
        rng = np.random.default_rng(zlib.crc32(config.id.encode()))
        ops = operands(config, rng, integer=False)
        for got, want in zip(run_all_passes(queue, config, *ops), reference_passes(config, *ops)):
            assert_close(got, want)
    assert any(k.variant and 16 in k.variant for k in built_keys if k.strategy == "cpu")
