"""Calls straight to their replays: a call whose arguments have the forms of an earlier replayed call's.

A training loop calls each layer with arrays of the same forms at every step. A call replayed (replay.py) still
validated its arrays, made its Problem, chose its implementations and worked out its replay key before its first
enqueue: on PoCL here 31-64 us of Python a pass with the host's caches warm, 190-330 us right after the step's
kernels (the caches cold), up to a quarter of a small layer's pass. Here a call (a module's, or one of the
functional API's) is keyed by what that work reads of its arguments: each array's shape, dtype, strides, offset and
context, the layer's parameters, the scratch budget, the variants given or tuned, which gradients, scale and
momentum by their bits, the queues and the environment switches the replay keys hold. A call whose key an earlier
call led to a replay goes to that replay at once; any other call runs in full (validated, chosen, keyed) and
remembers where its key led (functional._replayed, replay.remember_call). Keys hold handles, never arrays or
queues. A call with an argument that has no key here (a list or any other mutable parameter, a NumPy-scalar
scale, a device group) runs in full every time, as does one whose full run is never replayed (an empty batch, a
call split along its batch or rows).
"""

from enum import Enum

import numpy as np
import pyopencl.array as cl_array

from . import replay, settings
from .variants import Variant


def call(kind, queues, arrays, parameters, scalars, anew, inputs):
    """anew(key)'s result, `key` the call's key (None where an argument has none: anew passes it on to
    functional.forward / backward), or the replay an earlier call of this key led to, on `inputs` (the arrays by
    the names functional._replayed gives them). `queues`: those the validation consults, the call's first;
    `arrays`: every array argument (or None); `parameters`: everything else the full call reads (a device group,
    like any mutable value, has no key: that call always runs in full), but `scalars` (scale, momentum), keyed by
    their bits."""
    key = _key(kind, queues, arrays, parameters, scalars)
    recorded = None if key is None else replay.replay_of_call(key)
    if recorded is None:
        return anew(key)
    return recorded(queues[0], inputs)


def _key(kind, queues, arrays, parameters, scalars):
    try:
        key = (kind, tuple(map(_queue, queues)), tuple(map(_form, arrays)), _hashable(parameters),
               tuple(map(_bits, scalars)), settings.replay_switches())
        hash(key)
    except (TypeError, OverflowError):
        return None
    return key


def _queue(queue):
    """A queue by its handles and its context's and device's: a freed queue's address can come back as another
    device's queue, and the validation checks the arrays' context and the dtype against them."""
    return queue.int_ptr, queue.context.int_ptr, queue.device.int_ptr


def _form(array):
    """What the validation reads of an array argument: its layout and its context (by handle)."""
    if array is None:
        return None
    if not isinstance(array, cl_array.Array):
        raise TypeError("not an array: the call runs in full, whose validation says what is wrong")
    return array.shape, array.dtype, array.strides, array.offset, array.context.int_ptr


def _bits(value):
    """A float or int scale or momentum by its bits (-0.0 is not 0.0, True is refused where 1 is not); other
    types have no key, so the full call checks them every time."""
    if type(value) not in (float, int):
        raise TypeError(f"no key for a {type(value).__name__}")
    return float(value).hex()


# Values keyed as they are: immutable, equal only to what the validation treats alike once typed (2.0 and True
# are not 2 and 1, which it takes and they are not). Anything else (a list, an iterator, a view of a dict, an
# array) has no key: its contents could change between calls while its hash stays.
_KEYED = (int, float, str, bytes, type(None), np.integer, np.floating, np.bool_, Enum, Variant)


def _hashable(value):
    """Tuples and dicts (the layer's parameters by name, variants by family, as sorted items) of immutable
    values, each leaf with its type; TypeError for anything else."""
    if isinstance(value, dict):
        return tuple(sorted((name, _hashable(v)) for name, v in value.items()))
    if type(value) is tuple:
        return tuple(map(_hashable, value))
    if not isinstance(value, _KEYED):
        raise TypeError(f"no key for a {type(value).__name__}")
    return type(value), value
