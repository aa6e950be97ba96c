"""Enqueueing a kernel: arguments bound by name through its declared signature, work-groups of any rank."""

from math import ceil

import pyopencl as cl

from . import replay


def launch(queue, program, suffix, global_size, local_size, **arguments):
    """Run kernel key.name + suffix of `program` over `global_size` work-items (rounded up to whole work-groups
    of `local_size`, a tuple of the same rank) with `arguments` by name. An empty range enqueues nothing."""
    if not all(global_size):
        return
    if len(local_size) != len(global_size):
        raise ValueError(f"local size {local_size} and global size {global_size} differ in rank")
    kernel, signature = program.kernel(suffix)
    bound = signature.bind(arguments, program.key.index_bits)
    rounded, local_size = tuple(ceil(g / l) * l for g, l in zip(global_size, local_size)), tuple(local_size)
    enqueue(queue, program.launch_lock, kernel, bound, rounded, local_size)
    recording = replay.recording()
    if recording is not None:
        recording.on_queue(queue)
        recording.launched(program, kernel, bound, rounded, local_size)


def enqueue(queue, lock, kernel, arguments, global_size, local_size):
    """Set `kernel`'s arguments (in declared order) and enqueue it, as one step under its program's `lock`: a
    cl.Kernel holds its arguments, and other threads launch the same kernel (launch, replay.Replay)."""
    with lock:
        kernel.set_args(*arguments)
        cl.enqueue_nd_range_kernel(queue, kernel, global_size, local_size)
