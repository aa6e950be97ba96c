"""Splitting a call along its outermost spatial axis ("rows"), for when the scratch of even one batch item does not
fit (the functional layer tries the batch first).

Each batch item is then computed in chunks of rows; each chunk is an ordinary call of one item, with pad 0 and the
rows it needs on that axis, so its scratch shrinks with it:

- forward: output rows [o0, o1) come from input rows [a, b), every row that reaches them (a halo of about
  size * dilation / stride rows); the chunk computes its whole output with no crop on that axis, and rows
  o0 - (a * stride - pad) onward of it are the wanted ones. Each output element sums the same products in the same
  order as in the unsplit call: the same bits.
- backward: input rows [i0, i1) read output-gradient rows [i0 * stride - pad, ...), zero outside gy; their input
  gradient is those rows of the unsplit call's (the same bits), and their weight gradient a part of the sum,
  added in chunk order. The bias gradient (gy summed per map, reduction.BiasGradient) is computed once over the
  whole gy.

Rows move between the caller's arrays and the chunks by rectangular copies on the device, one per chunk.
"""

import dataclasses

import pyopencl as cl

from . import memory, reduction
from .errors import ScratchTooLarge
from .geometry import Geometry


def _on_axis0(values, first):
    return (first,) + tuple(values[1:])


def chunk_problem(problem, in_rows, out_rows, postpad=0):
    """The call on in_rows input rows and out_rows output rows of the first spatial axis, with pad 0 there."""
    g = problem.geo
    geo = Geometry.create(g.nd, g.size, g.stride, _on_axis0(g.pad, 0), g.dilation, _on_axis0(g.postpad, postpad),
                          g.groups)
    sub = dataclasses.replace(problem, geo=geo, in_sp=_on_axis0(problem.in_sp, in_rows),
                              out_sp=_on_axis0(problem.out_sp, out_rows))
    assert geo.out_spatial(sub.in_sp) == sub.out_sp, (sub.in_sp, sub.out_sp)
    return sub


