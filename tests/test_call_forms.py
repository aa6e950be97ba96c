"""A call whose arguments have the forms of an earlier replayed call's goes to that replay at once
(call_forms.py): it skips the validation, and its results are bit for bit those of the call worked out anew;
any other form, switch or scalar is validated and worked out, and invalid arguments still raise ModuleError."""

import numpy as np
import pyopencl.array as cla
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional, kernel_manager, reference, settings
from deconvnd_cl.functional import deconvNd, deconvNdBackwardData, deconvNdBackwardParams
from deconvnd_cl.strategies import implementation
from deconvnd_cl.disk_cache import DiskCache
from deconvnd_cl.errors import ModuleError
from conftest import assert_close, to_device


@pytest.fixture
def fresh_manager(monkeypatch):
    """A kernel manager of this test alone: its replays and call keys are this test's."""
    fresh = kernel_manager.KernelManager(DiskCache(None))
    monkeypatch.setattr(kernel_manager, "_manager", fresh)
    return fresh


@pytest.fixture
def validated(monkeypatch):
    """How many calls were validated (made their Problem): forward and backward."""
    count = {"forward": 0, "backward": 0}
    for name in count:
        real = getattr(functional, f"{name}_problem")

        def counting(*args, _real=real, _name=name, **kwargs):
            count[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(functional, f"{name}_problem", counting)
    return count


def step(layer, x, gy, scale=0.5, momentum=0.9):
    y = layer(x)
    gx = layer.backward(gy, scale=scale, momentum=momentum)
    return [y.get(), gx.get(), layer.vars["W"].grad.get(), layer.vars["b"].grad.get()]


def operands(queue, rng, batch=2):
    x = rng.standard_normal((batch, 6, 5, 7)).astype(np.float32)
    gy = rng.standard_normal((batch, 4, 10, 14)).astype(np.float32)
    return x, gy


def test_later_steps_go_straight_to_their_replays(queue, fresh_manager, validated, monkeypatch):
    rng = np.random.default_rng(21)
    data = [operands(queue, rng) for _ in range(4)]
    layer = dcl.Deconv2D(6, 4, 4, stride=2, pad=1)

    def steps(mode):
        monkeypatch.setenv("DECONVND_CL_REPLAY", mode)
        for var in layer.vars.values():
            var.grad.fill(0)
        return [a for x, gy in data for a in step(layer, to_device(queue, x), to_device(queue, gy))]
    fast = steps("1")
    assert validated == {"forward": 1, "backward": 1}  # the first step only
    assert len(fresh_manager.replayed_calls) == 2
    worked_out = steps("0")
    assert validated == {"forward": 5, "backward": 5}
    for a, e in zip(fast, worked_out):
        assert np.array_equal(a, e), "a call sent to its replay differs from the call worked out anew"
    x, gy = data[-1]
    W = layer.vars["W"].data.get()
    assert_close(fast[-4], reference.forward(x, W, layer.vars["b"].data.get(), stride=2, pad=1), what="y")
    assert_close(fast[-3], reference.backward_data(gy, W, (5, 7), stride=2, pad=1), what="gx")


def test_another_form_scalar_or_switch_is_worked_out(queue, fresh_manager, validated, monkeypatch):
    rng = np.random.default_rng(22)
    layer = dcl.Deconv2D(6, 4, 4, stride=2, pad=1)
    x, gy = operands(queue, rng)
    for _ in range(2):
        step(layer, to_device(queue, x), to_device(queue, gy))
    assert validated == {"forward": 1, "backward": 1}
    x3, gy3 = operands(queue, rng, batch=3)  # another batch
    y = layer(to_device(queue, x3))
    assert_close(y.get(), reference.forward(x3, layer.vars["W"].data.get(), layer.vars["b"].data.get(), stride=2,
                                            pad=1))
    assert validated["forward"] == 2
    layer.backward(to_device(queue, gy3), scale=0.5, momentum=-0.0)  # -0.0 is not 0.0 (a blend bit for bit)
    layer.backward(to_device(queue, gy3), scale=0.5, momentum=0.0)
    layer.backward(to_device(queue, gy3), scale=np.float32(0.5), momentum=0.0)  # no key: validated each time
    layer.backward(to_device(queue, gy3), scale=np.float32(0.5), momentum=0.0)
    assert validated["backward"] == 5
    other = "cpu" if settings.forced_strategy() == "gpu" else "gpu"
    monkeypatch.setenv("DECONVND_CL_STRATEGY", other)  # another strategy's kernels
    y = layer(to_device(queue, x3))
    assert validated["forward"] == 3
    assert_close(y.get(), reference.forward(x3, layer.vars["W"].data.get(), layer.vars["b"].data.get(), stride=2,
                                            pad=1))


def test_invalid_arguments_still_raise(queue, fresh_manager):
    rng = np.random.default_rng(23)
    layer = dcl.Deconv2D(6, 4, 4, stride=2, pad=1)
    x, gy = operands(queue, rng)
    for _ in range(2):
        step(layer, to_device(queue, x), to_device(queue, gy))
    with pytest.raises(ModuleError, match="scale must be a real number"):
        layer.backward(to_device(queue, gy), scale=True)
    with pytest.raises(ModuleError, match="C-contiguous"):
        layer.backward(to_device(queue, np.ascontiguousarray(gy.transpose(0, 1, 3, 2))).transpose((0, 1, 3, 2)))
    with pytest.raises(ModuleError, match="dtype"):
        layer(cla.to_device(queue, x.astype(np.int32)))
    with pytest.raises(ModuleError, match="5 maps"):
        layer(to_device(queue, rng.standard_normal((2, 5, 5, 7)).astype(np.float32)))


def test_a_call_whose_replay_was_refused_is_worked_out_each_time(queue, fresh_manager, validated):
    """A view with an offset is copied (an enqueue a replay would not repeat): its key leads to a refusal."""
    rng = np.random.default_rng(24)
    layer = dcl.Deconv2D(6, 4, 4, stride=2, pad=1)
    x = rng.standard_normal((3, 6, 5, 7)).astype(np.float32)
    x_dev = to_device(queue, x)
    for _ in range(3):
        y = layer(x_dev[1:])
        assert_close(y.get(), reference.forward(x[1:], layer.vars["W"].data.get(), layer.vars["b"].data.get(),
                                                stride=2, pad=1))
    assert validated["forward"] == 3


def test_the_functional_api_goes_straight_to_its_replays(queue, fresh_manager, validated):
    """deconvNd, deconvNdBackwardData and deconvNdBackwardParams: later calls of the same forms are not
    validated again; a float stride, a bool scale, a wgrad of another shape still raise."""
    rng = np.random.default_rng(25)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)
    gy = rng.standard_normal((2, 3, 10, 12)).astype(np.float32)
    dev = {name: to_device(queue, a) for name, a in dict(x=x, W=W, b=b, gy=gy).items()}
    conv = dict(stride=2, pad=1, postpad=1)
    dW, db = reference.backward_params(x, gy, W.shape, stride=2, pad=1)
    for _ in range(3):
        y = deconvNd(dev["x"], dev["W"], dev["b"], **conv)
        gx = deconvNdBackwardData(dev["gy"], dev["W"], dev["x"], stride=2, pad=1)
        wgrad = to_device(queue, np.ones_like(W))
        wgrad_out, bgrad = deconvNdBackwardParams(dev["x"], dev["gy"], dev["W"], dev["b"], stride=2, pad=1,
                                                  wgrad=wgrad, scale=0.5, momentum=2.0)
        assert wgrad_out is wgrad
        assert_close(y.get(), reference.forward(x, W, b, **conv), what="y")
        assert_close(gx.get(), reference.backward_data(gy, W, (5, 6), stride=2, pad=1, postpad=1), what="gx")
        assert_close(wgrad.get(), 0.5 * dW + 2.0, what="wgrad")
        assert_close(bgrad.get(), 0.5 * db, what="bgrad")
    assert validated == {"forward": 1, "backward": 2}
    with pytest.raises(ModuleError):
        deconvNd(dev["x"], dev["W"], dev["b"], stride=2.0, pad=1, postpad=1)
    with pytest.raises(ModuleError, match="scale must be a real number"):
        deconvNdBackwardParams(dev["x"], dev["gy"], dev["W"], dev["b"], stride=2, pad=1, scale=True)
    with pytest.raises(ModuleError, match="wgrad has shape"):
        deconvNdBackwardParams(dev["x"], dev["gy"], dev["W"], dev["b"], stride=2, pad=1,
                               wgrad=to_device(queue, np.ones((4, 3, 3, 2), np.float32)))


