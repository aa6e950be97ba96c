"""Work-group tiled backward data (GPU strategy, gpu_backward_data.mako): the input gradient as an implicit GEMM,
rows = input maps, positions = the residue-plane grid (input position i at grid coordinate i), the reduction
over (output map, tap) in slabs of KC output maps staged in __local memory: W's rows for the slab (read where W
lies) and, per output map and stride residue plane, one window of gy holding every tap's reads for the
work-group's positions, gathered from gy where it lies (zeros outside it): no packing pass, and each gy element
read once per slab and row tile instead of once per tap and work-item.
"""

import dataclasses
from functools import lru_cache
from itertools import product
from math import ceil, prod

import numpy as np

from .. import memory
from ..geometry import row_major_strides
from ..launch import launch
from ..layouts import backward_grid
from ..packing import buffer_of
from ..signatures import Idx, In, Int, Local, Out, Signature
from . import gpu_tiles
from .base import Implementation, constant_buffer


@dataclasses.dataclass(frozen=True)
class BackwardGridPlan:
    grid: tuple        # residue-plane grid extents (grid coordinate c = input position i)
    strides: tuple     # its row pitches
    v_count: int       # virtual positions covering the input
    qlo: tuple         # grid coordinate c reads gy row (c + qlo) * stride + R
    residues: tuple    # per residue plane (row-major over the stride), R per axis
    taps: np.ndarray   # per tap (W's order): residue plane, shift within the window (from shift_min)
    shift_min: int     # smallest tap shift, in grid positions
    halo: int          # largest - smallest tap shift


@lru_cache(maxsize=256)
def backward_grid_plan(geo, in_sp, out_sp):
    grid, strides, v_count = backward_grid(geo, in_sp, out_sp)
    qlo = geo.backward_qlo()
    residues = tuple(product(*(range(s) for s in geo.stride)))
    plane_strides = row_major_strides(geo.stride)
    shifts = [sum((d - q) * s for d, q, s in zip(dd, qlo, strides)) for _, _, dd in geo.backward_taps()]
    shift_min = min(shifts)
    taps = np.array([(sum(r * s for r, s in zip(rr, plane_strides)), shift - shift_min)
                     for (_, rr, _), shift in zip(geo.backward_taps(), shifts)], np.int32)
    return BackwardGridPlan(grid, strides, v_count, qlo, residues, taps, shift_min, max(shifts) - shift_min)


def gy_gather_args(problem, plan):
    """Kernel arguments that place a residue-grid position of plane R in gy (shared with backward weights)."""
    return dict(ps=plan.strides[:-1], qlo=plan.qlo, stride=problem.geo.stride, out=problem.out_sp,
                os=row_major_strides(problem.out_sp), shift_min=plan.shift_min)


@dataclasses.dataclass(frozen=True)
class GpuBackwardDataTile(gpu_tiles.WindowedTile):
    """The work-group tile; window = 1 stages per output map and residue plane one window of gy serving every tap
    of the plane (large strides have many planes)."""

    subgroup: int = gpu_tiles.subgroup_field()

    def local_sizes(self, problem):
        return local_sizes(self, problem)


def local_sizes(tile, problem):
    """Bytes of the staged operands (A: kc x taps x M weights; B: kc x planes windows of N + halo gradients) and
    of the tables (per tap: plane and shift; per plane: its residues)."""
    plan = backward_grid_plan(problem.geo, problem.in_sp, problem.out_sp)
    planes, taps = len(plan.residues), problem.geo.taps
    tables = 4 * (2 * taps + planes * problem.nd)
    if not tile.window:
        return tile.operand_bytes(problem), tables
    return problem.acc_dtype.itemsize * tile.kc * (taps * tile.m + planes * (tile.n + plan.halo)), tables


class WorkgroupTiledBackwardData(gpu_tiles.WorkgroupTiled, Implementation):
    family = "backward_data"
    template = "gpu_backward_data.mako"
    variant_type = GpuBackwardDataTile

    def gy_reach(self, problem, variant):
        return 0  # reads gy where it lies

    def signatures(self, key):
        nd = key.nd
        return {"": Signature(
            In("gy"), In("w"), Out("gx"), In("tap_table", "int"), In("residues", "int"), Local("scratch"),
            Local("tables", "int"), Int("groups"), Int("ks"), Int("nplanes"), Int("cig"), Int("cog"),
            Idx("v_count"), Idx("shift_min"), Int("halo"), Idx("out_size"), Idx("in_size"),
            Idx("ps", nd - 1), Int("qlo", nd), Int("stride", nd), Int("out", nd), Idx("os", nd), Int("in", nd),
            Idx("is", nd))}

    def run(self, problem, grad, W, variant, packs=None):
        queue, geo = problem.queue, problem.geo
        gx_shape = (problem.N, problem.cin) + problem.in_sp
        gx = memory.empty(queue, gx_shape, problem.dtype)
        if problem.N == 0:
            return gx
        plan = backward_grid_plan(geo, problem.in_sp, problem.out_sp)
        bits = problem.index_bits(grad.size, gx.size, W.size, problem.N * problem.cin * plan.v_count)
        program = self.program(problem, variant, bits)
        tap_table = constant_buffer(queue, ("gpu backward taps", geo, problem.in_sp, problem.out_sp),
                                    lambda: plan.taps)
        residues = constant_buffer(queue, ("residues", geo.stride), lambda: np.array(plan.residues, np.int32))
        operand_bytes, table_bytes = local_sizes(variant, problem)
        launch(queue, program, "", (ceil(plan.v_count / variant.n) * variant.wn,
                                    ceil(problem.cig / variant.m) * variant.wm, problem.N * geo.groups),
               (variant.wn, variant.wm, 1),
               gy=buffer_of(grad), w=buffer_of(W), gx=gx.data, tap_table=tap_table, residues=residues,
               scratch=operand_bytes, tables=table_bytes, groups=geo.groups, ks=geo.taps,
               nplanes=len(plan.residues), cig=problem.cig, cog=problem.cog, v_count=plan.v_count,
               halo=plan.halo, out_size=prod(problem.out_sp), in_size=prod(problem.in_sp),
               **{"in": problem.in_sp, "is": row_major_strides(problem.in_sp)}, **gy_gather_args(problem, plan))
        return gx