def forward_window(problem, o0, o1):
    """(a, b, chunk problem, offset): output rows [o0, o1) of the call are rows [offset, offset + o1 - o0) of the
    chunk's output, computed from input rows [a, b) with pad 0 on the first spatial axis."""
    n, s, p = problem.in_sp[0], problem.geo.stride[0], problem.geo.pad[0]
    reach = problem.geo.dilation[0] * (problem.geo.size[0] - 1)
    a = max(0, min(-(-(o0 + p - reach) // s), (o0 + p) // s, n - 1))  # from the first row reaching o0, starting <= o0
    b = max(min(n, (o1 - 1 + p) // s + 1), a + 1)                      # to the last row reaching o1 - 1
    b = max(b, min(n, -(-(o1 - 1 + p - reach) // s) + 1))             # ... and far enough to cover it
    start = a * s - p
    full = (b - a - 1) * s + reach + 1
    postpad = max(0, o1 - (start + full))  # output rows past every tap's reach (the layer's postpad)
    return a, b, chunk_problem(problem, b - a, full + postpad, postpad), o0 - start


def backward_window(problem, i0, i1):
    """(g0, chunk problem): input rows [i0, i1) read rows g0 ... of gy (zero outside it) with pad 0."""
    s, p = problem.geo.stride[0], problem.geo.pad[0]
    reach = problem.geo.dilation[0] * (problem.geo.size[0] - 1)
    rows = (i1 - i0 - 1) * s + reach + 1
    return i0 * s - p, chunk_problem(problem, i1 - i0, rows)


def bounds(extent, parts):
    return [(extent * i // parts, extent * (i + 1) // parts) for i in range(parts)]


def split(extent, run):
    """run(bounds) with the first spatial axis in 2, 4, 8 ... chunks while some scratch is too large, up to one row
    a chunk (then the error stands)."""
    parts = 2
    while True:
        try:
            return run(bounds(extent, parts))
        except ScratchTooLarge as e:
            if parts >= extent:
                raise ScratchTooLarge(f"{e}, and for one row of its first spatial axis") from None
            parts = min(extent, parts * 2)


# ---------------------------------------------------------------------------------------------- row copies

def copy_rows(queue, src, src_row, dst, dst_row, count):
    """dst[:, :, dst_row : dst_row + count] = src[:, :, src_row : src_row + count] for every (item, map), rows of
    the first spatial axis (rows outside src are left as dst has them). One rectangular copy on the device."""
    lo, hi = max(0, -src_row, -dst_row), min(count, src.shape[2] - src_row, dst.shape[2] - dst_row)
    if hi <= lo or not dst.size:
        return
    row_bytes = src.strides[2]
    slabs = src.shape[0] * src.shape[1]
    src_pitch, dst_pitch = src.strides[1], dst.strides[1]
    assert not src.offset % src_pitch and not dst.offset % dst_pitch, "arrays must start at a whole slab"
    cl.enqueue_copy(queue, dst.base_data, src.base_data,
                    src_origin=((src_row + lo) * row_bytes, src.offset // src_pitch),
                    dst_origin=((dst_row + lo) * row_bytes, dst.offset // dst_pitch),
                    region=((hi - lo) * row_bytes, slabs), src_pitches=(src_pitch, 0), dst_pitches=(dst_pitch, 0))


def slab_aligned(array):
    """The array, or a copy of it when it starts inside an (item, map) slab."""
    return array.copy() if array.offset % array.strides[1] else array


def rows_of(problem, array, row, count, zero=False):
    """A fresh scratch array of `count` rows of the first spatial axis of array from `row` (zeros outside it)."""
    shape = array.shape[:2] + (count,) + array.shape[3:]
    problem.check_alloc("a chunk of rows", shape[0] * shape[1] * count * array.strides[2] // array.dtype.itemsize,
                        scratch=True)
    chunk = memory.empty(problem.queue, shape, array.dtype)
    if zero:
        chunk.fill(0)
    copy_rows(problem.queue, array, row, chunk, 0, count)
    return chunk


# ---------------------------------------------------------------------------------------------- passes

def forward(problem, data, y, run_chunk):
    """y (the call's output, allocated) computed item by item, chunk by chunk; run_chunk(chunk problem, x rows) ->
    the chunk's output."""
    data, item = slab_aligned(data), dataclasses.replace(problem, N=1)

    def run(chunks):
        for n in range(problem.N):
            for o0, o1 in chunks:
                a, b, sub, offset = forward_window(item, o0, o1)
                part = run_chunk(sub, rows_of(item, data[n:n + 1], a, b - a))
                copy_rows(problem.queue, part, offset, y[n:n + 1], o0, o1 - o0)
        return y
    return split(problem.out_sp[0], run)


def backward(problem, data, grad, W, want_data, want_params, with_bias, wgrad, bgrad, scale, momentum, run_chunk):
    """(gx, (wgrad, bgrad)) item by item, chunk by chunk over input rows; run_chunk(chunk problem, x rows or None,
    gy rows) -> (gx rows or None, (weight-gradient part or None, None)); the parts summed in that order."""
    grad, data = slab_aligned(grad), None if data is None else slab_aligned(data)
    item = dataclasses.replace(problem, N=1)
    gx = problem.empty_input_gradient() if want_data else None

    def run(chunks):
        sums = reduction.GradientSum(problem, W, False) if want_params else None
        for n in range(problem.N):
            for i0, i1 in chunks:
                g0, sub = backward_window(item, i0, i1)
                gy_rows = rows_of(item, grad[n:n + 1], g0, sub.out_sp[0], zero=True)
                x_rows = rows_of(item, data[n:n + 1], i0, i1 - i0) if want_params else None
                gx_part, (w_part, _) = run_chunk(sub, x_rows, gy_rows)
                if want_data:
                    copy_rows(problem.queue, gx_part, 0, gx[n:n + 1], i0, i1 - i0)
                if want_params:
                    sums.add((w_part, None))
        params = (None, None)
        if want_params:  # everything enqueued and allocated before the last writes to the caller's gradients
            bias = reduction.BiasGradient(problem, grad, bgrad) if with_bias else None
            params = (sums.write(wgrad, None, scale, momentum)[0], bias.write(scale, momentum) if bias else None)
        return gx, params
    return split(problem.in_sp[0], run)
