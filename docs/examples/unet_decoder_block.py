#!/usr/bin/env python3
"""A U-Net decoder block: 2x up-sampling by a k2 s2 Deconv2D, concatenation with the encoder's skip features,
then a 3x3 (k3 s1 p1) layer. Forward and backward, checked against the NumPy reference, with timings.

    python docs/examples/unet_decoder_block.py
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
    up = dcl.Deconv2D(128, 64, size=2, stride=2, name="up")
    fuse = dcl.Deconv2D(128, 64, size=3, pad=1, name="fuse")
    bottom = rng.standard_normal((2, 128, 16, 16)).astype(np.float32)
    skip = rng.standard_normal((2, 64, 32, 32)).astype(np.float32)
    bottom_d = cla.to_device(queue, bottom)

    def forward():
        upsampled = up(bottom_d)                                        # (2, 64, 32, 32)
        merged = cla.to_device(queue, np.concatenate([upsampled.get(), skip], axis=1))
        return merged, fuse(merged)                                     # (2, 64, 32, 32)

    merged, out = forward()
    grad = cla.to_device(queue, rng.standard_normal(out.shape).astype(np.float32))

    def backward():
        g_merged = fuse.backward(grad)
        up_half = np.ascontiguousarray(g_merged.get()[:, :64])           # the up-sampled half's gradient
        return up.backward(cla.to_device(queue, up_half))

    backward()
    queue.finish()
    start = time.perf_counter()
    for _ in range(5):
        merged, out = forward()
        g_bottom = backward()
    queue.finish()
    per_step = (time.perf_counter() - start) / 5

    want_up = reference.forward(bottom, up.W.get(), up.b.get(), 2)
    want_out = reference.forward(merged.get(), fuse.W.get(), fuse.b.get(), 1, 1)
    g_merged = reference.backward_data(grad.get(), fuse.W.get(), (32, 32), 1, 1)
    want_g = reference.backward_data(g_merged[:, :64], up.W.get(), (16, 16), 2)
    errors = {"up-sampling": rel_l2(merged.get()[:, :64], want_up), "block output": rel_l2(out.get(), want_out),
              "input grad": rel_l2(g_bottom.get(), want_g)}
    for name, err in errors.items():
        print(f"{name:<12} relative L2 error vs reference: {err:.1e}")
    print(f"forward + backward of the block: {1e3 * per_step:.1f} ms per step on {queue.device.name.strip()}")
    return 0 if max(errors.values()) < 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
