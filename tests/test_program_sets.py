"""A training layer's pass programs built as one (program_sets.py, KernelManager.prepare): the backward then builds
nothing, results are the reference's, and what cannot be combined builds alone as before."""

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import disk_cache, functional, kernel_manager, program_sets, reference
from deconvnd_cl.disk_cache import DiskCache
from deconvnd_cl.kernel_key import KernelKey
from deconvnd_cl.plans import Plans
from deconvnd_cl.signatures import Out, Signature
from deconvnd_cl.strategies import implementation
from conftest import assert_close, to_device


@pytest.fixture
def fresh_manager(monkeypatch):
    """A kernel manager of this test alone (no disk cache), and no layer remembered as prepared."""
    fresh = kernel_manager.KernelManager(DiskCache(None))
    monkeypatch.setattr(kernel_manager, "_manager", fresh)
    monkeypatch.setattr(functional, "_built_ahead", Plans())
    return fresh


def pass_programs(fresh, queue, layer, x):
    """The programs the layer's three passes run, from the manager's memory (None where not built)."""
    problem = functional.forward_problem(x, layer.W, layer.b, layer.stride, layer.pad, layer.dilation,
                                         layer.postpad, layer.groups)
    programs = []
    for family in functional.PASSES:
        impl = implementation(family, problem)
        for key, _ in impl.planned_programs(problem, impl.choose_variant(problem)):
            programs.append(fresh._programs.get((queue.context.int_ptr, queue.device.int_ptr, key)))
    return programs


@pytest.mark.parametrize("nd, size, stride, pad", [(1, 5, 3, 2), (2, 4, 2, 1), (2, 3, 1, 1), (3, 3, 2, 1)])
def test_training_layer_builds_its_passes_at_its_first_forward(queue, fresh_manager, nd, size, stride, pad):
    layer = dcl.DeconvND(nd, 6, 5, size, stride=stride, pad=pad, initscheme="gaussian")
    rng = np.random.default_rng(nd + size)
    x = rng.standard_normal((2, 6) + (5,) * nd).astype(np.float32)
    x_dev = to_device(queue, x)
    y = layer(x_dev)
    assert fresh_manager.builds == 2  # the rank's shared program, and one for the three passes
    programs = pass_programs(fresh_manager, queue, layer, x_dev)
    assert len(programs) == 3 and all(programs)
    assert len({id(p.cl_program) for p in programs}) == 1  # one build for the three
    builds = fresh_manager.builds
    grad = rng.standard_normal(y.shape).astype(np.float32)
    gx = layer.backward(to_device(queue, grad))
    assert fresh_manager.builds == builds  # the backward found its programs built
    W = layer.W.get()
    assert_close(y.get(), reference.forward(x, W, layer.b.get(), stride, pad))
    assert_close(gx.get(), reference.backward_data(grad, W, x.shape[2:], stride, pad))
    dW, db = reference.backward_params(x, grad, W.shape, stride, pad)
    assert_close(layer.vars["W"].grad.get(), dW, what="wgrad")
    assert_close(layer.vars["b"].grad.get(), db, what="bgrad")


def test_inference_builds_the_forward_alone(queue, fresh_manager):
    layer = dcl.Deconv2D(4, 3, 4, stride=2, pad=1)
    layer.evalMode()
    x = to_device(queue, np.ones((1, 4, 6, 6)))
    layer(x)
    forward, data, weights = pass_programs(fresh_manager, queue, layer, x)
    assert forward is not None and data is None and weights is None


def test_a_backward_of_both_gradients_builds_them_as_one(queue, fresh_manager):
    layer = dcl.Deconv2D(4, 3, 4, stride=2, pad=1)
    layer.evalMode()  # the forward builds its program alone
    x_host = np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)
    x = to_device(queue, x_host)
    y = layer(x)
    layer.trainMode()
    layer.backward(y)
    forward, data, weights = pass_programs(fresh_manager, queue, layer, x)
    assert forward.cl_program is not data.cl_program and data.cl_program is weights.cl_program
    W, y_host = layer.W.get(), y.get()
    assert_close(layer.grad.get(), reference.backward_data(y_host, W, x_host.shape[2:], 2, 1))
    assert_close(layer.vars["W"].grad.get(), reference.backward_params(x_host, y_host, W.shape, 2, 1)[0])


HEAD = "typedef float dcl_t;\n#define TWICE(a) (2 * (a))\n"


def test_sources_combine_by_head():
    """Heads equal but for blank lines combine; another head is left alone; so is a source without kernels."""
    sources = {"a": HEAD + "__kernel void a(void) {}\n", "b": HEAD.replace("\n", "\n\n") + "__kernel void b(void) {}",
               "c": "typedef double dcl_t;\n__kernel void c(void) {}", "d": HEAD}
    assert program_sets.combinable(sources) == [["a", "b"]]


class FakeHelpers:
    """A kernel source whose heads are one, but whose bodies each define a helper function of the same name after
    their kernel: they build alone, not together."""

    def source(self, key):
        n = key.counts[0]
        return (HEAD + "float helper(float v);\n"
                f"__kernel void {key.name}(__global float* out) {{ out[0] = helper({n}); }}\n"
                f"float helper(float v) {{ return v + {n}; }}\n")

    def signatures(self, key):
        return {"": Signature(Out("out"))}


def test_a_set_that_does_not_build_is_built_one_by_one(queue, fresh_manager, caplog):
    source = FakeHelpers()
    keys = [KernelKey("forward", "cpu", 1, "f32", 32, (n,), (n,)) for n in (3, 7)]
    assert program_sets.combinable({k: source.source(k) for k in keys}) == [keys]
    with caplog.at_level("DEBUG", logger="deconvnd_cl.kernel_manager"):
        fresh_manager.prepare(queue, [(k, source) for k in keys])  # the helpers clash: no program is kept
    assert "built one by one" in caplog.text and fresh_manager.builds == 0
    for key, n in zip(keys, (3, 7)):
        program = fresh_manager.program(queue, key, source)
        kernel, _ = program.kernel()
        out = to_device(queue, np.zeros(1))
        kernel(queue, (1,), None, out.data)
        assert out.get()[0] == 2 * n
    assert fresh_manager.builds == 2


def test_programs_on_disk_alone_load_alone(queue, monkeypatch, tmp_path):
    """A layer's forward used alone in an earlier process is on disk alone: a training module loads it from there
    and builds only its two backward programs as one."""
    layer = dcl.Deconv2D(4, 3, 4, stride=2, pad=1)
    x = to_device(queue, np.ones((1, 4, 5, 5)))
    managers = []
    for train in (False, True):  # two processes' managers on one disk cache
        managers.append(kernel_manager.KernelManager(DiskCache(tmp_path)))
        monkeypatch.setattr(kernel_manager, "_manager", managers[-1])
        monkeypatch.setattr(functional, "_built_ahead", Plans())
        layer.train = train
        layer(x)
    forward, data, weights = pass_programs(managers[-1], queue, layer, x)
    assert forward.from_disk and not data.from_disk and data.cl_program is weights.cl_program


def test_a_damaged_entry_lists_as_damaged(tmp_path):
    device_dir = tmp_path / "device"
    device_dir.mkdir()
    (device_dir / "dcl_set3_0-1.json").write_text('{"key": null}')
    (row,) = disk_cache.entries(tmp_path)
    assert "error" in row
