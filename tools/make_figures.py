#!/usr/bin/env python3
"""Draw the figures of docs/math.md (PNG, into docs/figures/) from the library's own reference.

    python tools/make_figures.py        # needs matplotlib (the `bench` extra)
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deconvnd_cl import reference  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures"


def cells(ax, row, values, x0=0, color="#cfe2f3", label=None, fmt="{:g}", hide_zero=False):
    for i, v in enumerate(values):
        face = color if not (hide_zero and v == 0) else "#f4f4f4"
        ax.add_patch(plt.Rectangle((x0 + i, -row), 1, 0.8, facecolor=face, edgecolor="#555"))
        if not (hide_zero and v == 0):
            ax.text(x0 + i + 0.5, -row + 0.4, fmt.format(v), ha="center", va="center", fontsize=8)
    if label:
        ax.text(-0.4, -row + 0.4, label, ha="right", va="center", fontsize=8)


def finish(ax, fig, name, width, rows):
    ax.set_xlim(-6, width + 0.5)
    ax.set_ylim(-rows - 0.5, 1.2)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT / name, dpi=130)
    plt.close(fig)


def scatter_add():
    """1d, size 3, stride 2: every input element scatters a scaled copy of the kernel; the output is the sum."""
    x, w, s = np.array([1.0, 2.0, 3.0]), np.array([1.0, 10.0, 100.0]), 2
    full = (len(x) - 1) * s + len(w)
    fig, ax = plt.subplots(figsize=(7, 2.6))
    cells(ax, 0, x, x0=0, color="#fde2c8", label="x")
    cells(ax, 0, w, x0=5, color="#d9ead3")
    ax.text(4.6, 0.4, "W", ha="right", va="center", fontsize=8)
    for i, xi in enumerate(x):
        row = np.zeros(full)
        row[i * s:i * s + len(w)] = xi * w
        cells(ax, 1.2 + i, row, label=f"x[{i}]*W at {i}*stride", hide_zero=True)
    y = reference.forward(x.reshape(1, 1, -1), w.reshape(1, 1, -1), stride=s)[0, 0]
    cells(ax, 4.6, y, color="#cfe2f3", label="y = sum")
    ax.set_title("Transposed convolution as a scatter-add (size 3, stride 2)", fontsize=9)
    finish(ax, fig, "scatter_add.png", full + 1.5, 5)


def stride_as_zero_insertion():
    """2d: stride 2 = zeros inserted between inputs, border of size-1, then a plain convolution (flipped W)."""
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    dilated = np.zeros((3, 3))
    dilated[::2, ::2] = x
    padded = np.pad(dilated, 2)
    y = reference.forward(x.reshape(1, 1, 2, 2), np.ones((1, 1, 3, 3)), stride=2)[0, 0]
    fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
    for ax, image, title in zip(axes, (x, padded, y), ("input 2x2", "zeros inserted (stride 2), padded by size-1",
                                                       "output 5x5 (W = ones)")):
        ax.imshow(image, cmap="Blues", vmin=0, vmax=max(10, image.max()))
        for (r, c), v in np.ndenumerate(image):
            ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(OUT / "stride_zero_insertion.png", dpi=130)
    plt.close(fig)


def pad_and_postpad():
    """1d: pad crops the full scatter at both ends; postpad adds cells at the end (zero unless a tap lands)."""
    n, k, s, p, pp = 4, 3, 2, 1, 1
    full = (n - 1) * s + k
    out = full - 2 * p + pp
    y = reference.forward(np.ones((1, 1, n)), np.ones((1, 1, k)), stride=s, pad=p, postpad=pp)[0, 0]
    full_y = reference.forward(np.ones((1, 1, n)), np.ones((1, 1, k)), stride=s)[0, 0]
    fig, ax = plt.subplots(figsize=(7, 1.9))
    cells(ax, 0, full_y, label="full scatter")
    cells(ax, 1.2, y, x0=p, color="#d9ead3", label=f"pad={p}, postpad={pp}")
    ax.add_patch(plt.Rectangle((p + out - pp, -1.2), pp, 0.8, fill=False, edgecolor="red", linewidth=2))
    ax.text(p + out + 0.2, -0.8, "postpad", color="red", fontsize=8, va="center")
    ax.set_title(f"in={n}, size={k}, stride={s}: out = (in-1)*stride + size - 2*pad + postpad = {out}",
                 fontsize=9)
    finish(ax, fig, "pad_postpad.png", full + 2, 2)


def dilation():
    """1d: dilation spreads the kernel taps apart."""
    fig, ax = plt.subplots(figsize=(7, 1.9))
    w = np.array([1.0, 2.0, 3.0])
    for row, d in enumerate((1, 2, 3)):
        spread = np.zeros(d * (len(w) - 1) + 1)
        spread[::d] = w
        cells(ax, row * 1.1, spread, color="#d9ead3", label=f"dilation {d}", hide_zero=True)
    ax.set_title("Dilation: the effective kernel size is dilation*(size-1)+1", fontsize=9)
    finish(ax, fig, "dilation.png", 8, 3)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for draw in (scatter_add, stride_as_zero_insertion, pad_and_postpad, dilation):
        draw()
    print("figures written to", OUT)
