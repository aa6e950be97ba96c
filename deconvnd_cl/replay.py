"""A pass's enqueues recorded at its first call of a shape, and replayed at its later ones.

A training loop calls every layer with the same shapes each step. Past its remembered choices (plans.py), a
pass still worked out each launch's arguments, bound them by name and allocated its scratch in Python: 61-155 us
a pass on PoCL here with the host's caches warm, three to five times that right after the kernels of the step
before had run, and most of a small layer's wall time beyond its kernels. On a GPU, where those kernels take
tens of microseconds, that Python is the pass. A replay makes the same allocations from the queue's pool, in
the same order, and enqueues the same kernels with the same arguments: only the buffers are the new call's.

A replay is the call's own enqueues by construction:
- its key holds everything the pass's Python reads except the arrays' memory: the implementations and variants,
  the Problem with its queue (by handle: a key keeps no queue alive) and scratch budget, the call's scalars
  (scale, momentum, which gradients), each array's shape, dtype, strides and offset, the environment switches
  the passes read (settings.replay_switches) and the kernel manager (replays live on it, so a new manager builds
  and records anew);
- every launch and allocation is on the call's queue, every buffer a recorded launch takes is one of the call's
  arrays, a block the call allocated (memory.buffer / memory.empty), or a table made once per context
  (strategies.base.constant_buffer), and every array the call returns is one of these too. Anything else, or an
  enqueue outside `launch()` (a copy of an array with an offset, say), refuses the recording (`refuse`): that
  key then runs in full every time.
A block goes back to the pool where the call would have let it go: before each allocation the recording lets go
of the blocks no one else refers to any more and records that, and the replay does the same at the same step, so
neither holds more memory at once than the call worked out anew. Replays are off with DECONVND_CL_REPLAY=0 (the
switch is read at each call). A call of the forms of an earlier replayed one comes here without its Python
before the key (call_forms.py, remember_call and replay_of_call below).
"""

import sys
import threading

import pyopencl as cl
import pyopencl.array as cl_array

from . import kernel_manager, launch, memory, settings

CAPACITY = 1024  # replays kept per kernel manager; all are dropped when it is reached

_active = threading.local()


def recording():
    """The Recording of the call running on this thread, or None (the hooks in launch, memory and
    constant_buffer ask)."""
    return getattr(_active, "recording", None)


def refuse(reason):
    """The running call does something a replay would not repeat: it is not recorded."""
    current = recording()
    if current is not None and current.refused is None:
        current.refused = reason


def array_form(array):
    """What a key holds of an array argument: its layout, never its memory."""
    return None if array is None else (array.shape, array.dtype, array.strides, array.offset)


def call(key, run, queue, inputs):
    """run()'s result, by replay where this key was recorded; else run() recorded (once per key). `queue`: the
    call's; `inputs`: name -> the call's arrays (or None) whose memory run() passes to its kernels or returns."""
    manager = _replaying_manager()
    if manager is None:
        return run()
    replays = manager.replays
    replay = replays.get(key, _UNRECORDED)
    if replay is None:  # refused when recorded
        return run()
    if replay is not _UNRECORDED:
        return replay(queue, inputs)
    current = _active.recording = Recording(queue, inputs)
    try:
        result = run()
        replay = current.finish(result)
    finally:
        _active.recording = None
    if len(replays) >= CAPACITY:
        replays.clear()
    replays[key] = replay
    return result


def remember_call(call_key, key):
    """A call with this `call_key` (call_forms.py) replays `key`: later calls with that key go there at once."""
    calls = kernel_manager.manager().replayed_calls
    if len(calls) >= CAPACITY:
        calls.clear()
    calls[call_key] = key


def replay_of_call(call_key):
    """The Replay an earlier call with this `call_key` led to, where it was recorded, replays are on and this
    thread records no call; else None, and the call runs in full. (A key is remembered before its call is
    recorded: a call that then splits, say, is never recorded, and each later one runs in full too.)"""
    manager = _replaying_manager()
    key = None if manager is None else manager.replayed_calls.get(call_key)
    return None if key is None else manager.replays.get(key)


def _replaying_manager():
    """The kernel manager whose replays a call may use or add to: None while replays are off or this thread is
    recording a call (whose inner calls run in full, into that recording)."""
    if not settings.replay_enabled() or recording() is not None:
        return None
    return kernel_manager.manager()


_UNRECORDED = object()
_BLOCK, _ARRAY_BLOCK, _INPUT, _TABLE = range(4)  # where a launch's buffer comes from


def _references(blocks, index):
    """CPython's reference count of blocks[index] as seen from here."""
    block = blocks[index]
    return sys.getrefcount(block)


# The count of an object only a list refers to, as _references sees it: interpreters differ in what a local
# variable and a call's argument add (3.14 borrows where 3.11 counts).
_ONLY_IN_ITS_LIST = _references([object()], 0)


