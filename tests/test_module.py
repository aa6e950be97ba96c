"""The PuzzleLib module API: shapes, backward with scale/momentum, parameter updates, training, modes."""

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import reference
from conftest import assert_close, to_device


@pytest.mark.parametrize("cls, nd", [(dcl.Deconv1D, 1), (dcl.Deconv2D, 2), (dcl.Deconv3D, 3)])
def test_shorthands_forward_backward(queue, cls, nd):
    layer = cls(4, 6, size=3, stride=2, pad=1, postpad=1, groups=2, initscheme="gaussian", wscale=0.5)
    rng = np.random.default_rng(nd)
    x = rng.standard_normal((2, 4) + (5,) * nd).astype(np.float32)
    y = layer(to_device(queue, x))
    assert y.shape == layer.dataShapeFrom(x.shape) == (2, 6) + (10,) * nd
    assert layer.inData is not None and layer.data is y
    W, b = layer.W.get(), layer.b.get()
    assert_close(y.get(), reference.forward(x, W, b, 2, 1, 1, 1, 2))

    grad = rng.standard_normal(y.shape).astype(np.float32)
    gx = layer.backward(to_device(queue, grad))
    assert gx is layer.grad and gx.shape == x.shape == layer.gradShapeFrom(y.shape)
    assert_close(gx.get(), reference.backward_data(grad, W, x.shape[2:], 2, 1, 1, 2))
    dW, db = reference.backward_params(x, grad, W.shape, 2, 1, 1, 2)
    assert_close(layer.vars["W"].grad.get(), dW)
    assert_close(layer.vars["b"].grad.get(), db)


def test_deconvnd_4d(queue):
    layer = dcl.DeconvND(4, 2, 3, size=(2, 1, 2, 3), stride=(1, 2, 1, 2), pad=(0, 0, 1, 1))
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 2, 3, 2)).astype(np.float32)
    y = layer(to_device(queue, x))
    assert_close(y.get(), reference.forward(x, layer.W.get(), layer.b.get(), (1, 2, 1, 2), (0, 0, 1, 1)))


def make_layer(queue):
    layer = dcl.Deconv2D(3, 4, size=2, stride=2)
    rng = np.random.default_rng(7)
    x = to_device(queue, rng.standard_normal((2, 3, 4, 4)))
    grad = to_device(queue, rng.standard_normal((2, 4, 8, 8)))
    return layer, x, grad


def test_backward_scale_and_momentum_blend(queue):
    layer, x, grad = make_layer(queue)
    layer(x)
    layer.backward(grad)
    w1, b1 = layer.vars["W"].grad.get(), layer.vars["b"].grad.get()
    layer.backward(grad, momentum=1.0)  # momentum 1 accumulates
    assert_close(layer.vars["W"].grad.get(), 2 * w1)
    assert_close(layer.vars["b"].grad.get(), 2 * b1)
    layer.backward(grad, scale=0.5, momentum=0.25)
    assert_close(layer.vars["W"].grad.get(), 0.5 * w1 + 0.25 * 2 * w1)
    assert_close(layer.vars["b"].grad.get(), 0.5 * b1 + 0.25 * 2 * b1)


def test_backward_flags_and_eval_mode(queue):
    layer, x, grad = make_layer(queue)
    layer(x)
    layer.backward(grad, updGrad=False)
    assert layer.grad is None
    w1 = layer.vars["W"].grad.get()
    layer.zeroGradParams()
    assert not layer.vars["W"].grad.get().any()
    layer.backward(grad, updParamGrads=False)
    assert layer.grad is not None and not layer.vars["W"].grad.get().any()
    layer.evalMode()
    layer.backward(grad)
    assert not layer.vars["W"].grad.get().any()
    layer.trainMode()
    layer.backward(grad)
    assert_close(layer.vars["W"].grad.get(), w1)


def test_update_params_sign(queue):
    layer, x, grad = make_layer(queue)
    layer(x)
    layer.backward(grad)
    W0, G = layer.W.get(), layer.vars["W"].grad.get()
    layer.updateParams(0.1)
    assert_close(layer.W.get(), W0 + 0.1 * G)


