"""What every kernel implementation of a pass provides (strategies/__init__.py lists them per pass)."""

import threading
from collections import OrderedDict

import numpy as np
import pyopencl as cl

from .. import device_kind, replay
from ..kernel_key import CL_TYPES, KernelKey, dtype_tag
from ..kernel_manager import manager
from ..plans import Plans
from ..render import render


# the per-call choices remembered (plans.py): default variants, whether a tuned variant fits, kernel keys
_defaults, _fitting, _keys = Plans(), Plans(), Plans()


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
        if isinstance(tuned, self.variant_type) and _fitting.get((tuned, problem.shape_key),
                                                                 lambda: tuned.fits(problem)):
            return tuned
        # the scratch budget too: a default that packs an operand gives way to one that reads it in place where
        # the pack would not fit (cpu_tiles._across_row_ends); and the target features, which may widen the
        # vectors (device_kind.float_lanes)
        return _defaults.get((self, problem.shape_key, problem.scratch_budget(), self.target(problem)),
                             lambda: self.default_variant(problem))

    # -- the kernel source (kernel_manager's KernelSource)
    def target(self, problem):
        """The target features the kernels are compiled for beyond the device compiler's own (KernelKey.target):
        the register-tiled (CPU) strategy's only."""
        return device_kind.target_features(problem.device) if self.strategy == "cpu" else ""

    def key(self, problem, variant, index_bits):
        target = self.target(problem)
        return _keys.get((self, problem.geo, problem.dtype, variant, index_bits, target), lambda: KernelKey(
            self.family, self.strategy, problem.nd, dtype_tag(problem.dtype), index_bits, variant.key(),
            self.counts(problem, variant), target))

    def counts(self, problem, variant):
        """The small counts of the layer the template is specialised on (part of the key; a function of the
        layer's geometry alone, never of the input size, so new input sizes reuse the program and `key` can
        remember the key per geometry)."""
        return ()

    def template_args(self, key):
        raise NotImplementedError

    def signatures(self, key):
        raise NotImplementedError

    def source(self, key):
        return render(self.template, name=key.name, nd=key.nd, dtype=CL_TYPES[key.dtype],
                      index_bits=key.index_bits, counts=key.counts, signatures=self.signatures(key),
                      target=key.target, **self.template_args(key))

    def program(self, problem, variant, index_bits):
        return manager().program(problem.queue, self.key(problem, variant, index_bits), self)

    def planned_programs(self, problem, variant):
        """The (key, kernel source) of the program `run` will ask for on this call, as far as it can be told
        before the call (kernel_manager.prepare builds it ahead): none where the index width is not clear."""
        bits = problem.likely_index_bits()
        return [] if bits is None else [(self.key(problem, variant, bits), self)]


# Unrolled tap blocks a tiled kernel may hold at most: within it each tap count of a layer gets its own unrolled
# case, beyond it taps run as a loop over the layer's table (slower by 10-15% on dense layers, measured).
UNROLL_BUDGET = 64


def unroll_within_budget(counts):
    """The tap counts to unroll, smallest first, while their sum stays within UNROLL_BUDGET; 0 (no taps) is
    never unrolled (the loop case does nothing)."""
    chosen, total = [], 0
    for n in sorted(set(counts) - {0}):
        if total + n > UNROLL_BUDGET:
            break
        chosen.append(n)
        total += n
    return tuple(chosen)


_tables = OrderedDict()
_tables_lock = threading.Lock()
TABLES_KEPT = 512


def constant_buffer(queue, what, make):
    """A read-only device copy of a geometry table, made by `make()` (a NumPy array) once per context and `what`
    (a hashable description of the table: the layout and the index width, say) and kept for later calls: a
    buffer made per call cost 1-3 ms of host time on PoCL's larger layers (DCGAN 512->256 forward)."""
    key = (queue.context.int_ptr, what)
    with _tables_lock:
        buffer = _tables.get(key)
        if buffer is None:
            table = make()
            if not table.size:  # a layer without taps: OpenCL has no empty buffers, and the kernel reads none
                table = np.zeros(1, table.dtype)
            buffer = cl.Buffer(queue.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=table)
            _tables[key] = buffer
            if len(_tables) > TABLES_KEPT:
                _tables.popitem(last=False)
        else:
            _tables.move_to_end(key)
    recording = replay.recording()
    if recording is not None:
        recording.table(buffer)
    return buffer
