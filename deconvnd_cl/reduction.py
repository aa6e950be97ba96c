"""The fixed-order reductions (reduce.mako): per-row sums for the bias gradient, and the finalize that sums
partial results in order and blends them into a gradient (scale * new + momentum * old); on them, the parameter
gradients of a call computed in parts (GradientSum: chunks of the batch or of rows, devices of a group) and the
bias gradient of a whole call (BiasGradient)."""

from . import memory
from .device_kind import vector_width
from .packing import buffer_of
from .kernel_key import CL_TYPES, KernelKey, dtype_tag
from .kernel_manager import manager
from .launch import launch
from .render import render
from .signatures import Acc, Idx, In, Int, Out, Signature


class ReduceKernels:
    def key(self, problem, index_bits):
        return KernelKey("reduce", "common", 1, dtype_tag(problem.dtype), index_bits,
                         (vector_width(problem.device, problem.dtype),))

    def signatures(self, key):
        return {
            "_rows": Signature(In("src"), Out("part", "acc"), Idx("rows"), Idx("length")),
            "_accumulate": Signature(In("src"), Out("sum", "acc"), Idx("count"), Int("first")),
            "_finalize": Signature(In("part", "acc"), Out("dst"), Idx("count"), Int("n_parts"), Acc("scale"),
                                   Acc("momentum")),
        }

    def source(self, key):
        return render("reduce.mako", name=key.name, dtype=CL_TYPES[key.dtype], index_bits=key.index_bits,
                      vw=key.variant[0], signatures=self.signatures(key))


REDUCE = ReduceKernels()


def program(problem, index_bits):
    return manager().program(problem.queue, REDUCE.key(problem, index_bits), REDUCE)


def row_sums(problem, index_bits, src, part, rows, length):
    """part[r] = sum of src[r * length : (r + 1) * length], in a fixed order."""
    prg = program(problem, index_bits)
    launch(problem.queue, prg, "_rows", (rows,), (prg.local_size("_rows", 64),), src=src, part=part, rows=rows,
           length=length)


def finalize(problem, index_bits, part, n_parts, dst, count, scale, momentum):
    """dst[e] = scale * sum_c part[c * count + e] + momentum * dst[e], the parts summed in order."""
    prg = program(problem, index_bits)
    launch(problem.queue, prg, "_finalize", (count,), (prg.local_size("_finalize", 64),), part=part, dst=dst.data,
           count=count, n_parts=n_parts, scale=scale, momentum=momentum)


def bias_row_sums(problem, index_bits, grad):
    """The bias gradient's first stage: per (batch item, map) sums of grad, in the accumulator type (finalize with
    n_parts = N sums them over the batch)."""
    rows = problem.N * problem.cout
    part = memory.buffer(problem.queue, rows * problem.acc_dtype.itemsize)
    row_sums(problem, index_bits, buffer_of(grad), part, rows, grad.size // rows)
    return part


class BiasGradient:
    """The bias gradient of a whole call, from gy read in place (no scratch beyond one sum per (item, map)): the
    sums are enqueued and the output allocated at once, and `write` (the last step) blends them into it."""

    def __init__(self, problem, grad, bgrad):
        self.problem, self.bits = problem, problem.index_bits(grad.size)
        self.part = bias_row_sums(problem, self.bits, grad)
        self.given = bgrad is not None
        self.bgrad = bgrad if self.given else memory.empty(problem.queue, (1, problem.cout) + (1,) * problem.nd,
                                                            problem.dtype)

    def write(self, scale, momentum):
        """bgrad = scale * (sum of grad over the batch and the positions, per map) + momentum * bgrad (where the
        caller gave one)."""
        p = self.problem
        finalize(p, self.bits, self.part, p.N, self.bgrad, p.cout, scale, momentum if self.given else 0.0)
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
