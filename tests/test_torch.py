"""Optional extra oracle: PyTorch's conv_transpose{1,2,3}d (skipped, not failed, without torch)."""

import numpy as np
import pytest

import deconvnd_cl as dcl
from conftest import assert_close, to_device

torch = pytest.importorskip("torch")

CASES = [
    (1, (2, 3, 9), (3, 4, 4), 4, 1, 1, 0, 1),
    (2, (2, 4, 5, 6), (4, 3, 3, 3), 2, 1, 1, 1, 1),
    (2, (1, 6, 4, 4), (6, 1, 3, 3), 1, 2, 2, 1, 6),
    (2, (2, 4, 3, 5), (4, 2, 2, 4), (2, 3), (0, 1), (1, 2), (1, 2), 2),
    (3, (1, 4, 3, 4, 2), (4, 3, 2, 3, 2), 2, 1, 1, 1, 1),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}d-{c[1]}-{c[2]}")
def test_matches_torch_conv_transpose(queue, case):
    nd, xshape, wshape, stride, pad, dilation, postpad, groups = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xshape).astype(np.float32)
    W = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[1] * groups).astype(np.float32)
    fn = getattr(torch.nn.functional, f"conv_transpose{nd}d")
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    yt = fn(xt, Wt, bt, stride=stride, padding=pad, output_padding=postpad, groups=groups, dilation=dilation)
    grad = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(grad, dtype=torch.float64))

    xd, Wd, gd = to_device(queue, x), to_device(queue, W), to_device(queue, grad)
    bd = to_device(queue, b.reshape((1, -1) + (1,) * nd))
    y = dcl.deconvNd(xd, Wd, bd, stride, pad, dilation, postpad, groups)
    assert_close(y.get(), yt.detach().numpy(), what="forward")
    gx = dcl.deconvNdBackwardData(gd, Wd, xd, stride, pad, dilation, groups)
    assert_close(gx.get(), xt.grad.numpy(), what="input grad")
    wgrad, bgrad = dcl.deconvNdBackwardParams(xd, gd, Wd, bd, stride, pad, dilation, groups)
    assert_close(wgrad.get(), Wt.grad.numpy(), what="W grad")
    assert_close(bgrad.get().ravel(), bt.grad.numpy(), what="b grad")
