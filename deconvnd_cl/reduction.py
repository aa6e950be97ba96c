"""The fixed-order reductions (reduce.mako, in shared_program.py): the bias gradient of a whole call (sums of gy per map, blended into
the gradient: scale * new + momentum * old), and the finalize that sums partial results in order and blends them
the same way; on them, the parameter gradients of a call computed in parts (GradientSum: chunks of the batch or of
rows, devices of a group) and the bias gradient of a row-split call (BiasGradient)."""

from math import prod

from . import memory, shared_program
from .launch import launch
from .packing import buffer_of


def program(problem, index_bits):
    return shared_program.program(problem.queue, problem.nd, problem.dtype, index_bits)


def finalize(problem, index_bits, part, n_parts, dst, count, scale, momentum):
    """dst[e] = scale * sum_c part[c * count + e] + momentum * dst[e], the parts summed in order."""
    prg = program(problem, index_bits)
    launch(problem.queue, prg, "_finalize", (count,), (prg.local_size("_finalize", 64),), part=part, dst=dst.data,
           count=count, n_parts=n_parts, scale=scale, momentum=momentum)


def bias_gradient(problem, index_bits, src, bgrad, scale, momentum):
    """bgrad = scale * (sum of gy over the batch and the positions, per map) + momentum * bgrad: one kernel, a
    work-item a map (a layer's first backward pass compiles one reduction kernel, not a row sum and a finalize).
    `src`: gy's memory, (N, cout, positions) contiguous (any buffer when N is 0: none of it is read)."""
    prg = program(problem, index_bits)
    launch(problem.queue, prg, "_bias", (problem.cout,), (prg.local_size("_bias", 64),), src=src, dst=bgrad.data,
           n=problem.N, maps=problem.cout, length=prod(problem.out_sp), scale=scale, momentum=momentum)


class BiasGradient:
    """The bias gradient of a whole call, from gy read in place: the output allocated and the kernel built at once,
    and `write` (the last step) sums gy into it."""

    def __init__(self, problem, grad, bgrad):
        self.problem, self.grad, self.bits = problem, grad, problem.index_bits(grad.size)
        program(problem, self.bits)
        self.given = bgrad is not None
        self.bgrad = bgrad if self.given else memory.empty(problem.queue, (1, problem.cout) + (1,) * problem.nd,
                                                            problem.dtype)

    def write(self, scale, momentum):
        """bgrad = scale * (sum of grad over the batch and the positions, per map) + momentum * bgrad (where the
        caller gave one)."""
        bias_gradient(self.problem, self.bits, buffer_of(self.grad), self.bgrad, scale,
                      momentum if self.given else 0.0)
        return self.bgrad


def accumulate(problem, index_bits, src, total, count, first):
    """total[e] = (0 if first else total[e]) + src[e] for e < count (total in the accumulator type)."""
    prg = program(problem, index_bits)
    launch(problem.queue, prg, "_accumulate", (count,), (prg.local_size("_accumulate", 64),), src=src, sum=total,
           count=count, first=int(first))


class GradientSum:
    """Parameter gradients of parts of one call's batch (chunks of a split call, or the devices of a group), summed
    in the order they are added in the accumulator type on the call's queue, then written once:
    scale * sum + momentum * the caller's gradient (momentum only where the caller gave one)."""

    def __init__(self, problem, W, with_bias):
        self.problem, self.W_shape, self.with_bias = problem, W.shape, with_bias
        sizes = (W.size, problem.cout if with_bias else 0)
        self.sums = [memory.buffer(problem.queue, max(1, n) * problem.acc_dtype.itemsize) for n in sizes]
        self.first = True

    def add(self, params):
        """params: (wgrad part, bgrad part or None), readable by kernels on the call's queue."""
        for total, part in zip(self.sums, params):
            if part is not None:
                accumulate(self.problem, self.problem.index_bits(part.size), part.data, total, part.size, self.first)
        self.first = False

    def write(self, wgrad, bgrad, scale, momentum):
        """(wgrad, bgrad): the caller's arrays where given (blended with momentum), else fresh ones."""
        p = self.problem
        outputs = [wgrad if wgrad is not None else memory.empty(p.queue, self.W_shape, p.dtype)]
        if self.with_bias:
            outputs.append(bgrad if bgrad is not None else memory.empty(p.queue, (1, p.cout) + (1,) * p.nd, p.dtype))
        for total, dst, given in zip(self.sums, outputs, (wgrad, bgrad)):
            finalize(p, p.index_bits(dst.size), total, 1, dst, dst.size, scale, momentum if given is not None else 0.0)
        return outputs[0], outputs[1] if self.with_bias else None
