"""Kernel variants as named types: their fields, their constraints, and how a user's value becomes one.

Each kernel implementation (strategies/) has its own variant type, a frozen dataclass of `Variant`. A variant
declares its constraints: `constraints(problem)` yields (holds, description) pairs, about the variant alone,
the layer, the input or the device. A variant a user passes is checked before anything is built and a failed
constraint is a ModuleError that names it; a variant a module tuned for another shape falls back to the
default where it does not fit; the tuner enumerates only variants whose constraints hold.
"""

import dataclasses
from enum import Enum

import numpy as np

from .errors import ModuleError


class GySource(Enum):
    """Where the backward kernels read the output gradient gy from."""

    PLANAR = "planar"                # packed into zero-bordered stride residue planes, one plane per map
    CHANNELS_LAST = "channels_last"  # packed residue planes, maps interleaved in blocks (backward weights)
    IN_PLACE = "in_place"            # gy as it lies (each kernel family says for which geometries)
    OVER_MAPS = "over_maps"          # as CHANNELS_LAST, backward data's vectors over input maps, gy broadcast


class XSource(Enum):
    """Where the forward and weight-gradient kernels read the input x from."""

    PACKED = "packed"                # packed into a zero-bordered grid, one plane per map (the forward)
    IN_PLACE = "in_place"            # x as it lies
    PLANAR = "planar"                # a stride-1 forward run as a correlation, x packed as backward data packs gy
    INTERLEAVED = "interleaved"      # packed, both phases of a last stride of 2 a work-item, stored interleaved
    CHANNELS_LAST = "channels_last"  # packed with its maps interleaved in blocks (the weight gradient)
    OVER_MAPS = "over_maps"          # packed as for PACKED, the forward's vectors over output maps, x broadcast


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class Variant:
    """Base of the variant types. Integer fields are positive unless their metadata says {"minimum": m};
    enum fields take the enum member or its value string. Fields with defaults may be left out of a tuple."""

    @classmethod
    def parse(cls, value, family):
        """A variant of this type from `value` (an instance, or a tuple of its fields in order), or ModuleError."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Variant):
            raise ModuleError(f"{family} takes a {cls.__name__} variant (given: {value!r}, a variant of another "
                              "kind of kernel)")
        fields = dataclasses.fields(cls)
        required = [f for f in fields if f.default is dataclasses.MISSING]
        names = ", ".join(f.name for f in fields)
        if not isinstance(value, (tuple, list)) or not len(required) <= len(value) <= len(fields):
            count = (f"{len(required)} to {len(fields)}" if len(required) < len(fields) else str(len(fields)))
            raise ModuleError(f"{family} variant must be a {cls.__name__} or a tuple of {count} values ({names}) "
                              f"(given: {value!r})")
        items = {}
        for f, item in zip(fields, value):
            if isinstance(f.type, type) and issubclass(f.type, Enum):
                try:
                    items[f.name] = f.type(item.value if isinstance(item, Enum) else item)
                except ValueError:
                    allowed = ", ".join(repr(m.value) for m in f.type)
                    raise ModuleError(f"{family} variant field {f.name} must be one of {allowed} "
                                      f"(given: {item!r})") from None
                continue
            minimum = f.metadata.get("minimum", 1)
            if not _is_int(item) or item < minimum:
                raise ModuleError(f"{family} variant field {f.name} must be an int >= {minimum} (given: {item!r} "
                                  f"in {value!r})")
            items[f.name] = int(item)
        return cls(**items)

    def key(self):
        """The variant as a tuple of ints and strings (part of the kernel key and of stored tuning results)."""
        return tuple(v.value if isinstance(v, Enum) else v for v in dataclasses.astuple(self))

    @classmethod
    def from_key(cls, key):
        return cls.parse(tuple(key), cls.__name__)

    def constraints(self, problem):
        """(holds, description) pairs; every description says what is required."""
        return ()

    def violations(self, problem):
        return [text for holds, text in self.constraints(problem) if not holds]

    def fits(self, problem):
        return not self.violations(problem)

    def check(self, problem, family):
        broken = self.violations(problem)
        if broken:
            raise ModuleError(f"{family} variant {self.key()} does not fit this call: needs {broken[0]} "
                              f"(layer {problem.describe()})")
        return self
