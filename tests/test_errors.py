"""Every validation rule (docs/guide.md, Errors) raises ModuleError naming the value, before any compile or
launch, and a failed call leaves parameters and gradients as they were."""

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

import deconvnd_cl as dcl
from conftest import to_device


CONSTRUCTOR_ERRORS = [
    (dict(nd=0), "nd must be a positive int"),
    (dict(size=0), "size must be positive"),
    (dict(size=(3, -1)), "size must be positive"),
    (dict(stride=0), "stride must be positive"),
    (dict(dilation=(1, 0)), "dilation must be positive"),
    (dict(pad=-1), "pad must be non-negative"),
    (dict(stride=2, postpad=2), "postpad .* must be smaller than max\\(stride, dilation\\) = 2"),
    (dict(postpad=1), "postpad .* must be smaller than max\\(stride, dilation\\) = 1"),
    (dict(size=(3, 3, 3)), "size must be an int or a tuple of 2 ints"),
    (dict(size="3"), "size must be an int or a tuple of 2 ints"),
    (dict(groups=3), "groups \\(3\\) must divide inmaps \\(4\\)"),
    (dict(groups=0), "groups must be a positive int"),
    (dict(inmaps=0), "inmaps must be a positive int"),
]


@pytest.mark.parametrize("override, message", CONSTRUCTOR_ERRORS, ids=[m[:28] for _, m in CONSTRUCTOR_ERRORS])
def test_constructor_validation(no_launch, override, message):
    kwargs = dict(nd=2, inmaps=4, outmaps=6, size=3)
    kwargs.update(override)
    with pytest.raises(dcl.ModuleError, match=message):
        dcl.DeconvND(**kwargs)


def test_groups_must_divide_outmaps(no_launch):
    with pytest.raises(dcl.ModuleError, match="groups \\(2\\) must divide outmaps \\(5\\)"):
        dcl.Deconv2D(4, 5, 3, groups=2)


@pytest.fixture
def layer(queue):
    return dcl.Deconv2D(4, 6, size=3, stride=2, pad=1)


def test_call_validation(queue, layer, no_launch):
    with pytest.raises(dcl.ModuleError, match="Data must be 4d tensor"):
        layer(to_device(queue, np.zeros((1, 4, 5))))
    with pytest.raises(dcl.ModuleError, match="Data has 3 maps \\(expected: 4\\)"):
        layer(to_device(queue, np.zeros((1, 3, 5, 5))))
    with pytest.raises(dcl.ModuleError, match="dtype float64 \\(expected: float32\\)"):
        layer(to_device(queue, np.zeros((1, 4, 5, 5)), np.float64))
    with pytest.raises(dcl.ModuleError, match="pyopencl.array.Array"):
        layer(np.zeros((1, 4, 5, 5), np.float32))


def test_output_size_not_positive(queue, no_launch):
    layer = dcl.Deconv1D(1, 1, size=1, pad=2)
    with pytest.raises(dcl.ModuleError, match="Output spatial size \\(-3,\\) is not positive"):
        layer(to_device(queue, np.zeros((1, 1, 1))))


def test_grad_shape_and_dtype(queue, layer):
    x = to_device(queue, np.ones((2, 4, 5, 5)))
    y = layer(x)
    layer.backward(to_device(queue, np.ones(y.shape)))
    before = layer.vars["W"].grad.get(), layer.vars["b"].grad.get(), layer.grad
    with pytest.raises(dcl.ModuleError, match="Grad has shape \\(2, 6, 9, 8\\) \\(expected: \\(2, 6, 9, 9\\)\\)"):
        layer.backward(to_device(queue, np.ones((2, 6, 9, 8))))
    with pytest.raises(dcl.ModuleError, match="grad has dtype float64"):
        layer.backward(to_device(queue, np.ones(y.shape), np.float64))
    np.testing.assert_array_equal(layer.vars["W"].grad.get(), before[0])
    np.testing.assert_array_equal(layer.vars["b"].grad.get(), before[1])
    assert layer.grad is before[2]


