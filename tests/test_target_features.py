"""DECONVND_CL_TARGET_FEATURES: the register-tiled kernels compiled on PoCL's CPU device for target features of the
host CPU beyond PoCL's own target, each through a work function of its own that the kernel calls (common.mako's
kernel_head), built alone and as a layer's combined program; and the values it refuses before any kernel could
stop the process with an illegal instruction."""

import json
import re

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import device_kind, functional, kernel_manager, program_sets, reference
from deconvnd_cl.kernel_key import KernelKey
from deconvnd_cl.strategies import implementation
from configs import sweep
from conftest import assert_close, to_device
from test_cli import cli
from test_sweep import NON_OVERLAPPING, ROW_VECTORS, assert_all_passes_match_reference

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


def assert_refused(queue, message):
    """A small forward is a ModuleError whose text matches `message`, raised before anything runs."""
    x = to_device(queue, np.ones((1, 2, 20)))
    W = to_device(queue, np.ones((2, 3, 4)))
    with pytest.raises(dcl.ModuleError, match=message):
        dcl.deconvNd(x, W, stride=2)


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
    assert_all_passes_match_reference(queue, config)
    tiled = [k for k in built_keys if k.strategy == "cpu"]
    assert tiled and all(k.target == "avx2,fma" and k.name.endswith("_avx2_fma") for k in tiled)
    assert all(k.target == "" for k in built_keys if k.strategy != "cpu")  # the packs keep PoCL's target


def test_a_training_layer_builds_its_passes_as_one_program(queue, host_features, monkeypatch):
    """The work functions belong to the bodies, so the passes' sources share one head and build as one (those of
    them that an earlier test has not built already: kernel keys do not depend on the input's size)."""
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
    """LLVM's sse4.2 and sse3 are Linux's sse4_2 and pni; a dot in a feature makes no kernel name invalid."""
    if not host_has(("sse4.2", "sse3", "fma")):
        pytest.skip("the CPU lists no sse4_2, pni and fma")
    monkeypatch.setenv(SWITCH, "sse4.2,sse3,fma")
    x = np.random.default_rng(3).standard_normal((1, 3, 24)).astype(np.float32)
    W = np.random.default_rng(4).standard_normal((3, 2, 4)).astype(np.float32)
    y = dcl.deconvNd(to_device(queue, x), to_device(queue, W), stride=2, pad=1)
    assert_close(y.get(), reference.forward(x, W, None, stride=(2,), pad=(1,), dilation=(1,), groups=1))
    assert any(k.name.endswith("_sse4_2_sse3_fma") for k in built_keys)


def test_devices_lists_the_features(queue, host_features, tmp_path):
    """`deconvnd-cl devices` tells which device compiles for them (the default device, PoCL's CPU device here)."""
    rows = json.loads(cli("devices", "--json", cache_dir=tmp_path, **{SWITCH: "avx2,fma"}).stdout)
    default = next(r for r in rows if r["default"])
    assert default["target_features"] == "avx2,fma"
    assert default["vector_width"] == device_kind.vector_width(queue.device, np.dtype(np.float32))
    assert all(r["target_features"] == "" for r in rows if r["kind"] != "pocl-cpu")
    text = cli("devices", cache_dir=tmp_path, **{SWITCH: "avx2,fma"}).stdout
    assert "compiled for target features avx2,fma" in text


def test_kernel_names_stay_identifiers_of_bounded_length():
    key = KernelKey("forward", "cpu", 2, "f32", 32, (4, 24, 8, "packed"), (4,), "avx512f,amx-tile,sse4.2")
    assert key.name.endswith("_avx512f_amx_tile_sse4_2") and key.name.isidentifier()
    many = ",".join(["avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512cd", "avx512vnni", "avx512bf16"])
    long_key = KernelKey("forward", "cpu", 2, "f32", 32, (4, 24, 8, "packed"), (4,), many)
    assert long_key.name.isidentifier() and len(long_key.name) < 100 and "_target" in long_key.name
    assert long_key.name != KernelKey("forward", "cpu", 2, "f32", 32, (4, 24, 8, "packed"), (4,),
                                      many + ",gfni").name


def test_a_change_of_features_changes_the_default_tile(queue, pocl_cpu, cpu_strategy, monkeypatch, tmp_path):
    """With avx512f the vectors take 16 lanes, and a call after the switch changed takes the wider default (the
    remembered defaults are per target features); nothing is launched, so this runs on any CPU, told that it
    lists AVX-512, but one whose PoCL compiles for 512-bit vectors already (where the switch is not applied)."""
    if device_kind.compiled_float_lanes(queue.device) >= 16:
        pytest.skip("PoCL compiles for AVX-512 on this CPU already (test_avx512_is_not_applied_where_compiled_for)")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512vl avx512bw avx512dq\n")
    monkeypatch.setattr(device_kind, "CPUINFO", str(cpuinfo))
    x = to_device(queue, np.ones((2, 16, 8, 40)))
    W = to_device(queue, np.ones((16, 8, 4, 4)))
    problem = functional.forward_problem(x, W, None, 2, 1, 1, 0, 1)
    impl = implementation("forward", problem)
    monkeypatch.delenv(SWITCH, raising=False)
    narrow = impl.choose_variant(problem)
    monkeypatch.setenv(SWITCH, "avx512f,avx512vl,avx512bw,avx512dq")
    wide = impl.choose_variant(problem)
    assert narrow.vw == device_kind.vector_width(queue.device, np.dtype(np.float32)) or narrow.vw == 8
    assert wide.vw == 16 and device_kind.vector_width(queue.device, np.dtype(np.float32)) == 16
    assert impl.key(problem, wide, 32).target == "avx512f,avx512vl,avx512bw,avx512dq"
    monkeypatch.delenv(SWITCH)
    assert impl.choose_variant(problem) == narrow


