"""Register-tiled forward (CPU strategy): per stride phase an implicit GEMM over the padded input grid, one
work-item a tile of output maps x positions in private vector accumulators (cpu_forward.mako)."""

from math import ceil, prod

import numpy as np

from ..geometry import row_major_strides
from ..launch import launch
from ..layouts import forward_layout, phase_columns
from ..packing import buffer_of, copy_local_size, pack
from ..signatures import Idx, In, Int, Out, Signature
from . import cpu_tiles
from .base import Implementation, constant_buffer, pack_weights, unroll_within_budget


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
            "": Signature(In("xp"), In("wp"), In("bias"), Out("y"), In("phase_info", "idx"),
                          In("tap_offsets", "idx"), Int("has_bias"), Int("groups"), Int("nphases"), Int("ks"),
                          Int("cig"), Int("cog"), Int("co_tiles"), Idx("x_plane"), Idx("out_size"),
                          Idx("ps", nd - 1), Idx("os", nd), Int("stride", nd)),
            "_wpack": Signature(In("w"), Out("wp"), In("order", "int"), Int("ks"), Int("cig"), Int("cog"),
                                Int("co_tiles"), Idx("rows")),
        }

    def counts(self, problem, variant):
        """The stride phases' tap counts (each gets an unrolled case), within the unroll budget."""
        return unroll_within_budget(len(taps) for _, taps in problem.geo.forward_phases())

    def template_args(self, key):
        tm, tn, vw = key.variant
        return dict(tm=tm, tn=tn, vw=vw, columns=phase_columns(key.nd))

    def run(self, problem, data, W, bias, variant):
        queue, geo = problem.queue, problem.geo
        y = problem.empty_output()
        if problem.N == 0:
            return y
        tm, tn = variant.tm, variant.tn
        layout = forward_layout(geo, problem.in_sp, problem.out_sp, tn, problem.dtype.itemsize, vw=variant.vw)
        planes = problem.N * problem.cin
        co_tiles = ceil(problem.cog / tm)
        packed_w = geo.groups * co_tiles * tm * problem.cig * geo.taps
        bits = problem.index_bits(planes * layout.pack.plane, y.size, packed_w)
        xp = pack(problem, buffer_of(data), planes, layout.pack, bits)

        program = self.program(problem, variant, bits)
        idx = np.int64 if bits == 64 else np.int32
        order = constant_buffer(queue, ("forward tap order", geo),
                                lambda: np.array(geo.forward_tap_order()[0], np.int32))
        wp = pack_weights(problem, program, buffer_of(W), geo.groups * co_tiles * problem.cig, geo.taps * tm,
                          copy_local_size(problem, program, "_wpack"), order=order, ks=geo.taps,
                          cig=problem.cig, cog=problem.cog, co_tiles=co_tiles)
        phase_info = constant_buffer(queue, ("forward phases", geo, layout, bits), lambda: layout.phase_table(idx))
        tap_offsets = constant_buffer(queue, ("forward tap offsets", geo, layout, bits),
                                      lambda: np.array(layout.tap_offsets, idx))
        v_tiles = max(phase.v_tiles for phase in layout.phases)
        nphases = len(layout.tap_starts) - 1
        launch(queue, program, "", (nphases * geo.groups * co_tiles, v_tiles, problem.N),
               cpu_tiles.local_size(problem, program),
               xp=xp, wp=wp, bias=buffer_of(bias) if bias is not None else wp, y=y.data,
               phase_info=phase_info, tap_offsets=tap_offsets, has_bias=int(bias is not None), groups=geo.groups,
               nphases=nphases, ks=geo.taps, cig=problem.cig,
               cog=problem.cog, co_tiles=co_tiles, x_plane=layout.pack.plane, out_size=prod(problem.out_sp),
               ps=layout.strides[:-1], os=row_major_strides(problem.out_sp), stride=geo.stride)
        return y