def test_training_loss_falls(queue):
    """A student layer learns a teacher layer's mapping: MSE falls over 100 updateParams steps."""
    rng = np.random.default_rng(11)
    teacher = dcl.Deconv2D(4, 3, size=4, stride=2, pad=1)
    student = dcl.Deconv2D(4, 3, size=4, stride=2, pad=1)
    x = to_device(queue, rng.standard_normal((4, 4, 6, 6)))
    target = teacher(x).get()
    losses = []
    for _ in range(100):
        y = student(x).get()
        losses.append(0.5 * np.mean((y - target) ** 2))
        student.backward(to_device(queue, (target - y) / y.size))  # PuzzleLib costs return -dL/dy
        student.updateParams(2.0)
    assert losses[-1] < 0.05 * losses[0], losses[::20]


def test_shape_helpers_round_trip(queue):
    layer = dcl.DeconvND(3, 2, 2, size=(3, 2, 4), stride=(2, 3, 1), pad=(1, 0, 2), dilation=(1, 2, 1),
                         postpad=(1, 2, 0))
    shape = (5, 2, 4, 3, 6)
    out = layer.dataShapeFrom(shape)
    assert layer.gradShapeFrom(out) == shape


def test_params_blueprint_and_empty(queue):
    layer = dcl.Deconv2D(4, 6, size=3, groups=2, name="up")
    assert layer.W.shape == (4, 3, 3, 3) and layer.b.shape == (1, 6, 1, 1)
    assert layer.numOfParams() == 4 * 3 * 9 + 6
    assert layer.paramSize() == 4 * layer.numOfParams() and layer.paramSize("kb") == layer.paramSize() / 1024
    blueprint = layer.getBlueprint()
    assert blueprint["classname"] == "Deconv2D" and blueprint["scheme"]["groups"] == 2
    assert blueprint["elements"]["W"][0] == (4, 3, 3, 3)
    empty = dcl.Deconv2D(4, 6, size=3, empty=True)
    assert empty.W is None and empty.b is None
    with pytest.raises(dcl.ModuleError, match="no weights"):
        empty(to_device(queue, np.zeros((1, 4, 3, 3))))
    nobias = dcl.Deconv1D(2, 2, 3, useBias=False)
    assert nobias.b is None and set(nobias.getVarTable()) == {"W"}
    y = nobias(to_device(queue, np.ones((1, 2, 4))))
    nobias.backward(to_device(queue, np.ones(y.shape)))
    var = nobias.getVar("W")
    nobias.setVar("W", dcl.Variable(var.data))
    assert nobias.W is var.data


@pytest.mark.parametrize("scheme, std", [
    ("xavier_uniform", np.sqrt(1 / 64)), (None, np.sqrt(1 / 64)), ("xavier", np.sqrt(1 / 64)),
    ("he", np.sqrt(2 / 64)), (("he", "out"), np.sqrt(2 / 128)), (("xavier_normal", "avg"), np.sqrt(1 / 64)),
    ("gaussian", 0.3), ("uniform", 0.3 / np.sqrt(3)),
])
def test_initschemes(queue, scheme, std):
    layer = dcl.Deconv2D(16, 16, size=2, initscheme=scheme, wscale=0.3, useBias=False)  # fan-in 64, fan-out 64
    if isinstance(scheme, tuple) and scheme[1] == "out":
        layer = dcl.Deconv2D(16, 32, size=2, initscheme=scheme, wscale=0.3, useBias=False)  # fan-out 128
    W = layer.W.get()
    assert abs(W.std() - std) < 0.15 * std and abs(W.mean()) < 0.15 * std + 1e-3


def test_calc_mode_float64(queue, fp64):
    layer = dcl.Deconv2D(3, 2, size=3, stride=2, pad=1)
    layer.calcMode(np.float64)
    assert layer.W.dtype == np.float64 and layer.vars["W"].grad.dtype == np.float64
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    y = layer(to_device(queue, x, np.float64))
    assert_close(y.get(), reference.forward(x, layer.W.get(), layer.b.get(), 2, 1), np.float64)
    grad = np.random.default_rng(1).standard_normal(y.shape)
    layer.backward(to_device(queue, grad, np.float64))
    dW, db = reference.backward_params(x, grad, layer.W.shape, 2, 1)
    assert_close(layer.vars["W"].grad.get(), dW, np.float64)
    with pytest.raises(dcl.ModuleError, match="dtype float32"):
        layer(to_device(queue, x, np.float32))
    with pytest.raises(dcl.ModuleError, match="int32"):
        layer.calcMode(np.int32)
