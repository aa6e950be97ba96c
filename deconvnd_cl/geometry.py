"""Deconvolution geometry: parameter normalisation and validation, output shapes, and the stride phases.

Everything here is plain integer arithmetic shared by the kernels' templates, the launch plans and the
NumPy reference, so the three can never disagree about where a tap lands.
"""

from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from math import prod

from .errors import ModuleError


def as_tuple(name, value, nd):
    """An int (same on every axis) or a sequence of nd ints -> tuple of nd Python ints."""
    if isinstance(value, bool):
        raise ModuleError(f"{name} must be an int or a tuple of {nd} ints (given: {value!r})")
    if isinstance(value, int) or hasattr(value, "__index__") and not hasattr(value, "__len__"):
        return (int(value),) * nd
    try:
        items = tuple(value)
    except TypeError:
        raise ModuleError(f"{name} must be an int or a tuple of {nd} ints (given: {value!r})") from None
    if len(items) != nd or not all(isinstance(v, int) and not isinstance(v, bool) or hasattr(v, "__index__")
                                    for v in items):
        raise ModuleError(f"{name} must be an int or a tuple of {nd} ints (given: {value!r})")
    return tuple(int(v) for v in items)


@dataclass(frozen=True)
class Geometry:
    """The layer's hyper-parameters, normalised to tuples of nd ints and validated."""

    nd: int
    size: tuple
    stride: tuple
    pad: tuple
    dilation: tuple
    postpad: tuple
    groups: int

    @classmethod
    def create(cls, nd, size, stride=1, pad=0, dilation=1, postpad=0, groups=1):
        """Validated geometry. Every call of a layer validates the same parameters again, so parameters made of
        plain ints (ints and tuples of ints, as modules pass them) are looked up in a cache first. Only exact
        ints: True == 1 and 2.0 == 2 as cache keys, and those must still be refused."""
        params = (nd, size, stride, pad, dilation, postpad, groups)
        if all(type(v) is int or type(v) is tuple and all(type(e) is int for e in v) for v in params):
            return _create_cached(cls, *params)
        return cls._validated(*params)

    @classmethod
    def _validated(cls, nd, size, stride, pad, dilation, postpad, groups):
        if isinstance(nd, bool) or not isinstance(nd, int) or nd < 1:
            raise ModuleError(f"nd must be a positive int (given: {nd!r})")
        size, stride, pad, dilation, postpad = (
            as_tuple(name, value, nd) for name, value in
            (("size", size), ("stride", stride), ("pad", pad), ("dilation", dilation), ("postpad", postpad))
        )
        for name, values in (("size", size), ("stride", stride), ("dilation", dilation)):
            if any(v < 1 for v in values):
                raise ModuleError(f"{name} must be positive on every axis (given: {values})")
        for name, values in (("pad", pad), ("postpad", postpad)):
            if any(v < 0 for v in values):
                raise ModuleError(f"{name} must be non-negative on every axis (given: {values})")
        for axis, (pp, s, d) in enumerate(zip(postpad, stride, dilation)):
            if pp >= max(s, d):
                raise ModuleError(
                    f"postpad {postpad} on axis {axis} must be smaller than max(stride, dilation) = {max(s, d)}"
                )
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ModuleError(f"groups must be a positive int (given: {groups!r})")
        return cls(nd, size, stride, pad, dilation, postpad, groups)

    @property
    def taps(self):
        return prod(self.size)

    def check_maps(self, inmaps, outmaps):
        for name, maps in (("inmaps", inmaps), ("outmaps", outmaps)):
            if isinstance(maps, bool) or not isinstance(maps, int) or maps < 1:
                raise ModuleError(f"{name} must be a positive int (given: {maps!r})")
            if maps % self.groups != 0:
                raise ModuleError(f"groups ({self.groups}) must divide {name} ({maps})")

    def out_spatial(self, in_spatial):
        """Output extents for input extents; ModuleError if any is not positive."""
        out = tuple(
            (i - 1) * s + d * (k - 1) - 2 * p + 1 + pp
            for i, k, s, p, d, pp in zip(in_spatial, self.size, self.stride, self.pad, self.dilation, self.postpad)
        )
        if any(o <= 0 for o in out):
            raise ModuleError(f"Output spatial size {out} is not positive for input spatial size {tuple(in_spatial)} "
                              f"(size={self.size}, stride={self.stride}, pad={self.pad}, dilation={self.dilation})")
        return out

    @lru_cache(maxsize=256)  # noqa: B019 -- geometries are few and immutable; every call of a layer asks again
    def forward_phases(self):
        """Stride phases of the forward gather.

        Output position o (per axis) gets contributions from taps k with (o + pad - k*d) divisible by s, namely
        from x[(o + pad - k*d) / s]. Writing o + pad = q*s + r, a tap k belongs to phase r when k*d = r + m*s,
        and then reads x[q - m]. Returns ((r, ((k, m), ...)), ...) for every r in the grid of stride residues,
        each k and m a tuple of nd ints.
        """
        phases = []
        for r in product(*(range(s) for s in self.stride)):
            taps = tuple(
                (k, tuple((kk * d - rr) // s for kk, d, rr, s in zip(k, self.dilation, r, self.stride)))
                for k in product(*(range(n) for n in self.size))
                if all((kk * d - rr) % s == 0 for kk, d, rr, s in zip(k, self.dilation, r, self.stride))
            )
            phases.append((r, taps))
        return tuple(phases)

    @property
    def non_overlapping(self):
        """Up-sampling whose taps never overlap: a stride above 1 and at most one tap per output position
        (kernel size = stride, as in U-Net/V-Net decoders), so each stride phase is a 1x1 convolution."""
        return any(s > 1 for s in self.stride) and all(len(taps) <= 1 for _, taps in self.forward_phases())

    @lru_cache(maxsize=256)  # noqa: B019
    def forward_tap_order(self):
        """The taps in phase order, as W's row-major tap indices, and where each phase's taps start in that
        order: (order, starts), starts with one entry a phase and a last entry = number of taps."""
        strides = row_major_strides(self.size)
        order, starts = [], [0]
        for _, taps in self.forward_phases():
            order += [sum(kk * st for kk, st in zip(k, strides)) for k, _ in taps]
            starts.append(len(order))
        return tuple(order), tuple(starts)

    @property
    def direct(self):
        """Kernel size = stride on every axis (above 1 on one at least), no padding, no dilation, and a last-axis
        stride of at most 2: every output position is one tap of one input position, and the CPU kernels read x
        (forward) and gy (weight gradient) where they lie, instead of from a packed copy."""
        return (self.size == self.stride and any(s > 1 for s in self.stride) and not any(self.pad)
                and all(d == 1 for d in self.dilation) and self.stride[-1] <= 2)

    @lru_cache(maxsize=256)  # noqa: B019
    def backward_taps(self):
        """Per tap k, where the backward passes read the output gradient.

        The gradient read by input position i through tap k sits at j = i*s + k*d - pad. Splitting the output
        grid into s residue planes, j = (i + D)*s + R with R = (k*d - pad) mod s and D = (k*d - pad) div s.
        Returns ((k, R, D), ...), each a tuple of nd ints.
        """
        return tuple(
            (k,
             tuple((kk * d - p) % s for kk, d, p, s in zip(k, self.dilation, self.pad, self.stride)),
             tuple((kk * d - p) // s for kk, d, p, s in zip(k, self.dilation, self.pad, self.stride)))
            for k in product(*(range(n) for n in self.size))
        )


    def backward_qlo(self):
        """Per axis, the lowest row of a residue plane that any tap reads (<= 0): the planes' zero border."""
        taps = self.backward_taps()
        return tuple(min(0, min(dd[a] for _, _, dd in taps)) for a in range(self.nd))

    def zero_postpad_out(self, in_spatial):
        """Output extents for these input extents with no postpad (may be <= 0)."""
        return tuple((i - 1) * s + d * (k - 1) - 2 * p + 1
                     for i, k, s, p, d in zip(in_spatial, self.size, self.stride, self.pad, self.dilation))

    def smallest_input(self, out_spatial):
        """The smallest input extents whose output, with some postpad < max(stride, dilation), has these extents
        (the inverse the backward passes use when the forward input is not given); per axis at least 1."""
        return tuple(
            max(1, -(-(o - max(s, d) - d * (k - 1) + 2 * p) // s) + 1)
            for o, k, s, p, d in zip(out_spatial, self.size, self.stride, self.pad, self.dilation))


def row_major_strides(extents):
    return tuple(prod(extents[a + 1:]) for a in range(len(extents)))


@lru_cache(maxsize=1024)
def _create_cached(cls, nd, size, stride, pad, dilation, postpad, groups):
    return cls._validated(nd, size, stride, pad, dilation, postpad, groups)
