"""The demonstration: a DCGAN-style Deconv2D forward and backward on the default device, checked against the
NumPy reference, with the time each pass took."""

import time

import numpy as np
import pyopencl.array as cla

from . import reference
from .deconv import Deconv2D
from .device import default_queue, describe
from .reference import rel_l2


def _timed(queue, fn, repeats=5):
    result = fn()  # warm-up: builds (or loads from the disk cache) and first-launch JIT
    queue.finish()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        queue.finish()
        times.append(time.perf_counter() - start)
    return result, float(np.median(times))


def main(out=print):
    queue = default_queue()
    out(f"device: {describe(queue.device)}")
    rng = np.random.default_rng(0)
    layer = Deconv2D(64, 32, size=4, stride=2, pad=1, name="up1")
    x = rng.standard_normal((8, 64, 16, 16)).astype(np.float32)
    out(f"layer: Deconv2D(64 -> 32, size 4, stride 2, pad 1), input {x.shape} -> "
        f"output {layer.dataShapeFrom(x.shape)}")
    data = cla.to_device(queue, x)
    start = time.perf_counter()
    y = layer(data)
    queue.finish()
    out(f"first call (build or cache load + run): {1e3 * (time.perf_counter() - start):.1f} ms")
    y, t_fwd = _timed(queue, lambda: layer(data))
    grad = cla.to_device(queue, rng.standard_normal(y.shape).astype(np.float32))
    layer.backward(grad)
    _, t_bwd = _timed(queue, lambda: layer.backward(grad))

    W, b = layer.W.get(), layer.b.get()
    checks = {
        "forward": rel_l2(y.get(), reference.forward(x, W, b, 2, 1)),
        "input grad": rel_l2(layer.grad.get(), reference.backward_data(grad.get(), W, x.shape[2:], 2, 1)),
    }
    dW, db = reference.backward_params(x, grad.get(), W.shape, 2, 1)
    checks["W grad"] = rel_l2(layer.vars["W"].grad.get(), dW)
    checks["b grad"] = rel_l2(layer.vars["b"].grad.get(), db)
    flops = layer.numOfFlops(x.shape)
    out(f"forward:  {1e3 * t_fwd:7.2f} ms  ({flops / t_fwd / 1e9:.1f} GFLOP/s)")
    out(f"backward: {1e3 * t_bwd:7.2f} ms  (input grad + W/b grads, {2 * flops / t_bwd / 1e9:.1f} GFLOP/s)")
    ok = all(err <= 1e-5 for err in checks.values())
    for name, err in checks.items():
        out(f"  {name:<10} relative L2 error vs NumPy float64 reference: {err:.2e}")
    out("OK: all passes match the reference" if ok else "FAILED: a pass differs from the reference")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
