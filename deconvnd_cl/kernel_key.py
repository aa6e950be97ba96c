"""The key that names one specialised OpenCL program."""

import zlib
from dataclasses import dataclass

import numpy as np

from .errors import ModuleError

DTYPE_TAGS = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.float16): "f16"}
CL_TYPES = {"f32": "float", "f64": "double", "f16": "half"}

# The convolution families, by strategy, variant and tap counts (the geometry comes in tables), and their short
# names in kernel names; "shared" (the packs and reductions every layer uses: shared_program.py) is specialised only
# on rank and dtype.
CONV_FAMILIES = {"forward": "fwd", "backward_data": "bwdd", "backward_weights": "bwdw"}
FAMILIES = tuple(CONV_FAMILIES) + ("shared",)


def dtype_tag(dtype):
    try:
        return DTYPE_TAGS[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ModuleError(f"Unsupported dtype {dtype!r} (expected: float32, float64 or float16)") from None


def _normalised(value):
    """Tuples of ints and strings, as the JSON metadata of the disk cache can hold them."""
    if isinstance(value, (tuple, list)):
        return tuple(_normalised(v) for v in value)
    return value if isinstance(value, str) else int(value)


@dataclass(frozen=True)
class KernelKey:
    """Everything the generated source depends on, normalised so equal programs have equal keys.

    The layer's geometry (size, stride, pad, dilation, groups), batch, map counts and spatial extents are
    kernel arguments and tables, never part of the key: a new input size, and a new layer of the same rank,
    variant and counts, reuse a built program. `strategy` names the implementation family that renders it
    ("cpu", "gpu", or "common" for the shared program); `variant` is the variant's key (see variants.py); `counts`
    the small counts of the layer the template is specialised on (taps per stride phase to unroll, taps of the
    last axis interleaved in a vector: see each implementation's `counts`); `index_bits` is 32 or 64, chosen by
    the host from the largest linear index; `target` the LLVM target features the register-tiled kernels are
    compiled for beyond the device compiler's own (device_kind.target_features), "" for none.
    """

    family: str
    strategy: str
    nd: int
    dtype: str
    index_bits: int
    variant: tuple = ()
    counts: tuple = ()
    target: str = ""

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown kernel family {self.family!r}")
        for name in ("variant", "counts"):
            object.__setattr__(self, name, _normalised(getattr(self, name)))

    @property
    def name(self):
        """Readable and a valid C identifier: the kernel's function name and the CLI's label."""
        def axes(values):
            return "x".join(str(v) for v in values if not isinstance(v, str))

        def variant():
            return axes(self.variant) + "".join(f"_{v}" for v in self.variant if isinstance(v, str))

        tail = f"{self.dtype}_i{self.index_bits}"
        if self.family == "shared":
            return f"dcl_shared{self.nd}d_{tail}"
        counts = f"_c{axes(self.counts)}" if self.counts else ""
        target = "".join(f"_{feature}" for feature in self.target.split(",") if feature)
        target = target.replace(".", "_").replace("-", "_")
        if len(target) > 48:  # the name is a file name in the disk cache too: a digest of a long list
            target = f"_target{zlib.crc32(self.target.encode()):08x}"
        return f"dcl_{self.strategy}_{CONV_FAMILIES[self.family]}{self.nd}d_{tail}_t{variant()}{counts}{target}"

    def to_json(self):
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
