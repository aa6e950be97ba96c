"""Tile variants: how much work one work-item owns, per kernel family and device.

A tile is (TM, TN, VW): TM maps x TN positions held in TM*TN/VW private vector accumulators (for backward
weights, TM input maps x TN output maps, each a vector along the reduction). On a CPU device register tiling
is the whole game (PERF-NOTES.md): about 12 vector accumulators fill AVX2's 16 registers, and one work-item per
work-group lets PoCL run each tile as a plain loop nest. GPUs want smaller tiles and many work-items.
The choice depends on the layer and the device, never on the spatial size, so new input sizes reuse builds.
"""

import os
from math import ceil

import numpy as np

from .device import is_cpu

ACCUMULATORS = 12
CACHE_BLOCK = 256 * 1024  # bytes of an operand a CPU work-item sequence should find in cache (half an L2)


def vector_width(device, dtype):
    if not is_cpu(device):
        return 4
    return 4 if np.dtype(dtype) == np.float64 else 8


def gemm_tile(device, dtype, maps):
    """Forward / backward data: TM of `maps` (output maps per group, resp. input maps) x TN positions."""
    vw = vector_width(device, dtype)
    if not is_cpu(device):
        return (min(4, maps), vw, vw)
    tm = min(6, maps)
    return (tm, vw * max(1, min(4, ACCUMULATORS // tm)), vw)


GY_IN_PLACE = 2  # gy layout of the backward tiles that read the output gradient unpacked


def backward_data_tile(device, dtype, cig, direct_last_stride=0):
    """Backward data: gemm_tile, or for layers that read gy in place (Geometry.direct_backward: pass their last
    stride, 1 or 2) (TM, TN input positions, VW, GY_IN_PLACE), TN chosen so the tile keeps gemm_tile's number
    of accumulators (with a last stride of 2 a vector holds VW/2 positions, each with its two taps)."""
    tm, tn, vw = gemm_tile(device, dtype, cig)
    return (tm, tn // direct_last_stride, vw, GY_IN_PLACE) if direct_last_stride else (tm, tn, vw)


def weights_tile(device, dtype, cig, cog, non_overlapping=False, direct=False):
    """Backward weights: (TM input maps, TN output maps, VW, gy layout); see backward_weights.mako.

    With at least a vector's worth of output maps per group, vectors run over output maps (layout 1, the
    forward's GEMM tile); with fewer (depthwise, narrow), over positions (layout 0). On a CPU, non-overlapping
    up-sampling layers (Geometry.non_overlapping: kernel size = stride) take layout 0 too: each gradient element
    is then a dot product of x with one residue plane of gy, which layout 0 reads as it is, where layout 1
    first needs gy transposed (measured 1.06-1.41x on the training step of three such layers,
    docs/performance.md); those without padding or dilation (`direct`, Geometry.direct_backward) read gy
    unpacked (layout GY_IN_PLACE), sparing the packing pass."""
    vw = vector_width(device, dtype)
    if direct and is_cpu(device):
        return (min(3, cig), min(4, cog), vw, GY_IN_PLACE)
    if non_overlapping and is_cpu(device):
        return (min(3, cig), min(4, cog), vw, 0)
    if cog >= vw:
        nvec = 2 if cog > vw and is_cpu(device) else 1
        return (min(cig, (ACCUMULATORS if is_cpu(device) else 4) // nvec), nvec * vw, vw, 1)
    budget = ACCUMULATORS if is_cpu(device) else 4
    tm = min(4 if is_cpu(device) else 2, cig)
    return (tm, min(cog, max(1, budget // tm)), vw, 0)


def local_size(device, program, kernel_name=None):
    """Work-items per work-group for the tiled kernels: 1 on a CPU (a work-group is then one loop nest).

    DECONVND_CL_LOCAL_SIZE overrides the wish (capped by the kernel's queried limit); the tests use it to show
    that results do not depend on it."""
    wanted = os.environ.get("DECONVND_CL_LOCAL_SIZE")
    if wanted:
        return program.local_size(kernel_name, int(wanted))
    return 1 if is_cpu(device) else program.local_size(kernel_name, 64)


def parallel_target(device):
    """Work-items worth launching at least, to keep every compute unit busy. A constant per device kind, not
    a function of max_compute_units: the weight gradient's chunking (and so its summation order) follows from
    it, and results must not change with the thread count (POCL_MAX_PTHREAD_COUNT) or the GPU's size."""
    return 64 if is_cpu(device) else 8192


def weight_chunks(device, total_rows, tiles_total, blocking=None):
    """How many fixed chunks of input rows the weight gradient sums apart (reduce.mako adds them in order).

    Enough for the parallel target. With `blocking` = (row length, input maps, x elements, gradient elements,
    itemsize), on a CPU also enough that one chunk of x over those maps fits CACHE_BLOCK bytes, so the work-items
    for other output maps and taps find it in cache instead of streaming all of x again, as long as the chunks'
    partial sums (one gradient each) stay under a quarter of x. The caller asks for it with gy read in place
    (V-Net's layer: 7.7 -> 6.3 ms and 8.1 -> 4.9 ms, alternating); other layouts measured level or slower with
    it (dilated 2.7 -> 3.8 ms). Shape and device kind only, never the thread count, so the summation order is
    the same on every run."""
    n = max(1, min(total_rows, ceil(parallel_target(device) / tiles_total)))
    if blocking and is_cpu(device):
        row_length, maps, x_elements, w_elements, itemsize = blocking
        block_rows = max(1, CACHE_BLOCK // (maps * row_length * itemsize))
        affordable = max(1, x_elements // (4 * w_elements))
        n = max(n, min(ceil(total_rows / block_rows), affordable))
    return min(n, total_rows)


def copy_local_size(device, program, kernel_name=None):
    """Work-items per work-group for the memory-bound pack kernels (PoCL runs a work-group as one loop)."""
    return program.local_size(kernel_name, 16 if is_cpu(device) else 64)
