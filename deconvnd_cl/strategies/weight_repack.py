"""W repacked tile-major for the register-tiled kernels (pack.mako's `_pack_w` kernel), so a work-item streams its
tile's weights contiguously: per row (group, tile, other map) the tile's maps for every tap, in the order and
slots its kernel reads them. The order is a table per layer and tile, so one kernel serves every layer."""

from functools import lru_cache
from math import ceil

import numpy as np

from .. import memory, shared_program
from ..launch import launch
from ..packing import buffer_of, copy_local_size
from .base import constant_buffer


# The slot tables are functions of the geometry and the tile only: computed once per layer, not per call.
@lru_cache(maxsize=256)
def forward_slots(geo, tm):
    """The forward's rows (g, output-map tile, input map): taps in phase order, TM maps a tap."""
    return tuple((tap, t * tm, 1) for t, tap in enumerate(geo.forward_tap_order()[0]))


@lru_cache(maxsize=256)
def phase_major_slots(geo, tm, cig):
    """The forward over maps' rows: per output-map tile, phase by phase, each phase's taps of every input map in
    turn (wp[g][tile][phase][ci][phase's taps][TM]), so a work-item's weights are one contiguous run, where
    rows of every tap would have it read a phase's quarter of each row (DCGAN 512->256 8x8, forward over maps, 9
    rounds alternating against the default tile over positions: 1.06x as fast with rows of every tap, 1.28x
    phase-major). A slot's place then moves with the row's input map: (tap, first, step, per input map), the row's
    own start (ci * ks * TM within its tile) moved by `per input map` for each of the row's input maps."""
    slots, ks = [], geo.taps
    order, starts = geo.forward_tap_order()
    for t, tap in enumerate(order):
        phase = max(p for p in range(len(starts) - 1) if starts[p] <= t)
        start, count = starts[phase], starts[phase + 1] - starts[phase]
        slots.append((tap, (start * (cig - 1) + t) * tm, 1, (count - ks) * tm))
    return tuple(slots)


@lru_cache(maxsize=256)
def slots_in_order(geo, tm):
    """Taps in W's order, TM maps a tap (the forward reading x in place, backward data)."""
    return tuple((t, t * tm, 1) for t in range(geo.taps))


@lru_cache(maxsize=256)
def backward_data_slots(geo, tm, pairs, paired_rows=0):
    """Backward data's rows (g, input-map tile, output map): taps in W's order, TM maps a tap; with `pairs` (gy
    read in place with a last stride of 2), per row of taps each group of two last-axis taps as TM pairs, so an
    input map's two taps load as one pair (an odd kernel's last group: TM single taps). The first `paired_rows`
    rows of an odd kernel go two by two: both rows' pairs of taps, then their lone last taps as TM pairs (row t's
    first), which the kernel reads in one set of vectors."""
    if not pairs:
        return slots_in_order(geo, tm)
    kl = geo.size[-1]
    slots = []
    for t in range(geo.taps):
        row, kx = divmod(t, kl)
        first = kx - kx % 2  # the first tap of its group
        width = min(2, kl - first)
        if row < paired_rows and width == 1:
            slots.append((t, ((row - row % 2) * kl + 2 * (kl - 1)) * tm + row % 2, 2))
        else:
            start = (row - 1) * kl + kl - 1 if row < paired_rows and row % 2 else row * kl
            slots.append((t, (start + first) * tm + kx % 2, width))
    return tuple(slots)


def repack(problem, W, index_bits, tm, tile_of_co, slots):
    """W -> a fresh buffer of rows (g, tile of TM maps, other map), each ks * tm elements laid out by `slots`
    (per tap: W's tap, its first slot, the step between maps, and optionally how far the slot moves per input
    map, phase_major_slots); `tile_of_co`: the tiles run over output maps."""
    geo, queue = problem.geo, problem.queue
    tiled, others = (problem.cog, problem.cig) if tile_of_co else (problem.cig, problem.cog)
    tiles = ceil(tiled / tm)
    rows = geo.groups * tiles * others
    total = rows * geo.taps * tm
    problem.check_alloc("the packed weights", total, scratch=True, per_batch=False)
    wp = memory.buffer(queue, total * problem.dtype.itemsize)
    program = shared_program.program(queue, geo.nd, problem.dtype, index_bits)
    # each slot as (tap, first, step, per input map): the last is 0 but for phase_major_slots
    table = constant_buffer(queue, ("weight slots", slots),
                            lambda: np.array([slot + (0,) * (4 - len(slot)) for slot in slots], np.int32).ravel())
    launch(queue, program, "_pack_w", (rows,), copy_local_size(problem, program, "_pack_w"), w=buffer_of(W), wp=wp,
           taps=table, ks=geo.taps, tm=tm, cig=problem.cig, cog=problem.cog, tiles=tiles,
           tile_of_co=int(tile_of_co), rows=rows)
    return wp
