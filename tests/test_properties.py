"""Properties that tie the three passes together, and explicit-loop checks written from the definition."""

from itertools import product

import numpy as np
import pytest

import deconvnd_cl as dcl
from conftest import assert_close, to_device

ADJOINT_CASES = [
    # (batch, cin, cout, spatial, size, stride, pad, dilation, postpad, groups)
    (2, 3, 4, (6,), (3,), (2,), (1,), (1,), (1,), 1),
    (1, 4, 6, (5, 4), (4, 4), (2, 2), (1, 1), (1, 1), (0, 0), 2),
    (2, 6, 6, (3, 5), (3, 2), (3, 1), (2, 0), (2, 3), (2, 1), 6),
    (1, 2, 3, (3, 3, 2), (2, 3, 2), (2, 1, 3), (0, 1, 1), (1, 2, 1), (1, 0, 2), 1),
    (1, 2, 2, (2, 3, 2, 2), (2, 1, 2, 2), (1, 2, 1, 2), (0, 0, 1, 0), (1, 1, 1, 2), (0, 1, 0, 1), 2),
]


def case_id(case):
    return f"{len(case[3])}d-s{'x'.join(map(str, case[5]))}-g{case[9]}"


@pytest.mark.parametrize("case", ADJOINT_CASES, ids=case_id)
def test_adjoint_identity(queue, case):
    """<y, T(x)> == <T^T(y), x>: backward data is the exact adjoint of forward."""
    n, cin, cout, sp, k, s, p, d, pp, g = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, cin) + sp)
    W = rng.standard_normal((cin, cout // g) + k)
    Wd = to_device(queue, W)
    Tx = dcl.deconvNd(to_device(queue, x), Wd, None, s, p, d, pp, g).get()
    y = rng.standard_normal(Tx.shape)
    Tty = dcl.deconvNdBackwardData(to_device(queue, y), Wd, to_device(queue, x), s, p, d, g).get()
    lhs, rhs = np.vdot(y, Tx.astype(np.float64)), np.vdot(Tty.astype(np.float64), x)
    assert abs(lhs - rhs) <= 1e-5 * (np.linalg.norm(y) * np.linalg.norm(Tx) + 1e-30)


def direct_convolution(grad, W, in_spatial, stride, pad, dilation, groups):
    """Strided direct convolution written as loops: gx[b, ci, i] = sum gy[b, co, i*s + k*d - p] * W[ci, co, k]."""
    n, cout = grad.shape[:2]
    cin, cog = W.shape[:2]
    cig = cin // groups
    out_sp = grad.shape[2:]
    gx = np.zeros((n, cin) + tuple(in_spatial))
    for b, ci in product(range(n), range(cin)):
        grp = ci // cig
        for i in product(*(range(e) for e in in_spatial)):
            total = 0.0
            for co in range(cog):
                for k in product(*(range(e) for e in W.shape[2:])):
                    j = tuple(ii * s + kk * dd - pp for ii, kk, s, dd, pp in zip(i, k, stride, dilation, pad))
                    if all(0 <= jj < o for jj, o in zip(j, out_sp)):
                        total += grad[(b, grp * cog + co) + j] * W[(ci, co) + k]
            gx[(b, ci) + i] = total
    return gx


@pytest.mark.parametrize("case", ADJOINT_CASES[:4], ids=case_id)
def test_backward_data_is_a_direct_convolution(queue, case):
    n, cin, cout, sp, k, s, p, d, pp, g = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, cin) + sp)
    W = rng.standard_normal((cin, cout // g) + k)
    out = tuple((i - 1) * ss + dd * (kk - 1) - 2 * ppad + 1 + post
                for i, kk, ss, ppad, dd, post in zip(sp, k, s, p, d, pp))
    grad = rng.standard_normal((n, cout) + out)
    got = dcl.deconvNdBackwardData(to_device(queue, grad), to_device(queue, W), to_device(queue, x), s, p, d, g)
    assert_close(got.get(), direct_convolution(grad, W, sp, s, p, d, g))


def explicit_forward(x, W, b, stride, pad, dilation, postpad, groups):
    """The scatter-add definition as PuzzleLib's tests write it: one loop per index, no vectorisation."""
    n, cin = x.shape[:2]
    cog = W.shape[1]
    cig = cin // groups
    size = W.shape[2:]
    out = tuple((i - 1) * s + d * (k - 1) - 2 * p + 1 + pp
                for i, k, s, p, d, pp in zip(x.shape[2:], size, stride, pad, dilation, postpad))
    y = np.zeros((n, cog * groups) + out)
    for bb, ci in product(range(n), range(cin)):
        grp = ci // cig
        for i in product(*(range(e) for e in x.shape[2:])):
            for co, k in product(range(cog), product(*(range(e) for e in size))):
                o = tuple(ii * s + kk * d - p for ii, kk, s, d, p in zip(i, k, stride, dilation, pad))
                if all(0 <= oo < e for oo, e in zip(o, out)):
                    y[(bb, grp * cog + co) + o] += x[(bb, ci) + i] * W[(ci, co) + k]
    return y + b.reshape((1, -1) + (1,) * len(out))


TINY = [
    (1, 1, 1, (3,), (2,), (2,), (0,), (1,), (0,), 1),
    (1, 2, 2, (2, 2), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1),
    (2, 2, 4, (3, 2), (2, 2), (1, 3), (0, 1), (2, 1), (1, 2), 2),
    (1, 3, 3, (2, 2, 2), (2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), (0, 0, 0), 3),
]


@pytest.mark.parametrize("case", TINY, ids=case_id)
def test_forward_matches_explicit_loops(queue, case):
    n, cin, cout, sp, k, s, p, d, pp, g = case
    rng = np.random.default_rng(3)
    x = rng.integers(-4, 5, (n, cin) + sp)
    W = rng.integers(-4, 5, (cin, cout // g) + k)
    b = rng.integers(-4, 5, (1, cout) + (1,) * len(sp))
    got = dcl.deconvNd(to_device(queue, x), to_device(queue, W), to_device(queue, b), s, p, d, pp, g).get()
    np.testing.assert_array_equal(got, explicit_forward(x, W, b, s, p, d, pp, g))


def test_seed_example_stride_as_zero_insertion(queue):
    """The seed page's picture: stride 2 deconvolution = zeros inserted between inputs, then a full convolution
    with the flipped kernel (here checked on a 2x2 map and a 3x3 kernel)."""
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    W = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    dilated = np.zeros((3, 3))
    dilated[::2, ::2] = x[0, 0]
    padded = np.pad(dilated, 2)
    flipped = W[0, 0, ::-1, ::-1]
    expected = np.array([[np.sum(padded[r:r + 3, c:c + 3] * flipped) for c in range(5)] for r in range(5)])
    got = dcl.deconvNd(to_device(queue, x), to_device(queue, W), None, stride=2).get()
    np.testing.assert_array_equal(got[0, 0], expected)