def test_functional_validation(queue, no_launch):
    x = to_device(queue, np.ones((1, 4, 3, 3)))
    W = to_device(queue, np.ones((4, 2, 3, 3)))
    with pytest.raises(dcl.ModuleError, match="W has 3 input maps \\(expected: 4"):
        dcl.deconvNd(x, to_device(queue, np.ones((3, 2, 3, 3))))
    with pytest.raises(dcl.ModuleError, match="groups \\(3\\) must divide inmaps \\(4\\)"):
        dcl.deconvNd(x, W, groups=3)
    with pytest.raises(dcl.ModuleError, match="bias has shape \\(1, 3, 1, 1\\) \\(expected: \\(1, 2, 1, 1\\)\\)"):
        dcl.deconvNd(x, W, to_device(queue, np.ones((1, 3, 1, 1))))
    with pytest.raises(dcl.ModuleError, match="W has dtype float64"):
        dcl.deconvNd(x, to_device(queue, np.ones((4, 2, 3, 3)), np.float64))
    with pytest.raises(dcl.ModuleError, match="grad has 3 dimensions \\(expected: 4\\)"):
        dcl.deconvNdBackwardData(to_device(queue, np.ones((1, 2, 5))), W)
    with pytest.raises(dcl.ModuleError, match="W gives 2 output maps \\(expected: 5"):
        dcl.deconvNdBackwardData(to_device(queue, np.ones((1, 5, 5, 5))), W, x)
    with pytest.raises(dcl.ModuleError, match="grad has spatial shape \\(4, 5\\)"):
        dcl.deconvNdBackwardParams(x, to_device(queue, np.ones((1, 2, 4, 5))), W)
    with pytest.raises(dcl.ModuleError, match="wgrad has shape"):
        dcl.deconvNdBackwardParams(x, to_device(queue, np.ones((1, 2, 5, 5))), W,
                                   wgrad=to_device(queue, np.ones((4, 2, 3, 2))))


def test_gy_in_place_tile_needs_a_fitting_layer(queue, no_launch):
    """The weight gradient reads gy in place with kernel size = stride, no pad, no dilation and a last stride
    <= 2; backward data with a last stride of 1 or 2 (no last-axis dilation with 2), input rows of at least TN
    positions, border lanes within a vector, two vectors a tap group where borders are read, and inner tiles
    inside gy (gy_in_place.constraints)."""
    x = to_device(queue, np.ones((1, 4, 3, 12)))
    gy = to_device(queue, np.ones((1, 2, 7, 25)))
    W = to_device(queue, np.ones((4, 2, 3, 3)))
    with pytest.raises(dcl.ModuleError, match="needs kernel size = stride"):
        dcl.deconvNdBackwardParams(x, gy, W, stride=2, tile=(3, 4, 8, "in_place"))
    W2 = to_device(queue, np.ones((4, 2, 2, 2)))
    gy2 = to_device(queue, np.ones((1, 2, 6, 24)))
    with pytest.raises(dcl.ModuleError, match="input rows of at least tn = 16 positions"):
        dcl.deconvNdBackwardData(gy2, W2, x, stride=2, tile=(6, 16, 8, "in_place"))
    last_stride = "a last-axis stride of 1, or of 2 without last-axis dilation"
    with pytest.raises(dcl.ModuleError, match=last_stride):
        dcl.deconvNdBackwardData(to_device(queue, np.ones((1, 2, 9, 36))), W, x, stride=3, tile=(6, 8, 8, "in_place"))
    with pytest.raises(dcl.ModuleError, match=last_stride):
        dcl.deconvNdBackwardData(to_device(queue, np.ones((1, 2, 9, 27))), W, x, stride=2, dilation=2,
                                 tile=(6, 8, 8, "in_place"))
    with pytest.raises(dcl.ModuleError, match="at least two vectors a tap group"):
        dcl.deconvNdBackwardData(to_device(queue, np.ones((1, 2, 5, 23))), W, x, stride=2, pad=1,
                                 tile=(6, 4, 8, "in_place"))
    x20, x17 = to_device(queue, np.ones((1, 4, 3, 20))), to_device(queue, np.ones((1, 4, 3, 17)))
    with pytest.raises(dcl.ModuleError, match="border lanes within one vector of 8"):
        dcl.deconvNdBackwardData(to_device(queue, np.ones((1, 2, 3, 12))), to_device(queue, np.ones((4, 2, 1, 9))),
                                 x20, pad=(0, 8), tile=(6, 16, 8, "in_place"))
    with pytest.raises(dcl.ModuleError, match="inner tiles of tn = 16 read inside gy's rows"):
        dcl.deconvNdBackwardData(to_device(queue, np.ones((1, 2, 3, 17))), to_device(queue, np.ones((4, 2, 1, 7))),
                                 x17, pad=(0, 3), tile=(6, 16, 8, "in_place"))


