#!/usr/bin/env python3
"""A DCGAN-style generator (latent 16x1x1 -> 1x16x16) trained by regression on synthetic data.

Each latent code places a Gaussian blob: the generator must learn to draw the blob where the code says.
Trained with plain SGD through PuzzleLib's backward/updateParams; prints the loss as it falls and saves a PNG
grid of generated images next to this script (or to the path given as the first argument).
Activations run on the device too (pyopencl's elementwise kernels).

    python docs/examples/dcgan_generator.py [grid.png]
"""

import sys
import time
from pathlib import Path

import numpy as np
import pyopencl.array as cla
import pyopencl.clmath as clmath

import deconvnd_cl as dcl

LATENT, SIDE, BATCH, STEPS = 16, 16, 32, 600


def synthetic_batch(rng, n):
    """Latent codes and the images they should produce: a blob at the position coded by z[0], z[1]."""
    z = rng.uniform(-1, 1, (n, LATENT)).astype(np.float32)
    grid = np.arange(SIDE)
    cy, cx = (z[:, 0] + 1) * (SIDE - 1) / 2, (z[:, 1] + 1) * (SIDE - 1) / 2
    blobs = np.exp(-((grid[None, :, None] - cy[:, None, None]) ** 2 + (grid[None, None, :] - cx[:, None, None]) ** 2)
                   / 18.0)
    return z.reshape(n, LATENT, 1, 1), (2 * blobs - 1).astype(np.float32)[:, None]


class Generator:
    def __init__(self):
        self.layers = [
            dcl.Deconv2D(LATENT, 64, size=4, name="g1", initscheme="he"),            # 1x1 -> 4x4
            dcl.Deconv2D(64, 32, size=4, stride=2, pad=1, name="g2", initscheme="he"),  # -> 8x8
            dcl.Deconv2D(32, 1, size=4, stride=2, pad=1, name="g3"),                    # -> 16x16
        ]

    def __call__(self, z):
        self.hidden = []
        h = z
        for layer in self.layers[:-1]:
            y = layer(h)
            h = cla.if_positive(y, y, cla.zeros_like(y))  # ReLU
            self.hidden.append(h)
        self.out = clmath.tanh(self.layers[-1](h))
        return self.out

    def backward(self, grad):
        grad = grad * (1 - self.out * self.out)  # through tanh
        for layer, h in zip(reversed(self.layers), [None] + list(reversed(self.hidden))):
            if h is not None:
                grad = cla.if_positive(h, grad, cla.zeros_like(grad))  # through ReLU
            grad = layer.backward(grad)

    def update(self, lr):
        for layer in self.layers:
            layer.updateParams(lr)


def write_png(path, image):
    """A greyscale uint8 image as PNG (matplotlib, the `bench` and `test` extras)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.imsave(path, image, cmap="gray", vmin=0, vmax=255)


def image_grid(images, cols=8, pad=1):
    n = len(images)
    rows = (n + cols - 1) // cols
    grid = np.zeros((rows * (SIDE + pad) + pad, cols * (SIDE + pad) + pad), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (SIDE + pad):pad + r * (SIDE + pad) + SIDE, pad + c * (SIDE + pad):pad + c * (SIDE + pad) + SIDE] = \
            np.clip((img + 1) * 127.5, 0, 255).astype(np.uint8)
    return grid


def main(png_path):
    queue = dcl.default_queue()
    rng = np.random.default_rng(0)
    gen = Generator()
    start, losses = time.perf_counter(), []
    for step in range(STEPS + 1):
        z, target = synthetic_batch(rng, BATCH)
        out = gen(cla.to_device(queue, z))
        diff = cla.to_device(queue, target) - out
        losses.append(float(0.5 * cla.dot(diff, diff).get() / diff.size))
        gen.backward(diff * (1.0 / BATCH))  # PuzzleLib's convention: the cost returns -dL/dy
        gen.update(0.01)
        if step % 50 == 0:
            print(f"step {step:4d}  loss {np.mean(losses[-50:]):.4f}", flush=True)
    z, target = synthetic_batch(np.random.default_rng(1), 16)
    samples = gen(cla.to_device(queue, z)).get()[:, 0]
    write_png(png_path, image_grid(list(target[:, 0]) + list(samples)))
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    print(f"loss {first:.4f} -> {last:.4f} in {time.perf_counter() - start:.1f} s; "
          f"targets (top rows) and samples (bottom rows) saved to {png_path}")
    return 0 if last < 0.5 * first else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("dcgan_samples.png")))
