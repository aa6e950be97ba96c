"""Register-tiled forward (CPU strategy): per stride phase an implicit GEMM over the padded input grid, one
work-item a tile of output maps x positions in private vector accumulators; for kernel size = stride (U-Net and
V-Net decoders), x read in place and every last-axis phase in one work-item (cpu_forward.mako)."""

from math import ceil, prod

import numpy as np

from .. import correlation
from ..geometry import row_major_strides
from ..launch import launch
from ..layouts import forward_layout, interleaved_columns, interleaved_layout, phase_columns
from ..packing import buffer_of, pack
from ..signatures import Idx, In, Int, Out, Signature
from ..variants import GySource, XSource
from . import cpu_tiles
from .base import Implementation, constant_buffer, unroll_within_budget
from .cpu_backward_data import RegisterTiledBackwardData
from .weight_repack import forward_slots, phase_major_slots, repack, slots_in_order

CORRELATION = RegisterTiledBackwardData()  # runs a stride-1 layer's forward (correlation.py)


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
        if key.variant[3] == XSource.IN_PLACE.value:
            main = Signature(In("x"), In("wp"), In("bias"), Out("y"), Int("has_bias"), Int("groups"), Int("ks"),
                             Int("cig"), Int("cog"), Int("co_tiles"), Idx("in_size"), Idx("out_size"), Int("in_last"),
                             Int("tiles_per_row"), Int("lead_phases"), Int("in", nd - 1), Idx("is", nd - 1),
                             Idx("os", nd - 1), Int("stride", nd - 1))
        elif key.variant[3] == XSource.INTERLEAVED.value:
            main = Signature(In("xp"), In("wp"), In("bias"), Out("y"), In("phase_info", "idx"),
                             In("tap_offsets", "idx"), Int("has_bias"), Int("groups"), Int("nrows"), Int("ks"),
                             Int("cig"), Int("cog"), Int("co_tiles"), Idx("x_plane"), Idx("out_size"),
                             Int("out_last"), Idx("ps", nd - 1), Idx("os", nd - 1), Int("stride", nd - 1))
        else:
            main = Signature(In("xp"), In("wp"), In("bias"), Out("y"), In("phase_info", "idx"),
                             In("tap_offsets", "idx"), Int("has_bias"), Int("groups"), Int("nphases"), Int("ks"),
                             Int("cig"), Int("cog"), Int("co_tiles"), Idx("x_plane"), Idx("out_size"),
                             Idx("ps", nd - 1), Idx("os", nd), Int("stride", nd))
        return {"": main}

    def counts(self, problem, variant):
        """The stride phases' tap counts (each gets an unrolled case), within the unroll budget; x in place: the
        last stride."""
        if variant.x is XSource.IN_PLACE:
            return (problem.geo.stride[-1],)
        return unroll_within_budget(len(taps) for _, taps in problem.geo.forward_phases())

    def template_args(self, key):
        tm, tn, vw, x = key.variant
        in_place, interleaved = x == XSource.IN_PLACE.value, x == XSource.INTERLEAVED.value
        columns = interleaved_columns(key.nd) if interleaved else phase_columns(key.nd)
        return dict(tm=tm, tn=tn, vw=vw, columns=columns, x_in_place=in_place, interleaved_phases=interleaved,
                    over_maps=x == XSource.OVER_MAPS.value, sl=key.counts[0] if in_place else 1)

    def planned_programs(self, problem, variant):
        if _runs_as_correlation(problem, variant):
            return CORRELATION.planned_programs(*_as_correlation(problem, variant))
        return super().planned_programs(problem, variant)

    def run(self, problem, data, W, bias, variant):
        queue, geo = problem.queue, problem.geo
        if _runs_as_correlation(problem, variant):
            return self._run_as_correlation(problem, data, W, bias, variant)
        y = problem.empty_output()
        if problem.N == 0:
            return y
        if variant.x is XSource.IN_PLACE:
            return self._run_in_place(problem, data, W, bias, variant, y)
        # x packed: one phase a work-item, or both phases of a last stride of 2 (interleaved); a table row per
        # phase, or per phase of the leading axes
        tm, out_sp, co_tiles = variant.tm, problem.out_sp, ceil(problem.cog / variant.tm)
        if variant.x is XSource.INTERLEAVED:
            layout = interleaved_layout(geo, problem.in_sp, out_sp, variant.tn, variant.vw, problem.dtype.itemsize)
            rows, v_tiles = len(layout.rows), max(row.v_tiles for row in layout.rows)
            per_layout = dict(nrows=rows, out_last=out_sp[-1], os=row_major_strides(out_sp)[:-1],
                              stride=geo.stride[:-1])
        else:
            if variant.x is XSource.OVER_MAPS:  # tiles of a phase's output positions, none past them
                layout = forward_layout(geo, problem.in_sp, out_sp, 1, problem.dtype.itemsize)
                v_tiles = max(ceil(prod(phase.extents) / variant.tn) for phase in layout.phases)
            else:
                layout = forward_layout(geo, problem.in_sp, out_sp, variant.tn, problem.dtype.itemsize,
                                        vw=variant.vw)
                v_tiles = max(phase.v_tiles for phase in layout.phases)
            rows = len(layout.tap_starts) - 1
            per_layout = dict(nphases=rows, os=row_major_strides(out_sp), stride=geo.stride)
        planes = problem.N * problem.cin
        packed_w = geo.groups * co_tiles * tm * problem.cig * geo.taps
        if variant.x is XSource.OVER_MAPS:  # x channels-last in blocks of VW maps (a group's last block padded)
            block = variant.vw
            packed_x = problem.N * geo.groups * ceil(problem.cig / block) * block * layout.pack.plane
            bits = problem.index_bits(packed_x, y.size, packed_w)
            xp = pack(problem, buffer_of(data), problem.N, layout.pack, bits, channels=problem.cin, block=block)
        else:
            bits = problem.index_bits(planes * layout.pack.plane, y.size, packed_w)
            xp = pack(problem, buffer_of(data), planes, layout.pack, bits)

        program = self.program(problem, variant, bits)
        idx = np.int64 if bits == 64 else np.int32
        slots = (phase_major_slots(geo, tm, problem.cig) if variant.x is XSource.OVER_MAPS
                 else forward_slots(geo, tm))
        wp = repack(problem, W, bits, tm, True, slots)
        phase_info = constant_buffer(queue, ("forward phases", geo, layout, bits), lambda: layout.phase_table(idx))
        tap_offsets = constant_buffer(queue, ("forward tap offsets", geo, layout, bits),
                                      lambda: np.array(layout.tap_offsets, idx))
        grid = (rows * geo.groups * co_tiles, v_tiles, problem.N)
        if variant.x is XSource.OVER_MAPS:  # a phase's tiles fastest: each map tile's weights stay in cache
            grid = (v_tiles, grid[0], problem.N)
        launch(queue, program, "", grid,
               cpu_tiles.local_size(problem, program),
               xp=xp, wp=wp, bias=buffer_of(bias) if bias is not None else wp, y=y.data,
               phase_info=phase_info, tap_offsets=tap_offsets, has_bias=int(bias is not None), groups=geo.groups,
               ks=geo.taps, cig=problem.cig, cog=problem.cog, co_tiles=co_tiles, x_plane=layout.pack.plane,
               out_size=prod(out_sp), ps=layout.strides[:-1], **per_layout)
        return y

    def _run_as_correlation(self, problem, data, W, bias, variant):
        """A stride-1 layer: backward data's kernel on the mirrored call, W flipped and transposed to its
        tile-major layout by the repack, the bias its accumulators' start."""
        if problem.N == 0:
            return problem.empty_output()
        tm = variant.tm
        bits = problem.index_bits(W.size, problem.geo.groups * ceil(problem.cog / tm) * tm * problem.cig
                                  * problem.geo.taps)
        wp = repack(problem, W, bits, tm, True, correlation.flipped_slots(problem.geo, tm))
        mirrored, tile = _as_correlation(problem, variant)
        return CORRELATION.run(mirrored, data, None, tile, bias=bias, packed_weights=wp)

    def _run_in_place(self, problem, data, W, bias, variant, y):
        """x read where it lies (Geometry.direct): W repacked in its own tap order, one launch."""
        queue, geo, tm, tn = problem.queue, problem.geo, variant.tm, variant.tn
        co_tiles = ceil(problem.cog / tm)
        bits = problem.index_bits(problem.x_elements, y.size, geo.groups * co_tiles * tm * problem.cig * geo.taps)
        program = self.program(problem, variant, bits)
        wp = repack(problem, W, bits, tm, True, slots_in_order(geo, tm))
        tiles_per_row = ceil(problem.in_sp[-1] / tn)
        lead_phases = prod(geo.stride[:-1])
        launch(queue, program, "", (geo.groups * co_tiles, prod(problem.in_sp[:-1]) * lead_phases * tiles_per_row,
                                    problem.N),
               cpu_tiles.local_size(problem, program),
               x=buffer_of(data), wp=wp, bias=buffer_of(bias) if bias is not None else wp, y=y.data,
               has_bias=int(bias is not None), groups=geo.groups, ks=geo.taps, cig=problem.cig, cog=problem.cog,
               co_tiles=co_tiles, in_size=prod(problem.in_sp), out_size=prod(problem.out_sp),
               in_last=problem.in_sp[-1], tiles_per_row=tiles_per_row, lead_phases=lead_phases,
               os=row_major_strides(problem.out_sp)[:-1], stride=geo.stride[:-1],
               **{"in": problem.in_sp[:-1], "is": row_major_strides(problem.in_sp)[:-1]})
        return y


def _runs_as_correlation(problem, variant):
    """Whether the call's forward runs as backward data's kernel (a stride-1 layer, x in place or planar)."""
    return variant.x is XSource.PLANAR or (variant.x is XSource.IN_PLACE and correlation.applies(problem.geo))


def _as_correlation(problem, variant):
    """The backward-data call and tile that compute a stride-1 layer's forward (correlation.py): x in place, or
    packed into backward data's zero-bordered planes."""
    gy = GySource.IN_PLACE if variant.x is XSource.IN_PLACE else GySource.PLANAR
    tile = cpu_tiles.BackwardDataTile(variant.tm, variant.tn, variant.vw, gy)
    return correlation.mirror_problem(problem), tile
