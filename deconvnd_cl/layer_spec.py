"""Layer configurations as the command line and JSON files give them: "nd=2,inmaps=64,outmaps=32,size=4"."""

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import ModuleError
from .geometry import Geometry

TUPLE_FIELDS = ("size", "stride", "pad", "dilation", "postpad", "spatial")


@dataclass(frozen=True)
class LayerSpec:
    nd: int
    inmaps: int
    outmaps: int
    size: object
    stride: object = 1
    pad: object = 0
    dilation: object = 1
    postpad: object = 0
    groups: int = 1
    dtype: str = "float32"
    batch: int = 1                       # for bench / tune: the input shape to time
    spatial: object = None
    name: str = field(default="", compare=False)

    def geometry(self):
        geo = Geometry.create(self.nd, self.size, self.stride, self.pad, self.dilation, self.postpad, self.groups)
        geo.check_maps(self.inmaps, self.outmaps)
        return geo

    @property
    def np_dtype(self):
        try:
            return np.dtype(self.dtype)
        except TypeError:
            raise ModuleError(f"dtype {self.dtype!r} is unknown (expected: float32, float64 or float16)") from None

    def input_shape(self):
        """(batch, inmaps, *spatial); spatial defaults to the smallest size with a positive output."""
        geo = self.geometry()
        if self.spatial is None:
            spatial = tuple(max(1, -(-(2 * p - d * (k - 1)) // s) + 1)
                            for k, s, p, d in zip(geo.size, geo.stride, geo.pad, geo.dilation))
        else:
            spatial = self.spatial if isinstance(self.spatial, tuple) else (self.spatial,) * self.nd
        return (self.batch, self.inmaps) + tuple(spatial)

    def weight_shape(self):
        """(inmaps, outmaps / groups, *size), the layout of W."""
        return (self.inmaps, self.outmaps // self.groups) + self.geometry().size

    def bias_shape(self):
        return (1, self.outmaps) + (1,) * self.nd

    def label(self):
        g = self.geometry()
        ax = lambda v: "x".join(map(str, v))  # noqa: E731
        return self.name or (f"{self.nd}d {self.inmaps}->{self.outmaps} k{ax(g.size)} s{ax(g.stride)} "
                             f"p{ax(g.pad)} d{ax(g.dilation)} g{self.groups}")

    def to_dict(self):
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def _value(text):
    if "x" in text:
        return tuple(int(v) for v in text.split("x"))
    try:
        return int(text)
    except ValueError:
        return text


def parse(text):
    """'nd=2,inmaps=64,outmaps=32,size=4,stride=2,pad=1' (tuples as 3x3) -> LayerSpec."""
    fields = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise ModuleError(f"layer field {item!r} is not name=value (in {text!r})")
        name, value = item.split("=", 1)
        fields[name.strip()] = _value(value.strip())
    return from_dict(fields)


def from_dict(fields):
    fields = dict(fields)
    for name in TUPLE_FIELDS:
        if isinstance(fields.get(name), list):
            fields[name] = tuple(fields[name])
    try:
        spec = LayerSpec(**fields)
    except TypeError as e:
        raise ModuleError(f"bad layer config {fields}: {e}") from None
    spec.geometry()
    return spec


def load_file(path):
    """A JSON list of layer dicts (or {"layers": [...]}), as a model's deconvolution layers."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ModuleError(f"cannot read layer file {path}: {e}") from None
    if isinstance(data, dict):
        data = data.get("layers", [])
    if not isinstance(data, list):
        raise ModuleError(f"layer file {path} must hold a JSON list of layer objects")
    return [from_dict(item) for item in data]