class Recording:
    """The steps of one call as it runs: its allocations and launches, the buffers of each launch classified."""

    def __init__(self, queue, inputs):
        self.queue, self.inputs, self.refused = queue, inputs, None
        self.input_of = {}  # id(buffer) -> name in inputs
        for name, array in inputs.items():
            if array is not None:
                if id(array.base_data) in self.input_of:
                    self.refused = "two arrays of the call share their memory"
                self.input_of[id(array.base_data)] = name
        self.steps = []  # ("buffer", nbytes) | ("array", shape, dtype) | ("launch", Launch) | ("free", index)
        # What each allocation returned, held until the call lets it go (release_unused), so that the ids in
        # block_of are those of live blocks; None once let go.
        self.blocks = []
        self.block_of = {}  # id(buffer) -> index in blocks
        self.tables = {}  # id(buffer) -> buffer made once per context

    def release_unused(self):
        """Before an allocation: let go of the blocks that only this recording refers to (CPython's reference
        count), as the call would have, and record where."""
        for index in range(len(self.blocks)):
            if self.blocks[index] is not None and _references(self.blocks, index) <= _ONLY_IN_ITS_LIST:
                block = self.blocks[index]
                del self.block_of[id(block.data if isinstance(block, cl_array.Array) else block)]
                self.blocks[index] = None
                self.steps.append(("free", index))

    def on_queue(self, queue):
        """An allocation or a launch on `queue`: a replay puts everything on the call's queue."""
        if queue != self.queue:
            refuse("an allocation or launch on another queue than the call's")

    def allocated_buffer(self, buffer, nbytes):
        self.block_of[id(buffer)] = len(self.blocks)
        self.blocks.append(buffer)
        self.steps.append(("buffer", nbytes))

    def allocated_array(self, array, shape, dtype):
        """memory.empty's array: its buffer, just recorded by memory.buffer, becomes an array allocation."""
        index = self.block_of.get(id(array.data))
        if index != len(self.blocks) - 1 or self.steps[-1][0] != "buffer" or self.blocks[index] is not array.data:
            refuse("an array without a block of its own")
            return
        self.steps[-1] = ("array", shape, dtype)
        self.blocks[index] = array

    def table(self, buffer):
        self.tables[id(buffer)] = buffer

    def launched(self, program, kernel, arguments, global_size, local_size):
        values, slots = list(arguments), []
        for position, value in enumerate(arguments):
            if isinstance(value, cl.MemoryObjectHolder):
                source = self._source(value)
                if source is None:
                    refuse(f"a buffer of unknown origin ({kernel.function_name})")
                    return
                if source[0] != _TABLE:
                    slots.append((position,) + source)
                    values[position] = None  # not kept: the next call's buffer goes there
        self.steps.append(("launch", Launch(program.launch_lock, kernel, values, tuple(slots), global_size,
                                            local_size)))

    def _source(self, buffer):
        index = self.block_of.get(id(buffer))
        if index is not None:
            block = self.blocks[index]
            if block is buffer:
                return _BLOCK, index
            if isinstance(block, cl_array.Array) and block.data is buffer:
                return _ARRAY_BLOCK, index
        name = self.input_of.get(id(buffer))
        if name is not None and self.inputs[name].base_data is buffer:
            return _INPUT, name
        if self.tables.get(id(buffer)) is buffer:
            return (_TABLE,)
        return None

    def finish(self, result):
        """The Replay of the recorded call, or None where it was refused."""
        form = self._result_form(result)
        return None if self.refused is not None else Replay(self.steps, form)

    def _result_form(self, result):
        if result is None:
            return None
        if isinstance(result, tuple):
            return ("tuple", tuple(self._result_form(r) for r in result))
        if isinstance(result, cl_array.Array):
            for index, block in enumerate(self.blocks):
                if block is result:
                    return ("block", index)
            for name, array in self.inputs.items():
                if array is result:
                    return ("input", name)
        refuse(f"a result that is no array of the call ({type(result).__name__})")
        return None


class Launch:
    """One recorded enqueue: the kernel, its argument values with the call's buffers left as slots."""

    __slots__ = ("lock", "kernel", "values", "slots", "global_size", "local_size")

    def __init__(self, lock, kernel, values, slots, global_size, local_size):
        self.lock, self.kernel, self.values, self.slots = lock, kernel, values, slots
        self.global_size, self.local_size = global_size, local_size


class Replay:
    """A recorded call, run again on new arrays."""

    def __init__(self, steps, result_form):
        self.steps, self.result_form = tuple(steps), result_form

    def __call__(self, queue, inputs):
        blocks = []
        for step in self.steps:
            kind = step[0]
            if kind == "launch":
                recorded = step[1]
                values = list(recorded.values)
                for position, source, ref in recorded.slots:
                    if source == _BLOCK:
                        values[position] = blocks[ref]
                    elif source == _ARRAY_BLOCK:
                        values[position] = blocks[ref].data
                    else:
                        values[position] = inputs[ref].base_data
                launch.enqueue(queue, recorded.lock, recorded.kernel, values, recorded.global_size,
                               recorded.local_size)
                del values  # a block freed at a later step is not held here
            elif kind == "free":
                blocks[step[1]] = None
            else:
                blocks.append(memory.buffer(queue, step[1]) if kind == "buffer"
                              else memory.empty(queue, step[1], step[2]))
        return self._result(self.result_form, blocks, inputs)

    def _result(self, form, blocks, inputs):
        if form is None:
            return None
        kind, ref = form
        if kind == "tuple":
            return tuple(self._result(f, blocks, inputs) for f in ref)
        return blocks[ref] if kind == "block" else inputs[ref]