@pytest.fixture
def chunks(monkeypatch):
    """The batch chunks calls split into."""
    seen, real = [], functional.batch_chunk
    monkeypatch.setattr(functional, "batch_chunk", lambda p, b0, b1: seen.append((b0, b1)) or real(p, b0, b1))
    return seen


def test_calls_split_along_their_batch_are_worked_out_each_time(queue, fresh_manager, monkeypatch, chunks):
    """A split call's full run tries the whole call first (its key remembered), which gives up for the scratch
    limit; the chunks it then runs, and the copies that gather them, are never recorded under that key, so a
    later call of its forms is worked out again (a replay of the chunks without the copies gave wrong
    gradients)."""
    rng = np.random.default_rng(27)
    x = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)
    W = rng.standard_normal((8, 4, 4, 4)).astype(np.float32)
    gy = rng.standard_normal((4, 4, 32, 32)).astype(np.float32)
    monkeypatch.setenv("DECONVND_CL_SCRATCH_LIMIT", "20K")  # the packed batch does not fit, one item does
    x_dev, W_dev, gy_dev = to_device(queue, x), to_device(queue, W), to_device(queue, gy)
    y_expected = reference.forward(x, W, stride=2, pad=1)
    dW, _ = reference.backward_params(x, gy, W.shape, stride=2, pad=1)
    # the register-tiled weight gradient's scratch passes the limit here; the GPU strategy's does not
    problem = functional.backward_problem(gy_dev, W_dev, x.shape, stride=2, pad=1, dilation=1, groups=1)
    weights_split = implementation("backward_weights", problem).strategy == "cpu"
    for _ in range(3):
        chunks.clear()
        assert_close(deconvNd(x_dev, W_dev, stride=2, pad=1).get(), y_expected, what="y")
        assert chunks, "the forward did not split"
        chunks.clear()
        wgrad, _ = deconvNdBackwardParams(x_dev, gy_dev, W_dev, stride=2, pad=1)
        assert_close(wgrad.get(), dW, what="wgrad")
        assert chunks or not weights_split, "the weight gradient did not split"


def test_a_parameter_whose_contents_can_change_has_no_key(queue, fresh_manager):
    """An iterator, or a view of a dict, hashes by identity: keyed, a later call would replay what it held the
    first time. Such a call is worked out every time: an iterator used up is refused, a view changed is read."""
    rng = np.random.default_rng(28)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    W = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    x_dev, W_dev = to_device(queue, x), to_device(queue, W)
    stride = iter((2, 2))
    assert_close(deconvNd(x_dev, W_dev, stride=stride).get(), reference.forward(x, W, stride=2))
    with pytest.raises(ModuleError, match="stride"):
        deconvNd(x_dev, W_dev, stride=stride)  # used up
    config = {"h": 2, "w": 2}
    for h in (2, 2, 3):
        config["h"] = h
        y = deconvNd(x_dev, W_dev, stride=config.values())
        assert_close(y.get(), reference.forward(x, W, stride=(h, 2)))
