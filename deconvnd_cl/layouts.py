"""Host-side layouts: the padded grids the tiled kernels read, and the launch sizes over them.

The tiled kernels never test bounds inside their tap loops. Instead `pack` copies an operand into a padded
grid (zero borders; for the output gradient also split into stride residue planes) whose planes are long
enough that every read of every tile, including the junk lanes past a row's end, stays inside its own plane.
These functions compute those grids; they depend on the shape, never on the device.
"""

from dataclasses import dataclass, fields
from functools import lru_cache
from itertools import product
from math import ceil, prod

import numpy as np

from .geometry import row_major_strides


CACHE_LINE = 64


def unaliased_plane(elements, itemsize):
    """A plane pitch >= elements whose consecutive planes do not compete for the same cache sets.

    The tiled kernels read one short run from each of many planes in turn (one per input map). When the pitch
    is a multiple of a large power of two (a 32x32 float plane is 4 KiB), all those runs fall into a few sets
    of the L1 and L2 caches and evict one another (the U-Net layer's forward kernel took 12-17 ms on 32x32
    planes against 13-14 ms on 32x33 ones, which have more work). A pitch of an odd number of cache lines
    spreads them over every set. Pitches that are not a multiple of 8 lines are left alone (their runs
    already spread over most sets)."""
    line = max(1, CACHE_LINE // itemsize)
    if elements % (8 * line):
        return elements
    lines = elements // line
    return (lines + 1 - lines % 2) * line


def virtual_count(extents, strides):
    """Number of virtual positions covering a box of `extents` laid out with row pitch `strides`."""
    return sum((e - 1) * s for e, s in zip(extents, strides)) + 1


@dataclass(frozen=True)
class PackSpec:
    """How `pack` lays out one operand: dst[plane, R, p] = src[plane, (p + lo)*split + R] or 0."""

    grid: tuple     # extents of the padded grid p
    lo: tuple       # source row of grid row 0, per axis (<= 0 means a zero border)
    split: tuple    # residue planes per axis (the stride for gy, 1 otherwise)
    ext: tuple      # source extents
    plane: int      # elements between consecutive (plane, R) planes: the grid plus a zero tail

    @property
    def nsplit(self):
        return prod(self.split)


@dataclass(frozen=True)
class ForwardPhase:
    index: int       # the phase's place in Geometry.forward_phases
    q0: tuple        # first q of the phase per axis (output o = q*stride + shift)
    extents: tuple   # number of q per axis
    base: int        # padded-grid offset of q0
    v_count: int
    v_tiles: int     # tiles of the phase's outputs
    shift: tuple     # r - pad per axis
    vpr: int = 0     # tiles of whole vectors within rows: vectors per row (0: tiles of virtual positions)


# Row vectors read through a pointer per vector, which costs the tap loop registers (measured 2-9% slower at the
# same lanes): they are taken where they compute at most this share of the virtual tiles' lanes.
ROW_VECTORS_AT_MOST = 7 / 8


def row_tiling(extents, v_tiles, tn, vw):
    """(vectors per row, tiles) when a phase's tiles are better made of vectors that each lie within one output
    row (each row covered by ceil(row / vw) vectors, its last moved back to end at the row's end) than of
    `v_tiles` tiles of consecutive virtual positions, which compute the padding between rows too; else
    (0, v_tiles). Row vectors need rows of at least a vector, and compute fewer lanes where rows are short
    beside their padding (8x8 inputs: 64 positions a phase against 80); ROW_VECTORS_AT_MOST says how many
    fewer."""
    if not vw or extents[-1] < vw or tn % vw:
        return 0, v_tiles
    vpr = ceil(extents[-1] / vw)
    tiles = ceil(prod(extents[:-1]) * vpr * vw / tn)
    return (vpr, tiles) if tiles <= v_tiles * ROW_VECTORS_AT_MOST else (0, v_tiles)


def input_tiling(in_sp, v_count, tn, vw):
    """How backward data tiles the input positions: (tiles per row, vectors per row, tiles). Tiles within input
    rows (stores of whole vectors, no junk lanes) where rows hold a tile and that computes no more lanes than
    tiles of the padded grid's v_count virtual positions; for shorter rows, row vectors where row_tiling takes
    them; else tiles of virtual positions (0, 0, tiles)."""
    virtual_tiles = ceil(v_count / tn)
    tiles_per_row = ceil(in_sp[-1] / tn)
    if in_sp[-1] >= tn and prod(in_sp[:-1]) * tiles_per_row <= virtual_tiles:
        return tiles_per_row, 0, prod(in_sp[:-1]) * tiles_per_row
    return (0,) + row_tiling(in_sp, virtual_tiles, tn, vw)


def phase_columns(nd):
    """Column index of each entry in a row of the forward's phase table: the one source of the table's layout
    for the host, which fills it (ForwardLayout.phase_table), and the template, which reads it."""
    names = ["v_tiles", "v_count", "base", "tap_start", "tap_count", "vpr"]
    for a in range(nd):
        names += [f"q0_{a}", f"qe_{a}", f"shift_{a}"]
    return {name: i for i, name in enumerate(names)}


def hashed_once(layout):
    """A frozen layout's hash, computed at its first use: a layout is part of the key of the tables each call
    looks up (strategies/base.py, constant_buffer), and hashing a 3d layer's phases anew took 10 us a call."""
    cached = layout.__dict__.get("_hash")
    if cached is None:
        cached = hash(tuple(getattr(layout, f.name) for f in fields(layout)))
        object.__setattr__(layout, "_hash", cached)
    return cached


@dataclass(frozen=True)
class ForwardLayout:
    pack: PackSpec
    strides: tuple       # row pitch of the padded grid
    phases: tuple        # ForwardPhase for every phase with outputs
    tap_starts: tuple    # per phase of Geometry.forward_phases, where its taps start in phase order (+ the end)
    tap_offsets: tuple   # per tap in phase order, its input offset in the padded grid: -(m . strides)

    __hash__ = hashed_once

    def phase_table(self, dtype):
        """One row per stride phase (as in Geometry.forward_phases; `phase_columns` names the entries); phases
        without outputs keep v_tiles = 0."""
        nd = len(self.strides)
        columns = phase_columns(nd)
        table = np.zeros((len(self.tap_starts) - 1, len(columns)), dtype)
        table[:, columns["tap_start"]] = self.tap_starts[:-1]
        table[:, columns["tap_count"]] = np.diff(self.tap_starts)
        for phase in self.phases:
            row = table[phase.index]
            row[[columns["v_tiles"], columns["v_count"], columns["base"], columns["vpr"]]] = (
                phase.v_tiles, phase.v_count, phase.base, phase.vpr)
            for a in range(nd):
                row[[columns[f"q0_{a}"], columns[f"qe_{a}"], columns[f"shift_{a}"]]] = (
                    phase.q0[a], phase.extents[a], phase.shift[a])
        return table


def phase_box(geo, r, out_sp):
    """(first q, number of q) per axis of the stride residues `r` (the first len(r) axes): the output positions
    o = q*stride + r - pad that lie in out_sp; a count <= 0 where none does."""
    q0 = tuple(-((rr - p) // s) for rr, p, s in zip(r, geo.pad, geo.stride))
    q1 = tuple((o - 1 + p - rr) // s for o, p, rr, s in zip(out_sp, geo.pad, r, geo.stride))
    return q0, tuple(b - a + 1 for a, b in zip(q0, q1))


@lru_cache(maxsize=256)  # a layer's calls all ask for the same layout
def forward_layout(geo, in_sp, out_sp, tn, itemsize, outputs_inside=False, vw=0):
    """outputs_inside: every phase's output box lies inside the grid too (grid coordinate c = q - lo), so a grid
    position has one decomposition into coordinates for all phases (the GPU strategy folds phases together);
    otherwise a phase's positions are only known relative to its base, and its box may wrap past a row.
    vw: the register-tiled kernel's vector width, whose phases may be tiled in row vectors (row_tiling)."""
    nd = geo.nd
    live = []
    lo, hi = [0] * nd, [i - 1 for i in in_sp]
    for index, (r, taps) in enumerate(geo.forward_phases()):
        q0, extents = phase_box(geo, r, out_sp)
        if any(e <= 0 for e in extents):
            continue  # no output position falls in this phase
        live.append((index, q0, extents))
        for a in range(nd):
            m_lo = min((m[a] for _, m in taps), default=0)
            m_hi = max((m[a] for _, m in taps), default=0)
            lo[a] = min(lo[a], q0[a] - m_hi)
            hi[a] = max(hi[a], q0[a] + extents[a] - 1 - (0 if outputs_inside else m_lo))
    grid = tuple(h - l + 1 for l, h in zip(lo, hi))
    strides = row_major_strides(grid)
    phases, plane = [], prod(grid)
    for index, q0, extents in live:
        base = sum((q - l) * s for q, l, s in zip(q0, lo, strides))
        v_count = virtual_count(extents, strides)
        v_tiles = ceil(v_count / tn)
        plane = max(plane, base + v_tiles * tn)  # junk lanes of the last tile read up to here (row vectors less)
        shift = tuple(rr - p for rr, p in zip(geo.forward_phases()[index][0], geo.pad))
        vpr, tiles = row_tiling(extents, v_tiles, tn, vw)
        phases.append(ForwardPhase(index, q0, extents, base, v_count, tiles, shift, vpr))
    pack = PackSpec(grid, tuple(lo), (1,) * nd, tuple(in_sp), unaliased_plane(plane, itemsize))
    tap_offsets = tuple(-sum(mm * s for mm, s in zip(m, strides)) for _, taps in geo.forward_phases() for _, m in taps)
    return ForwardLayout(pack, strides, tuple(phases), geo.forward_tap_order()[1], tap_offsets)


def interleaved_columns(nd):
    """Column index of each entry in a row of the interleaved forward's table (InterleavedLayout.phase_table):
    per last-axis phase h its taps, per leading axis the phase's first q, q extent and shift, and the row's
    length in u."""
    names = ["v_tiles", "base", "vpr", "tap_start_0", "tap_count_0", "tap_start_1", "tap_count_1"]
    for a in range(nd - 1):
        names += [f"q0_{a}", f"qe_{a}", f"shift_{a}"]
    return {name: i for i, name in enumerate(names + [f"qe_{nd - 1}"])}


@dataclass(frozen=True)
class InterleavedRow:
    phases: tuple    # per last-axis phase h, its index in Geometry.forward_phases
    q0: tuple        # first q of each leading axis
    extents: tuple   # q per leading axis, then u per row
    shift: tuple     # r - pad per leading axis
    base: int        # padded-grid offset of (q0, u = 0)
    v_tiles: int


@dataclass(frozen=True)
class InterleavedLayout:
    """The forward with both phases of a last stride of 2 in one work-item (XSource.INTERLEAVED). A row's
    positions u cover outputs 2u and 2u + 1, so a work-item's two phases' outputs interleave into whole vectors.
    Last-axis phase h (output 2u + h) is stride residue r = (h + pad) % 2 and reads x[u + (h + pad) // 2 - m],
    which its taps' offsets include; the leading axes keep their phases, a table row each. A tile is row vectors
    (vpr a row, the row's last moved back to end at its end), so its lanes never run past a row."""

    pack: PackSpec
    strides: tuple       # row pitch of the padded grid
    vpr: int             # vectors per row
    rows: tuple          # InterleavedRow per leading phase with outputs
    tap_offsets: tuple   # per tap in phase order: its input offset in the padded grid from u's position
    tap_starts: tuple    # as ForwardLayout's

    __hash__ = hashed_once

    def phase_table(self, dtype):
        nd = len(self.strides)
        columns = interleaved_columns(nd)
        table = np.zeros((len(self.rows), len(columns)), dtype)
        for entries, row in zip(table, self.rows):
            entries[[columns["v_tiles"], columns["base"], columns["vpr"]]] = row.v_tiles, row.base, self.vpr
            for h, index in enumerate(row.phases):
                entries[[columns[f"tap_start_{h}"], columns[f"tap_count_{h}"]]] = (
                    self.tap_starts[index], self.tap_starts[index + 1] - self.tap_starts[index])
            for a in range(nd - 1):
                entries[[columns[f"q0_{a}"], columns[f"shift_{a}"]]] = row.q0[a], row.shift[a]
            for a in range(nd):
                entries[columns[f"qe_{a}"]] = row.extents[a]
        return table


@lru_cache(maxsize=256)
def interleaved_layout(geo, in_sp, out_sp, tn, vw, itemsize):
    """The grid and table of the interleaved forward (a last stride of 2, rows of at least vw positions u)."""
    nd, last = geo.nd, geo.nd - 1
    phases = geo.forward_phases()
    index_of = {r: i for i, (r, _) in enumerate(phases)}
    pad = geo.pad[last]
    delta = tuple((h + pad) // 2 for h in range(2))
    u_count = ceil(out_sp[last] / 2)
    lo, hi = [0] * nd, [i - 1 for i in in_sp]
    live = []
    for lead in product(*(range(s) for s in geo.stride[:last])):
        q0, extents = phase_box(geo, lead, out_sp)
        if any(e <= 0 for e in extents):
            continue  # no output position falls in this leading phase
        indices = tuple(index_of[lead + ((h + pad) % 2,)] for h in range(2))
        live.append((indices, q0, extents, tuple(r - p for r, p in zip(lead, geo.pad))))
        for h, index in enumerate(indices):
            for _, m in phases[index][1]:
                for a in range(last):
                    lo[a] = min(lo[a], q0[a] - m[a])
                    hi[a] = max(hi[a], q0[a] + extents[a] - 1 - m[a])
                lo[last] = min(lo[last], delta[h] - m[last])
                hi[last] = max(hi[last], u_count - 1 + delta[h] - m[last])
    grid = tuple(h - l + 1 for l, h in zip(lo, hi))
    strides = row_major_strides(grid)
    vpr = ceil(u_count / vw)
    rows = tuple(InterleavedRow(indices, q0, extents + (u_count,), shift,
                                sum((q - l) * s for q, l, s in zip(q0 + (0,), lo, strides)),
                                ceil(prod(extents) * vpr * vw / tn))
                 for indices, q0, extents, shift in live)
    pack = PackSpec(grid, tuple(lo), (1,) * nd, tuple(in_sp), unaliased_plane(prod(grid), itemsize))
    tap_offsets = tuple(delta[(r[last] - pad) % 2] - sum(mm * s for mm, s in zip(m, strides))
                        for r, taps in phases for _, m in taps)
    return InterleavedLayout(pack, strides, vpr, rows, tap_offsets, geo.forward_tap_order()[1])


@dataclass(frozen=True)
class BackwardLayout:
    """The residue-plane grid shared by backward data and backward weights: input position i reads gy plane R
    at grid row i + D - qlo, so the virtual position v = sum(i * strides) of the input grid walks every tap's
    operand contiguously."""

    gy_pack: PackSpec
    strides: tuple
    v_count: int

    __hash__ = hashed_once

    def tap_offsets(self, geo):
        """Per tap (Geometry.backward_taps order), where it reads from the first residue plane of a map, in the
        virtual positions of the first input position: R * plane + (D - qlo) . strides."""
        plane_strides = row_major_strides(geo.stride)
        qlo = geo.backward_qlo()
        return tuple(sum(r * s for r, s in zip(rr, plane_strides)) * self.gy_pack.plane
                     + sum((d - q) * s for d, q, s in zip(dd, qlo, self.strides))
                     for _, rr, dd in geo.backward_taps())


@lru_cache(maxsize=256)
def backward_grid(geo, in_sp, out_sp):
    """(grid extents, row pitches, virtual positions covering the input) of the residue-plane grid."""
    qlo = geo.backward_qlo()
    taps = geo.backward_taps()
    qhi = tuple(max(-(-o // s) - 1, i - 1 + max(dd[a] for _, _, dd in taps))
                for a, (o, s, i) in enumerate(zip(out_sp, geo.stride, in_sp)))
    grid = tuple(h - l + 1 for l, h in zip(qlo, qhi))
    strides = row_major_strides(grid)
    return grid, strides, virtual_count(in_sp, strides)


@lru_cache(maxsize=256)
def backward_layout(geo, in_sp, out_sp, reach, itemsize):
    """reach: the virtual positions the kernels that read this layout may read from each tap's start, at least
    the v_count of backward_grid (a tile's junk lanes past the last input position read up to it)."""
    nd = geo.nd
    qlo = geo.backward_qlo()
    taps = geo.backward_taps()
    grid, strides, v_count = backward_grid(geo, in_sp, out_sp)
    max_shift = max(sum((dd[a] - qlo[a]) * strides[a] for a in range(nd)) for _, _, dd in taps)
    gy_pack = PackSpec(grid, qlo, geo.stride, tuple(out_sp),
                       unaliased_plane(max(prod(grid), reach + max_shift), itemsize))
    return BackwardLayout(gy_pack, strides, v_count)
