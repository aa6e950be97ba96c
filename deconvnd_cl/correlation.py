"""The forward of a stride-1 layer as a correlation: with stride 1, y[o] = sum_k x[o + pad - k*d] W[k] reads x
the way backward data reads gy, gx[i] = sum_k gy[i + k*d - pad'] W'[k], with pad' = d*(k - 1) - pad and W' = W
with its taps flipped and its input and output maps swapped. So the register-tiled forward runs the backward-data
kernel on a mirrored call: the one that reads gy in place (gy_in_place.py; ForwardTile x="in_place"), x read
where it lies with no packing pass, or the one that reads packed planes (x="planar", for rows not a multiple of
the tile); both measured faster than the forward's own kernel over a packed grid (docs/performance.md).

The mirror needs no postpad (a stride-1 postpad would make the mirror's negative) and pad <= d*(k - 1) on every
axis (else pad' is negative); everything else about the call carries over."""

import dataclasses
from functools import lru_cache

from . import gy_in_place
from .geometry import Geometry


def applies(geo):
    """A stride of 1 on every axis, no postpad, and pad <= dilation * (size - 1) on every axis."""
    return (all(s == 1 for s in geo.stride) and not any(geo.postpad)
            and all(p <= d * (k - 1) for p, d, k in zip(geo.pad, geo.dilation, geo.size)))


def mirror_geometry(geo):
    """The backward-data geometry whose input gradient is this layer's forward output."""
    pad = tuple(d * (k - 1) - p for p, d, k in zip(geo.pad, geo.dilation, geo.size))
    return Geometry.create(geo.nd, geo.size, 1, pad, geo.dilation, 0, geo.groups)


def mirror_problem(problem):
    """The backward-data call: gy = x (the layer's input maps), gx = y (its output maps and extents)."""
    return dataclasses.replace(problem, geo=mirror_geometry(problem.geo), cin=problem.cout, cout=problem.cin,
                               in_sp=problem.out_sp, out_sp=problem.in_sp)


def constraints(problem, tn, vw):
    """(holds, description) pairs for a forward tile of TN positions in vectors of VW run as a correlation:
    backward data's, told in the forward's terms (its gy is x, its input rows the output's)."""
    rules = gy_in_place.constraints(mirror_geometry(problem.geo), problem.out_sp[-1], problem.in_sp[-1], tn, vw)
    return [(holds, _in_forward_terms(text)) for holds, text in rules]


def _in_forward_terms(text):
    text = text.replace("(a smaller last-axis pad, or gy read from packed planes)", "(or x packed)")
    return text.replace("input rows", "output rows").replace("gradient rows", "input rows").replace("gy", "x")


@lru_cache(maxsize=256)
def flipped_slots(geo, tm):
    """The weight repack's slots (strategies/weight_repack.py) for the mirror, tiles over the layer's output
    maps: tap t of the mirror holds W's tap ks - 1 - t (every axis flipped), TM maps a tap."""
    return tuple((geo.taps - 1 - t, t * tm, 1) for t in range(geo.taps))