@pytest.mark.parametrize("value", ["avx512f,,avx512vl", "+avx512f", "avx512f avx512vl", "avx512f;"])
def test_a_malformed_list_is_refused(queue, pocl_cpu, monkeypatch, value):
    monkeypatch.setenv(SWITCH, value)
    assert_refused(queue, f"{SWITCH}=.* is not a list of target features")


def test_a_feature_the_cpu_lacks_is_refused(queue, pocl_cpu, cpu_strategy, monkeypatch):
    host = device_kind.host_cpu_features()
    if host is None:
        pytest.skip("the CPU's features cannot be read here")
    lacking = next((f for f in ("avx512f", "avx512fp16", "amxtile", "avx10.2") if f not in host), None)
    if lacking is None:
        pytest.skip("this CPU has every feature the test would ask for")
    monkeypatch.setenv(SWITCH, f"fma,{lacking}")
    assert_refused(queue, f"names {re.escape(lacking)}, which .* flags do not list")


def test_a_feature_the_compiler_does_not_know_is_refused(queue, pocl_cpu, cpu_strategy, monkeypatch):
    """A flag the CPU lists that is no LLVM feature (`hypervisor`) would make the compiler ignore the whole
    attribute, and the kernels run at tiles sized for features they were not compiled for."""
    if not host_has(("hypervisor", "fma")):
        pytest.skip("the CPU lists no hypervisor flag")
    monkeypatch.setenv(SWITCH, "fma,hypervisor")
    assert_refused(queue, r"the compiler ignored them \(unsupported 'hypervisor'")


def test_unreadable_cpu_features_are_refused(queue, pocl_cpu, cpu_strategy, monkeypatch, tmp_path):
    monkeypatch.setattr(device_kind, "CPUINFO", str(tmp_path / "no-cpuinfo"))
    monkeypatch.setenv(SWITCH, "fma")
    assert_refused(queue, "the CPU's features cannot be read")


AVX512 = ("avx512f", "avx512vl", "avx512bw", "avx512dq")


def test_avx512_takes_vectors_of_16_floats(queue, pocl_cpu, cpu_strategy, monkeypatch, built_keys):
    """Where the CPU has AVX-512 and PoCL compiles for fewer lanes (PoCL 3.0 compiles for AVX2 on an AMD Zen 4):
    16-lane tiles in work functions compiled for AVX-512, right results."""
    if not host_has(AVX512):
        pytest.skip("the CPU lists no AVX-512")
    if device_kind.compiled_float_lanes(queue.device) >= 16:
        pytest.skip("PoCL compiles for AVX-512 on this CPU already (test_avx512_is_not_applied_where_compiled_for)")
    monkeypatch.setenv(SWITCH, ",".join(AVX512))
    assert device_kind.vector_width(queue.device, np.dtype(np.float32)) == 16
    for config in NON_OVERLAPPING[:2] + CONFIGS[:6]:
        assert_all_passes_match_reference(queue, config)
    tiled = [k for k in built_keys if k.strategy == "cpu"]
    assert tiled and all(k.variant[2] == 16 and k.target == ",".join(AVX512) for k in tiled)  # (tm, tn, vw, ...)


def test_avx512_is_not_applied_where_compiled_for(queue, pocl_cpu, cpu_strategy, monkeypatch, built_keys):
    """Where PoCL compiles for AVX-512 already (PoCL 3.0 on an Intel Xeon), the switch names nothing the kernels
    lack and is not applied, with a warning: the kernels keep PoCL's target and its 16-lane tiles."""
    if not host_has(AVX512) or device_kind.compiled_float_lanes(queue.device) < 16:
        pytest.skip("PoCL does not compile for AVX-512 on this CPU (test_avx512_takes_vectors_of_16_floats)")
    monkeypatch.setenv(SWITCH, ",".join(AVX512))
    device_kind._warn_not_applied.cache_clear()
    with pytest.warns(UserWarning, match=f"{SWITCH}=avx512f,avx512vl,avx512bw,avx512dq is not applied"):
        assert device_kind.target_features(queue.device) == ""
    for config in CONFIGS[:3]:
        assert_all_passes_match_reference(queue, config)
    tiled = [k for k in built_keys if k.strategy == "cpu"]
    assert tiled and all(k.variant[2] == 16 and k.target == "" for k in tiled)
