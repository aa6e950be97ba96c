"""A module's calls, straight to their replays.

A training loop calls each layer with arrays of the same forms at every step. A call replayed (replay.py) still
validated its arrays, made its Problem, chose its implementations and worked out its replay key before its first
enqueue: on PoCL here 60-100 us of Python a pass with the host's caches warm, 150-300 us right after the step's
kernels (the caches cold), a fifth to a third of a small layer's pass. Here a module's call is keyed by what that
work reads of its arguments: each array's layout and context, the layer, the scratch budget, the tuned variants,
which gradients, the scalars, the queue and the environment switches that the replay keys hold too. A call whose
key an earlier call led to a replay goes to that replay at once; any other call runs in full (validated, chosen,
keyed) and remembers where its key led. Keys hold handles, never arrays or queues. Calls with an argument that has
no key (a list, a 0-d array scale, a device group) always run in full, as do calls whose full run is not replayed
(an empty batch, a call split along its batch or rows: functional._replayed is never reached).
"""

import pyopencl.array as cl_array

from . import functional, replay, settings


def forward(data, W, bias, conv, scratch_limit=None, variants=None, train=False, devices=None):
    """functional.forward_problem, then functional.forward with variants["forward"] (a training module's
    forward builds its three passes ahead first: functional.prepare_layer), or the replay its key leads to.
    `conv`: stride, pad, dilation, postpad and groups by name."""
    variants = variants or {}
    queue = functional.queue_for(data)
    key = None if devices is not None else _key("forward", queue, (data, W, bias),
                                                (_sorted(conv), scratch_limit, _sorted(variants), train))

    def anew():
        problem = functional.forward_problem(data, W, bias, scratch_limit=scratch_limit, **conv)
        if train and devices is None and problem.N > 0:
            functional.prepare_layer(problem, variants)
        return functional.forward(problem, data, W, bias, tuned=variants.get("forward"), devices=devices,
                                  call_key=key)
    return _run(key, anew, queue, dict(data=data, W=W, bias=bias))


def backward(data, grad, W, bias, conv, scratch_limit=None, want_data=True, want_params=True, wgrad=None,
             bgrad=None, scale=1.0, momentum=0.0, variants=None, devices=None):
    """functional.backward_problem (the forward's input `data` gives the input shape), then functional.backward,
    or the replay its key leads to. `conv`: stride, pad, dilation and groups by name."""
    variants = variants or {}
    queue = functional.queue_for(grad)
    key = None
    if devices is None:
        try:
            scalars = (_bits(scale), _bits(momentum))
        except (TypeError, OverflowError):
            scalars = None  # checked, and refused where it must be, by functional.backward
        if scalars is not None:
            key = _key("backward", queue, (grad, data, W, bias, wgrad, bgrad),
                       (_sorted(conv), scratch_limit, _sorted(variants), want_data, want_params) + scalars)

    def anew():
        problem = functional.backward_problem(grad, W, data.shape, scratch_limit=scratch_limit, **conv)
        return functional.backward(problem, data, grad, W, bias, want_data, want_params, wgrad, bgrad, scale,
                                   momentum, tuned=variants, devices=devices, call_key=key)
    return _run(key, anew, queue, dict(grad=grad, data=data, W=W, wgrad=wgrad, bgrad=bgrad))


def _run(key, anew, queue, arrays):
    """The replay `key` leads to, run on `arrays` (named as functional._replayed names them), else anew()."""
    known = None if key is None else replay.key_of_call(key)
    if known is None:
        return anew()
    return replay.call(known, anew, queue, arrays)


def _key(kind, queue, arrays, rest):
    """The call's key, or None where an argument has none."""
    try:
        key = (kind, queue.int_ptr, tuple(map(_form, arrays)), rest, settings.replay_switches())
        hash(key)
    except TypeError:
        return None
    return key


def _form(array):
    """What the validation reads of an array argument: its layout and its context (by handle)."""
    if array is None:
        return None
    if not isinstance(array, cl_array.Array):
        raise TypeError("not an array: the call runs in full, whose validation says what is wrong")
    return array.shape, array.dtype, array.strides, array.offset, array.context.int_ptr


def _bits(value):
    """A float or int scale or momentum by its bits (-0.0 is not 0.0); other types (bool, NumPy scalars) have
    no key, so the full call checks them every time."""
    if type(value) not in (float, int):
        raise TypeError(f"no key for a {type(value).__name__}")
    return float(value).hex()


def _sorted(mapping):
    return tuple(sorted(mapping.items()))
