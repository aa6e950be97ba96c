"""The key that names one specialised OpenCL program."""

from dataclasses import dataclass

import numpy as np

from .errors import ModuleError

DTYPE_TAGS = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.float16): "f16"}
CL_TYPES = {"f32": "float", "f64": "double", "f16": "half"}

# Families specialised on the layer's geometry; "pack" and "reduce" only on rank / dtype / vector width.
CONV_FAMILIES = ("forward", "backward_data", "backward_weights")
FAMILIES = CONV_FAMILIES + ("pack", "reduce")


def dtype_tag(dtype):
    try:
        return DTYPE_TAGS[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ModuleError(f"Unsupported dtype {dtype!r} (expected: float32, float64 or float16)") from None


@dataclass(frozen=True)
class KernelKey:
    """Everything the generated source depends on, normalised so equal programs have equal keys.

    Batch, map counts and spatial extents are kernel arguments, never part of the key: a new input size
    reuses the built program. `tile` is (TM, TN, vector width) for the tiled families and (vector width,)
    for "reduce"; `index_bits` is 32 or 64, chosen by the host from the largest linear index.
    """

    family: str
    nd: int
    dtype: str
    index_bits: int
    tile: tuple = ()
    size: tuple = ()
    stride: tuple = ()
    pad: tuple = ()
    dilation: tuple = ()
    groups: int = 0

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown kernel family {self.family!r}")
        for name in ("tile", "size", "stride", "pad", "dilation"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @classmethod
    def for_conv(cls, family, geometry, dtype, tile, index_bits):
        g = geometry
        return cls(family, g.nd, dtype_tag(dtype), index_bits, tile, g.size, g.stride, g.pad, g.dilation, g.groups)

    @property
    def name(self):
        """Readable and a valid C identifier: the kernel's function name and the CLI's label."""
        def axes(values):
            return "x".join(str(v) for v in values)

        tail = f"{self.dtype}_i{self.index_bits}"
        if self.family == "pack":
            return f"dcl_pack{self.nd}d_{tail}"
        if self.family == "reduce":
            return f"dcl_reduce_{tail}_v{axes(self.tile)}"
        short = {"forward": "fwd", "backward_data": "bwdd", "backward_weights": "bwdw"}[self.family]
        return (f"dcl_{short}{self.nd}d_k{axes(self.size)}_s{axes(self.stride)}_p{axes(self.pad)}"
                f"_d{axes(self.dilation)}_g{self.groups}_{tail}_t{axes(self.tile)}")

    def to_json(self):
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, fields):
        return cls(**fields)
