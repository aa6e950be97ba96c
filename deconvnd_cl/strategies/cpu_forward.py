"""Register-tiled forward (CPU strategy): per stride phase an implicit GEMM over the padded input grid, one
work-item a tile of output maps x positions in private vector accumulators (cpu_forward.mako)."""

from math import ceil, prod

import numpy as np
import pyopencl as cl

from .. import memory
from ..geometry import row_major_strides
from ..launch import launch
from ..layouts import forward_layout, phase_columns
from ..packing import buffer_of, pack
from ..signatures import Idx, In, Int, Out, Signature
from . import cpu_tiles
from .base import Implementation, pack_weights


class RegisterTiledForward(Implementation):
    strategy = "cpu"
    family = "forward"
    template = "cpu_forward.mako"
    variant_type = cpu_tiles.ForwardTile

    def default_variant(self, problem):
        return cpu_tiles.forward_tile(problem)

    def candidates(self, problem):
        return cpu_tiles.forward_candidates(problem)

    def signatures(self, key):
        nd = key.nd
        return {
            "": Signature(In("xp"), In("wp"), In("bias"), Out("y"), In("phase_info", "idx"), Int("has_bias"),
                          Int("cig"), Int("cog"), Int("co_tiles"), Idx("x_plane"), Idx("out_size"),
                          Idx("ps", nd - 1), Idx("os", nd)),
            "_wpack": Signature(In("w"), Out("wp"), Int("cig"), Int("cog"), Int("co_tiles"), Idx("rows")),
        }

    def template_args(self, key):
        geo = self.geometry(key)
        tm, tn, vw = key.variant
        tap_order, tap_starts = geo.forward_tap_order()
        return dict(tm=tm, tn=tn, vw=vw, ks=geo.taps, phases=geo.forward_phases(), tap_order=tap_order,
                    tap_starts=tap_starts, columns=phase_columns(key.nd))

    def run(self, problem, data, W, bias, variant):
        queue, geo = problem.queue, problem.geo
        problem.check_alloc("the output", prod(problem.out_shape))
        y = memory.empty(queue, problem.out_shape, problem.dtype)
        if problem.N == 0:
            return y
        tm, tn = variant.tm, variant.tn
        layout = forward_layout(geo, problem.in_sp, problem.out_sp, tn, problem.dtype.itemsize)
        planes = problem.N * problem.cin
        co_tiles = ceil(problem.cog / tm)
        packed_w = geo.groups * co_tiles * tm * problem.cig * geo.taps
        bits = problem.index_bits(planes * layout.pack.plane, y.size, packed_w)
        xp = pack(problem, buffer_of(data), planes, layout.pack, bits)

        program = self.program(problem, variant, bits)
        wp = pack_weights(problem, program, buffer_of(W), geo.groups * co_tiles * problem.cig, geo.taps * tm,
                          (program.local_size("_wpack", 16 if problem.on_cpu else 64),),
                          cig=problem.cig, cog=problem.cog, co_tiles=co_tiles)
        table = layout.phase_table(prod(geo.stride), np.int64 if bits == 64 else np.int32)
        info = cl.Buffer(queue.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=table)
        v_tiles = max(phase.v_tiles for phase in layout.phases)
        launch(queue, program, "", (len(table) * geo.groups * co_tiles, v_tiles, problem.N),
               cpu_tiles.local_size(problem, program),
               xp=xp, wp=wp, bias=buffer_of(bias) if bias is not None else wp, y=y.data, phase_info=info,
               has_bias=int(bias is not None), cig=problem.cig, cog=problem.cog, co_tiles=co_tiles,
               x_plane=layout.pack.plane, out_size=prod(problem.out_sp), ps=layout.strides[:-1],
               os=row_major_strides(problem.out_sp))
        return y
