"""Work-group tiled backward weights (GPU strategy, gpu_backward_weights.mako): stage one of the two-stage
reduction (weight_gradient.py) as an implicit GEMM, rows = input maps, columns = (output map, tap) pairs, the
reduction over (batch item, residue-grid position) in slabs of KC staged in __local memory: x and gy read where
they lie (zeros outside them), so no packing pass. Long reductions are split into a fixed number of chunks
(from the shape and the device kind only), summed in order by the finalize.
"""

import dataclasses
from math import ceil, prod

import numpy as np

from ..geometry import row_major_strides
from ..launch import launch
from ..packing import buffer_of
from ..signatures import Idx, In, Int, Local, Out, Signature
from . import gpu_tiles
from .base import constant_buffer
from .gpu_backward_data import backward_grid_plan, gy_gather_args
from .weight_gradient import StageOne, TwoStageWeightGradient

CHUNK_MIN = 1024          # reduction steps a chunk keeps at least (each extra chunk costs a W-sized partial)
TARGET_WORK_GROUPS = 64   # work-groups worth launching at least on a GPU (a constant: the chunking, and so the
                          # summation order, must not depend on the device's size)


@dataclasses.dataclass(frozen=True)
class GpuWeightsTile(gpu_tiles.WorkgroupTile):
    subgroup: int = gpu_tiles.subgroup_field()

    def local_sizes(self, problem):
        return local_sizes(self, problem)


def local_sizes(tile, problem):
    """The staged operands (kc x (M + N)) and the tables (per tap: plane and shift; per plane: residues)."""
    plan = backward_grid_plan(problem.geo, problem.in_sp, problem.out_sp)
    return tile.operand_bytes(problem), 4 * (2 * problem.geo.taps + len(plan.residues) * problem.nd)


def chunks(problem, tile, steps):
    """Fixed chunks of the reduction: enough work-groups for the GPU, each chunk at least CHUNK_MIN steps."""
    work_groups = ceil(problem.cig / tile.m) * ceil(problem.cog * problem.geo.taps / tile.n) * problem.geo.groups
    return max(1, min(ceil(TARGET_WORK_GROUPS / work_groups), steps // CHUNK_MIN))


class WorkgroupTiledBackwardWeights(gpu_tiles.WorkgroupTiled, TwoStageWeightGradient):
    template = "gpu_backward_weights.mako"
    variant_type = GpuWeightsTile

    def gy_reach(self, problem, variant):
        return 0  # reads gy where it lies

    def gy_block(self, variant):
        return 1

    def signatures(self, key):
        nd = key.nd
        return {"": Signature(
            In("x"), In("gy"), Out("part", "acc"), In("tap_table", "int"), In("residues", "int"), Local("scratch"),
            Local("tables", "int"), Int("groups"), Int("ks"), Int("nplanes"), Int("cig"), Int("cog"),
            Idx("v_count"), Idx("steps"), Idx("chunk_steps"), Idx("shift_min"), Idx("out_size"), Idx("in_size"),
            Idx("w_size"), Idx("ps", nd - 1), Int("qlo", nd), Int("stride", nd), Int("out", nd), Idx("os", nd),
            Int("in", nd), Idx("is", nd))}

    def stage_one(self, problem, data, grad, W, variant, packs):
        queue, geo = problem.queue, problem.geo
        plan = backward_grid_plan(geo, problem.in_sp, problem.out_sp)
        steps = problem.N * plan.v_count
        n_chunks = chunks(problem, variant, steps)
        chunk_steps = ceil(steps / n_chunks)
        n_chunks = ceil(steps / chunk_steps)
        bits = problem.index_bits(grad.size, problem.x_elements, n_chunks * W.size, steps * problem.cin)
        program = self.program(problem, variant, bits)
        tap_table = constant_buffer(queue, ("gpu backward taps", geo, problem.in_sp, problem.out_sp),
                                    lambda: plan.taps)
        residues = constant_buffer(queue, ("residues", geo.stride), lambda: np.array(plan.residues, np.int32))
        operand_bytes, table_bytes = local_sizes(variant, problem)

        def enqueue(part):
            launch(queue, program, "", (ceil(problem.cog * geo.taps / variant.n) * variant.wn,
                                        ceil(problem.cig / variant.m) * variant.wm, geo.groups * n_chunks),
                   (variant.wn, variant.wm, 1),
                   x=buffer_of(data), gy=buffer_of(grad), part=part, tap_table=tap_table, residues=residues,
                   scratch=operand_bytes, tables=table_bytes, groups=geo.groups, ks=geo.taps,
                   nplanes=len(plan.residues), cig=problem.cig, cog=problem.cog, v_count=plan.v_count, steps=steps,
                   chunk_steps=chunk_steps, out_size=prod(problem.out_sp), in_size=prod(problem.in_sp),
                   w_size=W.size, **{"in": problem.in_sp, "is": row_major_strides(problem.in_sp)},
                   **gy_gather_args(problem, plan))
        return StageOne(bits, n_chunks, enqueue)
