#!/usr/bin/env python3
"""A V-Net style 3d up-sampling block: Deconv3D k2 s2 (16^3 -> 32^3 would be the full size; 8^3 -> 16^3 here),
followed by a k3 p1 refinement, forward and backward, checked against the NumPy reference.

    python docs/examples/vnet_upsampling_3d.py
"""

import time

import numpy as np
import pyopencl.array as cla

import deconvnd_cl as dcl
from deconvnd_cl import reference
from deconvnd_cl.reference import rel_l2


def main():
    queue = dcl.default_queue()
    rng = np.random.default_rng(0)
    up = dcl.Deconv3D(32, 16, size=2, stride=2, name="up3d")
    refine = dcl.Deconv3D(16, 16, size=3, pad=1, name="refine3d")
    x = rng.standard_normal((2, 32, 8, 8, 8)).astype(np.float32)
    xd = cla.to_device(queue, x)
    start = time.perf_counter()
    h = up(xd)
    y = refine(h)
    grad = cla.to_device(queue, rng.standard_normal(y.shape).astype(np.float32))
    gx = up.backward(refine.backward(grad))
    queue.finish()
    print(f"shapes: {x.shape} -> {h.shape} -> {y.shape}; first step (with kernel builds or cache loads) "
          f"{time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    for _ in range(5):
        refine(up(xd))
        gx = up.backward(refine.backward(grad))
    queue.finish()
    print(f"forward + backward: {1e3 * (time.perf_counter() - start) / 5:.1f} ms per step")
    want_h = reference.forward(x, up.W.get(), up.b.get(), 2)
    want_y = reference.forward(want_h, refine.W.get(), refine.b.get(), 1, 1)
    g_h = reference.backward_data(grad.get(), refine.W.get(), (16, 16, 16), 1, 1)
    want_gx = reference.backward_data(g_h, up.W.get(), (8, 8, 8), 2)
    dW, _ = reference.backward_params(x, g_h, up.W.shape, 2)
    errors = {"output": rel_l2(refine.data.get(), want_y), "input grad": rel_l2(gx.get(), want_gx),
              "W grad": rel_l2(up.vars["W"].grad.get(), dW)}
    for name, err in errors.items():
        print(f"{name:<10} relative L2 error vs reference: {err:.1e}")
    return 0 if max(errors.values()) < 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
