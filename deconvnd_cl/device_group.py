"""Several devices sharing one call: the batch cut into one part per device by the devices' shares, each part run
on its device's own queue (its own kernels, memory and tuned choices), the outputs gathered on the first queue,
and parameter gradients summed there in device order.

The first queue is the group's home: the caller's arrays live in its context, and so do the results. A queue of
the same context (sub-devices of one device, or several devices in one context) reads the parameters and the
first part's rows where they lie and gets a device-side copy of its own rows; a queue of another context or
platform gets its part through the host. The parts depend only on the batch and the shares, and the sums run in
device order, so a group gives the same bits on every run. A call over a group returns once every device has
finished its part.
"""

import math
from numbers import Real

import numpy as np
import pyopencl as cl
import pyopencl.array as cl_array

from . import memory
from .device import keep_context_alive, supports_dtype
from .errors import ModuleError


class DeviceGroup:
    """Queues that split calls along the batch, `shares[i]` of each batch for `queues[i]` (fractions summing to 1;
    None: equal shares; `device_shares.measure_shares` times the devices once)."""

    def __init__(self, queues, shares=None):
        if isinstance(queues, cl.CommandQueue) or not isinstance(queues, (list, tuple)) or not queues:
            raise ModuleError(f"a DeviceGroup needs a non-empty list of pyopencl.CommandQueue (given: {queues!r})")
        for i, queue in enumerate(queues):
            if not isinstance(queue, cl.CommandQueue):
                raise ModuleError(f"queues[{i}] is a {type(queue).__name__} (expected: a pyopencl.CommandQueue)")
        if len({q.int_ptr for q in queues}) != len(queues):
            raise ModuleError("a DeviceGroup lists one queue twice (each device takes its part on its own queue)")
        self.shares = _check_shares(shares, len(queues))
        for queue in queues:  # see device.keep_context_alive (Intel's runtime)
            if not hasattr(queue, "_dcl_context"):
                keep_context_alive(queue, queue.context)
        self.queues = tuple(queues)

    @property
    def home(self):
        """The queue whose context holds the caller's arrays and the results."""
        return self.queues[0]

    def parts(self, batch):
        """(queue, b0, b1) for each device given at least one item: cumulative shares rounded to items, so the
        parts depend on the batch and the shares only."""
        edges, total = [0], 0.0
        for share in self.shares:
            total += share
            edges.append(min(batch, round(batch * total)))
        edges[-1] = batch
        return [(q, b0, b1) for q, b0, b1 in zip(self.queues, edges, edges[1:]) if b1 > b0]

    def __repr__(self):
        names = ", ".join(f"{q.device.name.strip()}: {s:.3g}" for q, s in zip(self.queues, self.shares))
        return f"DeviceGroup({names})"


def _check_shares(shares, n):
    if shares is None:
        return (1.0 / n,) * n
    if not isinstance(shares, (list, tuple)) or len(shares) != n:
        raise ModuleError(f"shares must list one fraction per queue, {n} in all (given: {shares!r})")
    for i, share in enumerate(shares):
        if isinstance(share, bool) or not isinstance(share, Real) or not math.isfinite(share) or share < 0:
            raise ModuleError(f"shares[{i}] is {share!r} (expected: a fraction of the batch, 0 <= share <= 1)")
    if abs(sum(shares) - 1.0) > 1e-6:
        raise ModuleError(f"shares {tuple(shares)} sum to {sum(shares):.6g} (expected: 1, the whole batch)")
    return tuple(float(s) for s in shares)


def as_group(devices):
    """A DeviceGroup from a DeviceGroup or a list of queues (equal shares)."""
    return devices if isinstance(devices, DeviceGroup) else DeviceGroup(devices)


def check_home(group, array, name, dtype):
    """ModuleError unless the caller's array lives in the group's home context and every device takes dtype."""
    if array.context != group.home.context:
        raise ModuleError(f"{name} belongs to another OpenCL context than the device group's first queue, whose "
                          "context holds the call's arrays and results")
    for queue in group.queues:
        if not supports_dtype(queue.device, dtype):
            raise ModuleError(f"dtype {np.dtype(dtype)} is not supported by device {queue.device.name.strip()} of "
                              "the device group (float64 needs cl_khr_fp64)")


# ---------------------------------------------------------------------------------------------- moving parts

def rows_on(part, array, b0, b1):
    """Batch rows b0 .. b1 - 1 of the caller's array, for kernels of `part` (the call's Problem on a device's
    queue): in the same context the array itself or, past its first row, a copy made on the device (the kernels
    would copy a view with an offset each time); in another context a copy through the host."""
    if array is None:
        return None
    queue, rows = part.queue, array[b0:b1]
    if queue.context == array.context and not rows.offset:
        return rows.with_queue(queue)
    part.check_alloc("a device's part of an operand", rows.size, rows.dtype.itemsize)
    if queue.context != array.context:
        return cl_array.to_device(queue, rows.get(), allocator=lambda n: memory.buffer(queue, n))
    copy = memory.empty(queue, rows.shape, rows.dtype)
    if copy.size:
        cl.enqueue_copy(queue, copy.data, rows.base_data, src_offset=rows.offset, byte_count=rows.nbytes)
    return copy


def whole_on(part, array):
    return None if array is None else rows_on(part, array, 0, array.shape[0])


def put_rows(dst, part, b0):
    """dst[b0 : b0 + len(part)] = part; part's queue is finished first (it wrote part)."""
    if not part.size:
        return
    offset = dst.offset + b0 * dst.strides[0]
    if part.context == dst.context:
        part.queue.finish()
        cl.enqueue_copy(dst.queue, dst.data, part.data, dst_offset=offset, src_offset=part.offset,
                        byte_count=part.nbytes)
    else:
        cl.enqueue_copy(dst.queue, dst.data, part.get(), dst_offset=offset, is_blocking=True)


def home_copy(home, part):
    """A device part's array readable by kernels on the home queue (a view in the same context once the part's
    queue is finished, else a copy through the host)."""
    if part.context == home.context:
        part.queue.finish()
        return part.with_queue(home)
    return cl_array.to_device(home, part.get(), allocator=lambda n: memory.buffer(home, n))


def finish_all(group, home):
    """Wait for every device and the call's queue: the parts' temporaries may then go back to their pools."""
    for queue in group.queues + (home,):
        queue.finish()
