"""Device memory for the library's calls: a pool per queue, for scratch buffers and returned arrays.

A call's scratch (padded operands, packed weights, partial sums) is freed as soon as its last kernel is
enqueued, and the next call asks for the same sizes again; so does a training loop with its outputs.
Allocated afresh each time, an 8 MiB buffer came back from the OS as new pages on CPU devices: 2048 page
faults, 2-4 ms of a 10 ms weight gradient. The pool keeps freed blocks for the next call, as PuzzleLib's
memory pool and PyTorch's caching allocator do.

The pool is per queue, with the rule of PyTorch's per-stream caching: a block freed while a kernel still
uses it is handed out again only to kernels enqueued later on the same in-order queue, which run after that
kernel. An array the library returned and the caller then uses on another queue must not be dropped before
that queue is finished (see docs/guide.md).
"""

from collections import OrderedDict

import pyopencl as cl
import pyopencl.array as cl_array
import pyopencl.tools as cl_tools

from . import replay

_pools = {}


def _pool(queue):
    pool = _pools.get(queue)
    if pool is None:
        pool = _pools[queue] = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(queue))
    return pool


def buffer(queue, nbytes):
    """A read-write scratch buffer of at least nbytes for kernels enqueued on `queue` from now on."""
    pool = _pool(queue)
    recording = replay.recording()
    if recording is not None:
        recording.on_queue(queue)
        recording.release_unused()
    if pool.alloc_size(pool.bin_number(nbytes)) > queue.device.max_mem_alloc_size:
        block = cl.Buffer(queue.context, cl.mem_flags.READ_WRITE, nbytes)  # the pool's bin would round past it
    else:
        block = pool.allocate(nbytes)
    if recording is not None:
        recording.allocated_buffer(block, nbytes)
    return block


# Per (queue, shape, dtype) an array whose likes the calls return: pyopencl's empty_like makes an array from
# another without validating its shape again, 2 us against 20 for the constructor (a quarter of a small pass's
# Python). The pattern's own memory is one small block per queue, never read or written: its likes get theirs
# from the pool.
_patterns = OrderedDict()
_stand_ins = {}
PATTERNS_KEPT = 256


def empty(queue, shape, dtype):
    """An uninitialised array on `queue`, its memory from the queue's pool."""
    key = (queue, shape, dtype)
    pattern = _patterns.get(key)
    if pattern is None:
        allocate = lambda nbytes: buffer(queue, nbytes)  # noqa: E731
        if not all(shape):  # no memory to allocate
            replay.refuse("an empty array")
            return cl_array.empty(queue, shape, dtype, allocator=allocate)
        stand_in = _stand_ins.get(queue)
        if stand_in is None:
            stand_in = _stand_ins[queue] = cl.Buffer(queue.context, cl.mem_flags.READ_WRITE, 4)
        pattern = _patterns[key] = cl_array.Array(queue, shape, dtype, allocator=allocate, data=stand_in)
        if len(_patterns) > PATTERNS_KEPT:
            _patterns.popitem(last=False)
    array = cl_array.empty_like(pattern)
    recording = replay.recording()
    if recording is not None:
        recording.allocated_array(array, shape, dtype)
    return array


def release_held():
    """Give the blocks the pools hold but no array or call uses back to the OpenCL runtime; returns the bytes.

    The pools are forgotten too, so queues (and their contexts) the caller has dropped can go: a block still
    in use belongs to its own pool, which lives as long as such a block does. Later calls start new pools."""
    freed = 0
    for pool in _pools.values():
        freed += pool.managed_bytes - pool.active_bytes
        pool.free_held()
    _pools.clear()
    _patterns.clear()
    _stand_ins.clear()
    return freed
