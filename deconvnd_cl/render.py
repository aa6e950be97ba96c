"""Rendering OpenCL C from the Mako templates: KernelKey -> self-contained source."""

import hashlib
from functools import lru_cache
from math import prod
from pathlib import Path

from mako.lookup import TemplateLookup

from .geometry import Geometry
from .kernel_key import CL_TYPES
from .tiles import GY_IN_PLACE

TEMPLATE_FILES = {
    "forward": "forward.mako",
    "backward_data": "backward_data.mako",
    "backward_weights": "backward_weights.mako",
    "pack": "pack.mako",
    "reduce": "reduce.mako",
}


def template_dir():
    """Installed: deconvnd_cl/templates (package data). From a source checkout: the repository's templates/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "common.mako").is_file():
            return candidate
    raise FileNotFoundError(f"deconvnd_cl templates not found next to {here}")


@lru_cache(maxsize=None)
def _lookup():
    return TemplateLookup(directories=[str(template_dir())], strict_undefined=True)


@lru_cache(maxsize=None)
def template_hash():
    """Hash of every template's text: part of the disk cache's identity, so an edited template misses."""
    digest = hashlib.sha256()
    for path in sorted(template_dir().glob("*.mako")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def kernel_strides(size):
    """Row-major strides of a kernel's taps inside W[ci, co, *size]."""
    return tuple(prod(size[a + 1:]) for a in range(len(size)))


def template_args(key):
    args = dict(name=key.name, nd=key.nd, dtype=CL_TYPES[key.dtype], index_bits=key.index_bits)
    if key.family == "pack":
        return args
    if key.family == "reduce":
        return dict(args, vw=key.tile[0])
    geo = Geometry(key.nd, key.size, key.stride, key.pad, key.dilation, (0,) * key.nd, key.groups)
    tm, tn, vw = key.tile[:3]
    if key.family == "backward_weights":
        args.update(layout=key.tile[3])
    if key.family == "backward_data":  # an optional fourth entry GY_IN_PLACE reads gy in place
        args.update(direct=key.tile[3:] == (GY_IN_PLACE,))
    args.update(tm=tm, tn=tn, vw=vw, groups=key.groups, ks=geo.taps, kstrides=kernel_strides(key.size),
                size=key.size, stride=key.stride, pad=key.pad, dilation=key.dilation)
    if key.family == "forward":
        args.update(phases=geo.forward_phases())
    else:
        taps = geo.backward_taps()
        plane_strides = kernel_strides(key.stride)
        args.update(nplanes=prod(key.stride), plane_strides=plane_strides, qlo=backward_qlo(geo),
                    taps=[(k, sum(r * s for r, s in zip(rr, plane_strides)), dd) for k, rr, dd in taps])
    return args


def backward_qlo(geo):
    """Per axis, the lowest row of a residue plane that any tap reads (<= 0): the planes' zero border."""
    taps = geo.backward_taps()
    return tuple(min(0, min(dd[a] for _, _, dd in taps)) for a in range(geo.nd))


def render(key):
    return _lookup().get_template(TEMPLATE_FILES[key.family]).render(**template_args(key))
