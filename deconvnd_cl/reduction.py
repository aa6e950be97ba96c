"""The fixed-order reductions (reduce.mako): per-row sums for the bias gradient, and the finalize that sums
partial results in order and blends them into a gradient (scale * new + momentum * old)."""

import numpy as np

from .kernel_key import CL_TYPES, KernelKey, dtype_tag
from .kernel_manager import manager
from .launch import launch
from .render import render
from .signatures import Acc, Idx, In, Int, Out, Signature


def vector_width(problem):
    """Vector width of the reductions' loads: 8 floats (4 doubles) fill an AVX2 register; 4 on other devices."""
    if not problem.on_cpu:
        return 4
    return 4 if problem.dtype == np.float64 else 8


class ReduceKernels:
    def key(self, problem, index_bits):
        return KernelKey("reduce", "common", 1, dtype_tag(problem.dtype), index_bits, (vector_width(problem),))

    def signatures(self, key):
        return {
            "_rows": Signature(In("src"), Out("part", "acc"), Idx("rows"), Idx("length")),
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