def test_non_contiguous_view_rejected(queue, no_launch):
    x = to_device(queue, np.ones((1, 4, 6, 6)))[:, :, :, ::2]
    W = to_device(queue, np.ones((4, 2, 3, 3)))
    with pytest.raises(dcl.ModuleError, match="data must be C-contiguous"):
        dcl.deconvNd(x, W)


def test_array_from_another_context(queue, no_launch):
    other = cl.CommandQueue(cl.Context([queue.device]))
    x = to_device(queue, np.ones((1, 4, 3, 3)))
    W_other = cla.to_device(other, np.ones((4, 2, 3, 3), np.float32))
    with pytest.raises(dcl.ModuleError, match="W belongs to another OpenCL context"):
        dcl.deconvNd(x, W_other)


def test_too_large_for_device(queue, no_launch):
    """An output over max_mem_alloc_size is refused before anything is allocated or launched."""
    limit = queue.device.max_mem_alloc_size
    length = 64
    stride = limit // 4 // (length - 1) + 2
    x = to_device(queue, np.ones((1, 1, length)))
    W = to_device(queue, np.ones((1, 1, 1)))
    with pytest.raises(dcl.ModuleError, match=f"max_mem_alloc_size of {limit} bytes"):
        dcl.deconvNd(x, W, stride=stride)


def test_gradient_output_views_rejected(queue, no_launch):
    x = to_device(queue, np.ones((1, 4, 3, 3)))
    W = to_device(queue, np.ones((4, 2, 3, 3)))
    big = to_device(queue, np.ones((2, 4, 2, 3, 3)))
    with pytest.raises(dcl.ModuleError, match="wgrad is a view at offset"):
        dcl.deconvNdBackwardParams(x, to_device(queue, np.ones((1, 2, 5, 5))), W, wgrad=big[1])


@pytest.mark.parametrize("name, value", [("scale", "0.5"), ("momentum", None), ("scale", True),
                                         ("momentum", np.ones(2)), ("scale", 1j)])
def test_blend_factors_must_be_real_numbers(queue, name, value):
    x = to_device(queue, np.ones((1, 4, 3, 3)))
    gy = to_device(queue, np.ones((1, 2, 5, 5)))
    layer = dcl.Deconv2D(4, 2, 3)
    layer(x)
    wgrad = layer.vars["W"].grad.get()
    with pytest.raises(dcl.ModuleError, match=f"{name} must be a real number"):
        layer.backward(gy, **{name: value})
    assert np.array_equal(layer.vars["W"].grad.get(), wgrad)


@pytest.mark.parametrize("name, value, message", [("scale", "0.5", "scale must be a real number"),
                                                  ("momentum", np.ones(2), "momentum must be a real number"),
                                                  ("scale", 10**400, "scale = 1000.* is out of a float's range")])
def test_blend_factors_are_checked_before_any_launch(queue, no_launch, name, value, message):
    x = to_device(queue, np.ones((1, 4, 3, 3)))
    W = to_device(queue, np.ones((4, 2, 3, 3)))
    gy = to_device(queue, np.ones((1, 2, 5, 5)))
    with pytest.raises(dcl.ModuleError, match=message):
        dcl.deconvNdBackwardParams(x, gy, W, **{name: value})
