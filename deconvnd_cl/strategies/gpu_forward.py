"""Work-group tiled forward (GPU strategy, gpu_forward.mako): per group of stride phases an implicit GEMM,
rows = (phase, output map), positions = the padded input grid, the reduction over (input map, tap) pairs in
slabs of KC staged in __local memory: W read where it lies (no repacking pass), x from its padded grid.

Phases whose taps read x at the same offsets (every phase of a layer whose kernel size is a multiple of its
stride, no dilation: DCGAN's k4 s2, U-Net's k2 s2) are folded into the rows of one GEMM, so a work-group's x
slab serves all of them and the rows stay many when a layer has few output maps; other layers run one group
per phase.
"""

import dataclasses
from functools import lru_cache
from math import ceil, prod

import numpy as np

from ..geometry import row_major_strides
from ..launch import launch
from ..layouts import PackSpec, forward_layout
from ..packing import buffer_of, pack
from ..signatures import Idx, In, Int, Local, Out, Signature
from . import gpu_tiles
from .base import Implementation, constant_buffer

GROUP_COLUMNS = ("phases", "taps", "tap_start", "phase_start", "gs", "ge", "n_tiles", "halo")


@dataclasses.dataclass(frozen=True)
class GpuForwardTile(gpu_tiles.WindowedTile):
    """The work-group tile; window = 1 stages one window of x per input map (N + halo elements)."""

    subgroup: int = gpu_tiles.subgroup_field()

    def local_sizes(self, problem):
        return local_sizes(self, problem)


def local_sizes(tile, problem):
    """Bytes of the two __local regions: the staged operands, in the accumulator type (window: kc x taps x M
    weights and kc windows of N + halo; else kc x (M + N)) and the group's tables (tap offsets, W's tap per
    phase and tap, the phases' q ranges)."""
    plan = forward_plan(problem.geo, problem.in_sp, problem.out_sp, tile.n)
    tables = 4 * (plan.max_taps * (1 + plan.max_phases) + plan.max_phases * 3 * problem.nd)
    if not tile.window:  # operand_bytes: none on the subgroup path
        return tile.operand_bytes(problem), tables
    return problem.acc_dtype.itemsize * tile.kc * (plan.max_taps * tile.m + tile.n + plan.max_halo), tables


@dataclasses.dataclass(frozen=True)
class ForwardPlan:
    pack: PackSpec
    strides: tuple           # row pitches of the padded grid
    groups: np.ndarray       # one row of GROUP_COLUMNS per phase group
    phases: np.ndarray       # per phase in group order: W tap start in `taps_k`, then nd grid coordinates of its
                             # first output, nd extents, and nd origins lo * stride + r - pad (o = c * stride + origin)
    tap_offsets: np.ndarray  # per group tap: its offset in the grid, -(m . strides)
    taps_k: np.ndarray       # per phase in group order, per group tap: W's flat tap index
    rows: tuple              # phases per group (its rows: phases x output maps)
    max_taps: int
    max_phases: int
    max_halo: int
    n_tiles: int


@lru_cache(maxsize=256)
def forward_plan(geo, in_sp, out_sp, n):
    """The phase groups, their tables and the padded grid, for position tiles of n."""
    layout = forward_layout(geo, in_sp, out_sp, n, 4, outputs_inside=True)
    all_phases = geo.forward_phases()
    tap_index = row_major_strides(geo.size)
    live = [(ph, all_phases[ph.index]) for ph in layout.phases]
    m_sets = {tuple(sorted(m for _, m in taps)) for _, (_, taps) in live}
    fold = len(m_sets) == 1 and all(taps for _, (_, taps) in live)
    members = [live] if fold else [[entry] for entry in live]
    groups, phases, offsets, taps_k, rows = [], [], [], [], []
    plane = prod(layout.pack.grid)  # no cache-set padding (a CPU concern): an unpadded input is not copied
    for group in members:
        ms = sorted({m for _, (_, taps) in group for _, m in taps})
        group_offsets = [-sum(mm * s for mm, s in zip(m, layout.strides)) for m in ms]
        halo = -min(group_offsets, default=0)
        gs = min(ph.base for ph, _ in group)
        ge = max(ph.base + ph.v_count for ph, _ in group)
        n_tiles = ceil((ge - gs) / n)
        plane = max(plane, gs + n_tiles * n)
        groups.append((len(group), len(ms), len(offsets), len(phases), gs, ge, n_tiles, halo))
        offsets += group_offsets
        for ph, (r, taps) in group:
            k_of = {m: sum(kk * s for kk, s in zip(k, tap_index)) for k, m in taps}
            box = tuple(q - lo for q, lo in zip(ph.q0, layout.pack.lo))  # the phase's first output, in the grid
            origin = tuple(lo * s + sh for lo, s, sh in zip(layout.pack.lo, geo.stride, ph.shift))
            phases.append((len(taps_k),) + box + ph.extents + origin)
            taps_k += [k_of[m] for m in ms]  # folded phases share the offsets, so every m is one of theirs
        rows.append(len(group))
    pack = dataclasses.replace(layout.pack, plane=plane)
    return ForwardPlan(pack, layout.strides, np.array(groups, np.int64), np.array(phases, np.int64),
                       np.array(offsets, np.int64), np.array(taps_k, np.int32), tuple(rows),
                       max(g[1] for g in groups), max(g[0] for g in groups), max(g[7] for g in groups),
                       max(g[6] for g in groups))


