"""NumPy float64 reference: the three passes written straight from the scatter-add definition.

    y_full[b, g*Cog + co, i*stride + k*dilation] += x[b, ci, i] * W[ci, co, k]      (ci in group g)
    y = y_full[pad : pad + out] (+ bias), out = (in-1)*stride + dilation*(size-1) - 2*pad + 1 + postpad

It shares no index arithmetic with the kernels (only the parameter normalisation), so the tests compare two
independent derivations. Slow but exact; it is the tests' oracle.
"""

from itertools import product

import numpy as np

from .geometry import Geometry


def _setup(x_shape, W_shape, stride, pad, dilation, postpad, groups):
    nd = len(W_shape) - 2
    geo = Geometry.create(nd, W_shape[2:], stride, pad, dilation, postpad, groups)
    in_sp = tuple(x_shape[2:])
    out_sp = geo.out_spatial(in_sp)
    # y_full must hold both the full scatter and the cropped-and-postpadded window
    full = tuple(max((i - 1) * s + d * (k - 1) + 1, p + o)
                 for i, s, d, k, p, o in zip(in_sp, geo.stride, geo.dilation, geo.size, geo.pad, out_sp))
    return geo, in_sp, out_sp, full


def _tap_window(geo, k, in_sp):
    """Slices of y_full that the input grid lands on through tap k."""
    return tuple(slice(kk * d, kk * d + (i - 1) * s + 1, s)
                 for kk, d, s, i in zip(k, geo.dilation, geo.stride, in_sp))


def _crop(geo, out_sp):
    return tuple(slice(p, p + o) for p, o in zip(geo.pad, out_sp))


def forward(x, W, b=None, stride=1, pad=0, dilation=1, postpad=0, groups=1):
    x, W = np.asarray(x, np.float64), np.asarray(W, np.float64)
    geo, in_sp, out_sp, full = _setup(x.shape, W.shape, stride, pad, dilation, postpad, groups)
    N, Cin = x.shape[:2]
    Cog = W.shape[1]
    Cig = Cin // groups
    y_full = np.zeros((N, Cog * groups) + full)
    for k in product(*(range(n) for n in geo.size)):
        window = _tap_window(geo, k, in_sp)
        for g in range(groups):
            xg = x[:, g * Cig:(g + 1) * Cig]
            contrib = np.einsum("bi...,io->bo...", xg, W[g * Cig:(g + 1) * Cig, :, *k])
            y_full[(slice(None), slice(g * Cog, (g + 1) * Cog)) + window] += contrib
    y = y_full[(slice(None), slice(None)) + _crop(geo, out_sp)].copy()
    if b is not None:
        y += np.asarray(b, np.float64).reshape((1, -1) + (1,) * geo.nd)
    return y


def backward_data(grad, W, in_spatial, stride=1, pad=0, dilation=1, groups=1, postpad=None):
    """Input gradient: the adjoint of forward. in_spatial is the forward input's spatial shape."""
    grad, W = np.asarray(grad, np.float64), np.asarray(W, np.float64)
    nd = W.ndim - 2
    if postpad is None:  # the postpad that reproduces grad's shape from in_spatial
        base = Geometry.create(nd, W.shape[2:], stride, pad, dilation, 0, groups)
        postpad = tuple(o - i for o, i in zip(grad.shape[2:], _out_zero_postpad(base, in_spatial)))
    geo, in_sp, out_sp, full = _setup((grad.shape[0], W.shape[0]) + tuple(in_spatial), W.shape,
                                      stride, pad, dilation, postpad, groups)
    N = grad.shape[0]
    Cin, Cog = W.shape[:2]
    Cig = Cin // groups
    g_full = np.zeros((N, Cog * groups) + full)
    g_full[(slice(None), slice(None)) + _crop(geo, out_sp)] = grad
    dx = np.zeros((N, Cin) + in_sp)
    for k in product(*(range(n) for n in geo.size)):
        window = _tap_window(geo, k, in_sp)
        for g in range(groups):
            gg = g_full[(slice(None), slice(g * Cog, (g + 1) * Cog)) + window]
            dx[:, g * Cig:(g + 1) * Cig] += np.einsum("bo...,io->bi...", gg, W[g * Cig:(g + 1) * Cig, :, *k])
    return dx


def backward_params(x, grad, W_shape, stride=1, pad=0, dilation=1, groups=1):
    """(dW, db): gradients of sum(grad * forward(x, W, b)) with respect to W and b."""
    x, grad = np.asarray(x, np.float64), np.asarray(grad, np.float64)
    nd = len(W_shape) - 2
    base = Geometry.create(nd, W_shape[2:], stride, pad, dilation, 0, groups)
    postpad = tuple(o - i for o, i in zip(grad.shape[2:], _out_zero_postpad(base, x.shape[2:])))
    geo, in_sp, out_sp, full = _setup(x.shape, W_shape, stride, pad, dilation, postpad, groups)
    N, Cin = x.shape[:2]
    Cog = W_shape[1]
    Cig = Cin // groups
    g_full = np.zeros((N, Cog * groups) + full)
    g_full[(slice(None), slice(None)) + _crop(geo, out_sp)] = grad
    dW = np.zeros(tuple(W_shape))
    for k in product(*(range(n) for n in geo.size)):
        window = _tap_window(geo, k, in_sp)
        for g in range(groups):
            gg = g_full[(slice(None), slice(g * Cog, (g + 1) * Cog)) + window]
            summed = [0] + list(range(2, 2 + nd))  # batch and spatial axes
            dW[(slice(g * Cig, (g + 1) * Cig), slice(None)) + k] = np.tensordot(
                x[:, g * Cig:(g + 1) * Cig], gg, axes=(summed, summed))
    db = grad.sum(axis=(0,) + tuple(range(2, grad.ndim))).reshape((1, -1) + (1,) * nd)
    return dW, db


def _out_zero_postpad(geo, in_spatial):
    return tuple((i - 1) * s + d * (k - 1) - 2 * p + 1
                 for i, k, s, p, d in zip(in_spatial, geo.size, geo.stride, geo.pad, geo.dilation))


def rel_l2(actual, expected):
    """Relative L2 error of `actual` against `expected`, in float64 (the absolute error when expected is 0)."""
    expected = np.asarray(expected, np.float64)
    diff = np.linalg.norm((np.asarray(actual, np.float64) - expected).ravel())
    scale = np.linalg.norm(expected.ravel())
    return float(diff / scale) if scale > 0 else float(diff)
