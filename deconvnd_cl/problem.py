"""One validated call: geometry, maps, spatial extents and dtype, on one queue, with the limits it must fit."""

import dataclasses
from functools import cached_property
from math import prod

import numpy as np

from . import memory, settings
from .device_kind import kind_of
from .errors import ModuleError, ScratchTooLarge
from .geometry import Geometry

INT32_LIMIT = 2**31 - 1


def check_scratch_limit(limit):
    """A scratch budget (PuzzleLib's memlimit): None or a positive number of bytes, else ModuleError."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ModuleError(f"memlimit must be a positive number of bytes (given: {limit!r})")
    return limit


@dataclasses.dataclass(frozen=True)
class Problem:
    """A validated call: its queue, layer geometry, batch, maps, extents, dtype and scratch budget."""

    queue: object = dataclasses.field(compare=False, repr=False)
    geo: Geometry
    N: int
    cin: int
    cout: int
    in_sp: tuple
    out_sp: tuple
    dtype: np.dtype
    scratch_limit: int = dataclasses.field(default=None, compare=False)  # bytes a scratch buffer may take

    @classmethod
    def create(cls, queue, data_shape, W_shape, dtype, stride, pad, dilation, postpad, groups, scratch_limit=None):
        nd = len(W_shape) - 2
        geo = Geometry.create(nd, tuple(W_shape[2:]), stride, pad, dilation, postpad, groups)
        in_sp = tuple(data_shape[2:])
        if any(e < 1 for e in in_sp):
            raise ModuleError(f"Data spatial size {in_sp} must be positive on every axis")
        out_sp = geo.out_spatial(in_sp)
        return cls(queue, geo, data_shape[0], data_shape[1], W_shape[1] * groups, in_sp,
                   out_sp, np.dtype(dtype), check_scratch_limit(scratch_limit))

    @property
    def nd(self):
        return self.geo.nd

    @property
    def device(self):
        return self.queue.device

    @cached_property
    def kind(self):
        """The device's DeviceKind (device_kind.py)."""
        return kind_of(self.queue.device)

    @property
    def on_cpu(self):
        """Whether the device takes the CPU defaults of the register-tiled kernels."""
        return self.kind.cpu_like

    @property
    def cig(self):
        return self.cin // self.geo.groups

    @property
    def cog(self):
        return self.cout // self.geo.groups

    @property
    def acc_dtype(self):
        """The kernels' accumulator type: float64 for float64 data, float32 otherwise (float16 is storage only)."""
        return np.dtype(np.float64 if self.dtype == np.float64 else np.float32)

    @property
    def in_shape(self):
        return (self.N, self.cin) + self.in_sp

    @property
    def out_shape(self):
        return (self.N, self.cout) + self.out_sp

    @cached_property
    def shape_key(self):
        """What the call's choices (implementation, default variant) depend on, as a tuple that holds no queue:
        the device, the layer, the maps, the extents, the dtype (the default variant also on the scratch budget,
        which its cache adds). A key of the host's per-call caches (plans.py)."""
        return (self.queue.device.int_ptr, self.geo, self.N, self.cin, self.cout, self.in_sp, self.dtype)

    def describe(self):
        g = self.geo
        return (f"{g.nd}d {self.cin}->{self.cout} size {g.size} stride {g.stride} pad {g.pad} dilation "
                f"{g.dilation} groups {g.groups}, input {self.in_shape}, {self.dtype}, on "
                f"{self.queue.device.name.strip()}")

    def index_bits(self, *element_counts):
        """32-bit index arithmetic when every buffer's largest linear index fits, else 64-bit
        (settings.forced_index_bits: 64 always, which the tests compare against 32 on small shapes)."""
        forced = settings.forced_index_bits()
        if forced:
            return forced
        return 32 if max(element_counts) + 1024 <= INT32_LIMIT else 64

    def likely_index_bits(self):
        """The index width this call's passes most likely take, guessed before they run to build their programs
        ahead (kernel_manager.prepare): 32 where x, y and W are 16 times under the limit, room for the scratch of
        padded copies and packed planes; None nearer. A wrong guess costs only the build made ahead: each pass
        asks for the program of its own width."""
        forced = settings.forced_index_bits()
        if forced:
            return forced
        largest = max(self.x_elements, prod(self.out_shape), self.cin * self.cog * self.geo.taps)
        return 32 if 16 * largest + 1024 <= INT32_LIMIT else None

    def check_alloc(self, what, elements, itemsize=None, scratch=False, per_batch=True):
        """ModuleError if one buffer of `elements` is over the device's max_mem_alloc_size; for the library's own
        scratch (scratch=True) also over the scratch budget (settings.scratch_limit, the module's memlimit), as
        ScratchTooLarge when the buffer shrinks with the batch (per_batch), which makes the functional layer split
        the call along the batch."""
        nbytes = elements * (itemsize or self.dtype.itemsize)
        device_limit = self.queue.device.max_mem_alloc_size
        limit = self.scratch_budget() if scratch else device_limit
        if nbytes > limit:
            device = self.queue.device.name.strip()
            if scratch and not per_batch:
                raise ModuleError(f"{what} needs {nbytes} bytes, over the {limit} bytes a scratch buffer may take "
                                  f"({device}), whatever the batch")
            if scratch:
                raise ScratchTooLarge(f"{what} needs {nbytes} bytes, over the {limit} bytes a scratch buffer may take "
                                      f"({device}) even for a batch of one")
            raise ModuleError(f"{what} needs {nbytes} bytes, over the device's max_mem_alloc_size of {device_limit} "
                              f"bytes ({device}): no allocation can hold it")

    def scratch_budget(self):
        """Bytes one scratch buffer of the call may take: the device's max_mem_alloc_size, or less where
        settings.scratch_limit or the module's memlimit says so."""
        return min([self.queue.device.max_mem_alloc_size]
                   + [v for v in (settings.scratch_limit(), self.scratch_limit) if v])

    def empty_output(self):
        """A fresh array for the call's output, from the queue's memory pool; ModuleError first when no
        allocation can hold it."""
        self.check_alloc("the output", prod(self.out_shape))
        return memory.empty(self.queue, self.out_shape, self.dtype)

    def empty_input_gradient(self):
        """A fresh array for the call's input gradient, as empty_output."""
        self.check_alloc("the input gradient", prod(self.in_shape))
        return memory.empty(self.queue, self.in_shape, self.dtype)

    @property
    def x_elements(self):
        return self.N * self.cin * prod(self.in_sp)
