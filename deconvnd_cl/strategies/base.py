"""What every kernel implementation of a pass provides (strategies/__init__.py lists them per pass)."""

from .. import memory
from ..geometry import Geometry
from ..kernel_key import CL_TYPES, KernelKey
from ..kernel_manager import manager
from ..launch import launch
from ..render import render


class Implementation:
    """One way to compute one pass, with its own variant type, template, layout plan and launch geometry.

    Subclasses set `strategy` ("cpu" or "gpu": the device kind it is shaped for, and the name that
    DECONVND_CL_STRATEGY forces), `family`, `template` and `variant_type`, and define `serves`,
    `default_variant`, `candidates`, `template_args`, `signatures` and the pass itself, `run`."""

    strategy = ""
    family = ""
    template = ""
    variant_type = None

    def __repr__(self):
        return f"<{type(self).__name__} ({self.strategy} strategy, {self.family})>"

    # -- applicability and variants
    def serves(self, problem):
        """None if this implementation can compute the call, else why not (a phrase)."""
        return None

    def default_variant(self, problem):
        raise NotImplementedError

    def candidates(self, problem):
        """Variants worth timing for this call (optimizeForShape), every one of them fitting it."""
        raise NotImplementedError

    def choose_variant(self, problem, given=None, tuned=None):
        """A variant the user gave (checked: ModuleError if it does not fit), else a tuned one that fits the
        call, else the default."""
        if given is not None:
            return self.variant_type.parse(given, self.family).check(problem, self.family)
        if isinstance(tuned, self.variant_type) and tuned.fits(problem):
            return tuned
        return self.default_variant(problem)

    # -- the kernel source (kernel_manager's KernelSource)
    def key(self, problem, variant, index_bits):
        return KernelKey.for_conv(self.family, self.strategy, problem.geo, problem.dtype, variant.key(),
                                  index_bits)

    def variant_of(self, key):
        return self.variant_type.from_key(key.variant)

    @staticmethod
    def geometry(key):
        """The layer geometry a key was made for (validated when the key was made; postpad is a run-time size)."""
        return Geometry(key.nd, key.size, key.stride, key.pad, key.dilation, (0,) * key.nd, key.groups)

    def template_args(self, key):
        raise NotImplementedError

    def signatures(self, key):
        raise NotImplementedError

    def source(self, key):
        return render(self.template, name=key.name, nd=key.nd, dtype=CL_TYPES[key.dtype],
                      index_bits=key.index_bits, groups=key.groups, size=key.size, stride=key.stride, pad=key.pad,
                      dilation=key.dilation, signatures=self.signatures(key), **self.template_args(key))

    def program(self, problem, variant, index_bits):
        return manager().program(problem.queue, self.key(problem, variant, index_bits), self)


def pack_weights(problem, program, W_buffer, rows, row_length, local_size, **arguments):
    """Run a family's `_wpack` kernel: W -> the tile-major layout its work-items stream contiguously
    (one work-item per row of row_length elements)."""
    total = rows * row_length
    problem.check_alloc("the packed weights", total)
    wp = memory.buffer(problem.queue, total * problem.dtype.itemsize)
    launch(problem.queue, program, "_wpack", (rows,), local_size, w=W_buffer, wp=wp, rows=rows, **arguments)
    return wp
