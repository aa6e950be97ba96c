"""The shape every weight-gradient implementation shares: a deterministic two-stage reduction. Stage one (the
implementation's kernel) writes partial gradients over fixed chunks of the reduction; stage two
(reduction.finalize) sums the chunks in order and blends scale * new + momentum * old into the caller's
gradient. The bias gradient, gy summed per map, is blended the same way (reduction.BiasGradient).
"""

import pyopencl.array as cl_array

from .. import memory, reduction
from .base import Implementation


class StageOne:
    """What an implementation's stage one needs from the shared run: its index width, its chunk count, and a
    `launch(part)` that enqueues it writing chunk c's partial gradient at part[c * W.size ...]."""

    def __init__(self, bits, chunks, launch):
        self.bits, self.chunks, self.launch = bits, chunks, launch


class TwoStageWeightGradient(Implementation):
    family = "backward_weights"

    def stage_one(self, problem, data, grad, W, variant, packs):
        raise NotImplementedError

    def run(self, problem, data, grad, W, with_bias, variant, wgrad=None, bgrad=None, scale=1.0, momentum=0.0,
            packs=None):
        queue, geo = problem.queue, problem.geo
        if wgrad is None:
            wgrad, momentum_w = memory.empty(queue, W.shape, problem.dtype), 0.0
        else:
            momentum_w = momentum
        if with_bias and bgrad is None:
            bgrad, momentum_b = memory.empty(queue, (1, problem.cout) + (1,) * geo.nd, problem.dtype), 0.0
        else:
            momentum_b = momentum
        acc_dtype = problem.acc_dtype
        acc_size = acc_dtype.itemsize
        w_size = W.size
        # the bias gradient's kernels built, gy's memory and scratch made before any write (below)
        bias = reduction.BiasGradient(problem, grad, bgrad) if with_bias else None
        if problem.N == 0:  # empty batch: the new gradients are zero, blended as usual
            bits, n_chunks, direct = 32, 1, False
            part = cl_array.zeros(queue, w_size, acc_dtype).data
        else:
            stage = self.stage_one(problem, data, grad, W, variant, packs)
            bits, n_chunks = stage.bits, stage.chunks
            # one chunk, nothing to blend: stage one writes the gradient itself and stage two is skipped. Every
            # build and scratch allocation of the call has happened by now, so this write comes with the others.
            direct = n_chunks == 1 and momentum_w == 0 and scale == 1 and acc_dtype == problem.dtype
            if direct:
                part = wgrad.data
            else:
                problem.check_alloc("the weight-gradient partial sums", n_chunks * w_size, acc_size, scratch=True)
                part = memory.buffer(queue, n_chunks * w_size * acc_size)
            stage.launch(part)

        # stage two: the last writes to wgrad / bgrad (with the direct weight write just above), so a failure in
        # validation, building or allocation leaves them untouched
        if not direct:
            reduction.finalize(problem, bits, part, n_chunks, wgrad, w_size, scale, momentum_w)
        if bias:
            bias.write(scale, momentum_b)
        return wgrad, (bgrad if with_bias else None)
