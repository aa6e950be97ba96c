"""The fixed-order reductions (reduce.mako, in shared_program.py): the bias gradient of a call (gy summed per
map, blended into the gradient: scale * new + momentum * old; BiasGradient), and the finalize that sums partial
results in order and blends them the same way; on it, the parameter gradients of a call computed in parts
(GradientSum: chunks of the batch or of rows, devices of a group)."""

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


class BiasGradient:
    """The bias gradient of a call, from gy as it lies: everything it needs (its kernels built, gy's memory, scratch)
    is made at once, and `write` (the call's last step) sums gy into the gradient.

    On a CPU one kernel, a work-item a map summing the batch's rows in order: a layer's first backward compiles
    one reduction kernel, not two (PoCL compiles each at its first launch, 0.1 s). Elsewhere the sums of each
    (batch item, map) row come first, a work-item each, then the finalize sums them over the batch: a GPU's
    threads are many and slow alone, and an output layer has as few as 3 maps."""

    def __init__(self, problem, grad, bgrad):
        """bgrad: the caller's gradient, blended with momentum by `write`, or None (a fresh one, momentum 0)."""
        self.problem, self.bits = problem, problem.index_bits(grad.size)
        self.program = program(problem, self.bits)
        self.given = bgrad is not None
        self.bgrad = bgrad if self.given else memory.empty(problem.queue, (1, problem.cout) + (1,) * problem.nd,
                                                            problem.dtype)
        self.src = buffer_of(grad) if problem.N else self.bgrad.data  # an empty batch reads none of it
        self.rows = None if problem.on_cpu else memory.buffer(
            problem.queue, max(1, problem.N * problem.cout) * problem.acc_dtype.itemsize)

    def write(self, scale, momentum):
        """bgrad = scale * (sum of grad over the batch and the positions, per map) + momentum * bgrad (where the
        caller gave one)."""
        p, prg = self.problem, self.program
        length = prod(p.out_sp)
        momentum = momentum if self.given else 0.0
        if self.rows is None:
            # a work-group a map: a CPU thread takes one at a time anyway, and PoCL compiles a one-item work-group
            # without a loop over work-items (0.05 s at its first launch, not 0.12 s)
            launch(p.queue, prg, "_bias", (p.cout,), (1,), src=self.src,
                   dst=self.bgrad.data, n=p.N, maps=p.cout, length=length, scale=scale, momentum=momentum)
        else:
            launch(p.queue, prg, "_rows", (p.N * p.cout,), (prg.local_size("_rows", 64),), src=self.src,
                   part=self.rows, rows=p.N * p.cout, length=length)
            finalize(p, self.bits, self.rows, p.N, self.bgrad, p.cout, scale, momentum)
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
