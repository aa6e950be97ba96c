"""The host's per-call choices, remembered: a training loop calls a layer with the same shapes every step, and
choosing its implementation, default variant and kernel key anew cost 60-80 us a pass on PoCL (a depthwise
layer's backward data: 0.2 ms of host work before its one kernel, which takes 0.34 ms).

Each cache maps a key of plain values (Problem.shape_key, variants, names: never a queue or an array, so nothing
is kept alive) to what the choice returned, and is emptied when it reaches CAPACITY entries. What it remembers
depends on its key alone: the environment switches the choices read (settings.py) are part of the key where
they matter.
"""

import threading

CAPACITY = 4096


class Plans:
    """One cache: `get(key, make)` returns the remembered value, or remembers and returns make()."""

    def __init__(self):
        self._values = {}
        self._lock = threading.Lock()

    def get(self, key, make):
        value = self._values.get(key, self)
        if value is self:
            value = make()
            with self._lock:
                if len(self._values) >= CAPACITY:
                    self._values.clear()
                self._values[key] = value
        return value