def row_tiles(plan, cog, m):
    """(group, first row) of every row tile: each group's phases x output maps in blocks of m rows."""
    return np.array([(j, r) for j, phases in enumerate(plan.rows) for r in range(0, phases * cog, m)], np.int32)


class WorkgroupTiledForward(gpu_tiles.WorkgroupTiled, Implementation):
    family = "forward"
    template = "gpu_forward.mako"
    variant_type = GpuForwardTile

    def signatures(self, key):
        nd = key.nd
        return {"": Signature(
            In("xp"), In("w"), In("bias"), Out("y"), In("group_info", "idx"), In("phase_info", "idx"),
            In("tap_offsets", "idx"), In("taps_k", "int"), In("row_tiles", "int"), Local("scratch"),
            Local("tables", "int"),
            Int("has_bias"), Int("groups"), Int("ks"), Int("cig"), Int("cog"), Int("max_taps"),
            Int("max_phases"), Idx("x_plane"), Idx("out_size"), Idx("ps", nd - 1), Idx("os", nd),
            Int("stride", nd))}

    def template_args(self, key):
        return dict(super().template_args(key), group_columns=GROUP_COLUMNS)

    def run(self, problem, data, W, bias, variant):
        queue, geo = problem.queue, problem.geo
        y = problem.empty_output()
        if problem.N == 0:
            return y
        plan = forward_plan(geo, problem.in_sp, problem.out_sp, variant.n)
        planes = problem.N * problem.cin
        bits = problem.index_bits(planes * plan.pack.plane, y.size, W.size)
        xp = pack(problem, buffer_of(data), planes, plan.pack, bits)
        program = self.program(problem, variant, bits)
        idx = np.int64 if bits == 64 else np.int32
        tables = {name: constant_buffer(queue, ("gpu forward", name, geo, problem.in_sp, variant.n, variant.m,
                                                problem.cog, bits), make)
                  for name, make in (("group_info", lambda: plan.groups.astype(idx)),
                                     ("phase_info", lambda: plan.phases.astype(idx)),
                                     ("tap_offsets", lambda: plan.tap_offsets.astype(idx)),
                                     ("taps_k", lambda: plan.taps_k),
                                     ("row_tiles", lambda: row_tiles(plan, problem.cog, variant.m)))}
        operand_bytes, table_bytes = local_sizes(variant, problem)
        n_row_tiles = sum(ceil(phases * problem.cog / variant.m) for phases in plan.rows)
        launch(queue, program, "", (plan.n_tiles * variant.wn, n_row_tiles * variant.wm, problem.N * geo.groups),
               (variant.wn, variant.wm, 1),
               xp=xp, w=buffer_of(W), bias=buffer_of(bias) if bias is not None else buffer_of(W), y=y.data,
               scratch=operand_bytes, tables=table_bytes, has_bias=int(bias is not None), groups=geo.groups,
               ks=geo.taps, cig=problem.cig, cog=problem.cog, max_taps=plan.max_taps, max_phases=plan.max_phases,
               x_plane=plan.pack.plane, out_size=prod(problem.out_sp), ps=plan.strides[:-1],
               os=row_major_strides(problem.out_sp), stride=geo.stride, **tables)
        return y
