"""Register-tiled backward data (CPU strategy): the input gradient as a strided direct convolution of gy with
W, gy read from packed stride residue planes or, with a last stride of 1 or 2, in place (gy_in_place.py,
cpu_backward_data.mako)."""

from math import ceil, prod

import numpy as np

from .. import gy_in_place, memory
from ..geometry import row_major_strides
from ..launch import launch
from ..layouts import input_tiling
from ..packing import GradPacks, buffer_of
from ..signatures import Idx, In, Int, Out, Signature
from ..variants import GySource
from . import cpu_tiles
from .base import Implementation, constant_buffer, unroll_within_budget
from .weight_repack import backward_data_slots, repack


class RegisterTiledBackwardData(Implementation):
    strategy = "cpu"
    family = "backward_data"
    template = "cpu_backward_data.mako"
    variant_type = cpu_tiles.BackwardDataTile

    def default_variant(self, problem):
        return cpu_tiles.backward_data_tile(problem)

    def candidates(self, problem):
        return cpu_tiles.backward_data_candidates(problem)

    def gy_reach(self, problem, variant):
        """Virtual positions of the packed planes read from each tap's start (junk lanes of the last tile)."""
        return ceil(GradPacks.v_count(problem) / variant.tn) * variant.tn

    def counts(self, problem, variant):
        """In place: (the last stride, tap rows to unroll, the last axis' taps, then per tap group of the last
        axis its left and then its right border lanes: gy_in_place.borders); else (taps to unroll,). A count
        beyond the unroll budget is 0: the kernel loops over the table."""
        geo = problem.geo
        if variant.gy is GySource.IN_PLACE:
            lefts, rights = gy_in_place.borders(geo)
            rows = geo.taps // geo.size[-1]
            return (geo.stride[-1], rows if _unrolled(rows * len(lefts)) else 0, geo.size[-1]) + lefts + rights
        return (_unrolled(geo.taps),)

    def signatures(self, key):
        nd = key.nd
        common = (Int("tap_count"), Int("groups"), Int("ks"), Int("cig"), Int("cog"), Int("ci_tiles"),
                  Int("tiles_per_row"))
        if key.variant[3] == GySource.OVER_MAPS.value:
            main = Signature(In("gyp"), In("wp"), Out("gx"), In("tap_offsets", "idx"), In("bias"), Int("has_bias"),
                             *common, Int("nplanes"), Idx("plane"), Idx("in_size"), Idx("ps", nd - 1),
                             Int("in", nd))
        elif key.variant[3] == GySource.IN_PLACE.value:
            # bias / has_bias: the forward of a stride-1 layer run as a correlation (a last stride of 1 only)
            main = Signature(In("gy"), In("wp"), Out("gx"), In("tap_rows", "int"), In("zeros"), In("bias"),
                             Int("has_bias"),
                             *common, Idx("out_size"),
                             Idx("in_size"), Int("in_last"), Int("last_pad"), Int("last_dilation"), Int("in", nd - 1),
                             Idx("is", nd - 1), Idx("os", nd - 1), Int("stride", nd - 1), Int("out", nd - 1))
        else:
            main = Signature(In("gyp"), In("wp"), Out("gx"), In("tap_offsets", "idx"), In("bias"),  # as above
                             Int("has_bias"), *common, Int("vpr"),
                             Int("nplanes"), Idx("plane"), Idx("v_count"), Idx("in_size"), Idx("ps", nd - 1),
                             Int("in", nd), Idx("is", nd))
        return {"": main}

    def template_args(self, key):
        tm, tn, vw, gy = key.variant
        if gy == GySource.IN_PLACE.value:
            sl, ntaps, kl, *borders = key.counts
            groups = len(borders) // 2
            return dict(tm=tm, tn=tn, vw=vw, in_place=True, sl=sl, ntaps=ntaps, kl=kl, lefts=borders[:groups],
                        rights=borders[groups:], paired=paired_rows(key.counts, tm), over_maps=False)
        return dict(tm=tm, tn=tn, vw=vw, in_place=False, sl=1, kl=0, lefts=(), rights=(), ntaps=key.counts[-1],
                    paired=0, over_maps=gy == GySource.OVER_MAPS.value)

    def run(self, problem, grad, W, variant, packs=None, bias=None, packed_weights=None):
        """gx of the call. `packed_weights`: W already in the kernel's tile-major layout, and `bias` added to every
        output: the forward of a stride-1 layer run as a correlation (correlation.py), whose W is flipped and
        transposed to it."""
        queue, geo = problem.queue, problem.geo
        gx_shape = (problem.N, problem.cin) + problem.in_sp
        if problem.N == 0:
            return memory.empty(queue, gx_shape, problem.dtype)
        tm, tn = variant.tm, variant.tn
        in_place = variant.gy is GySource.IN_PLACE
        if variant.gy is GySource.OVER_MAPS and (packs is None or packs.block != variant.vw):
            packs = GradPacks(problem, grad, self.gy_reach(problem, variant), block=variant.vw)
        packs = packs or GradPacks(problem, grad, self.gy_reach(problem, variant))
        layout, bits = packs.layout, packs.bits
        gy = packs.get(variant.gy)  # the longest kernel first: the host's work below overlaps it
        gx = memory.empty(queue, gx_shape, problem.dtype)
        program = self.program(problem, variant, bits)
        ci_tiles = ceil(problem.cig / tm)
        in_strides = row_major_strides(problem.in_sp)
        if packed_weights is not None:
            wp = packed_weights
        elif tm == 1:  # tiles of one input map: the tile-major layout is W's own (taps interleaved in pairs too)
            wp = buffer_of(W)
        else:
            paired = paired_rows(program.key.counts, tm) if in_place else 0  # as the template lays out W's reads
            wp = repack(problem, W, bits, tm, False,
                        backward_data_slots(geo, tm, in_place and geo.stride[-1] == 2, paired))
        idx = np.int64 if bits == 64 else np.int32
        common = dict(wp=wp, gx=gx.data, bias=wp if bias is None else buffer_of(bias), has_bias=int(bias is not None),
                      groups=geo.groups, ks=geo.taps, cig=problem.cig, cog=problem.cog, ci_tiles=ci_tiles)
        local = cpu_tiles.local_size(problem, program)
        if in_place:
            tiles_per_row = ceil(problem.in_sp[-1] / tn)
            rows = gy_in_place.tap_rows(geo)
            table = constant_buffer(queue, ("backward data tap rows", geo), lambda: np.array(rows, np.int32).ravel())
            # a run of zeros that tap rows gy lacks read where two rows share vectors (the template's rows_mac):
            # from a vector before the run of one row's vectors to one after it
            n_zeros = 2 * variant.vw + geo.size[-1] + tn * geo.stride[-1]
            zeros = constant_buffer(queue, ("zeros", problem.dtype, n_zeros), lambda: np.zeros(n_zeros, problem.dtype))
            launch(queue, program, "", (geo.groups * ci_tiles, prod(problem.in_sp[:-1]) * tiles_per_row, problem.N),
                   local, gy=gy, tap_rows=table, zeros=zeros, tap_count=len(rows), tiles_per_row=tiles_per_row,
                   out_size=prod(problem.out_sp), in_size=prod(problem.in_sp), in_last=problem.in_sp[-1],
                   last_pad=geo.pad[-1], last_dilation=geo.dilation[-1], os=row_major_strides(problem.out_sp)[:-1],
                   stride=geo.stride[:-1], out=problem.out_sp[:-1],
                   **{"in": problem.in_sp[:-1], "is": in_strides[:-1]}, **common)
            return gx
        if variant.gy is GySource.OVER_MAPS:
            return self._run_over_maps(problem, variant, layout, gy, gx, program, idx, common, local)
        tiles_per_row, vpr, position_tiles = input_tiling(problem.in_sp, layout.v_count, tn, variant.vw)
        offsets = constant_buffer(queue, ("backward data taps", geo, layout, bits),
                                  lambda: np.array(layout.tap_offsets(geo), idx))
        launch(queue, program, "", (geo.groups * ci_tiles, position_tiles, problem.N), local,
               gyp=gy, tap_offsets=offsets, tap_count=geo.taps, tiles_per_row=tiles_per_row, vpr=vpr,
               nplanes=prod(geo.stride),
               plane=layout.gy_pack.plane, v_count=layout.v_count, in_size=prod(problem.in_sp),
               ps=layout.strides[:-1], **{"in": problem.in_sp, "is": in_strides}, **common)
        return gx

    @staticmethod
    def _run_over_maps(problem, variant, layout, gy, gx, program, idx, common, local):
        """Vectors over input maps: gy channels-last in blocks of VW maps on the residue planes (per image and
        residue, the groups' blocks of maps, each a plane of VW-map positions); a tap's offset is its residue's
        plane of blocks and its shift on the grid, in elements."""
        geo, queue, vw = problem.geo, problem.queue, variant.vw
        plane, blocks = layout.gy_pack.plane, geo.groups * ceil(problem.cog / vw)
        residue_pitch = row_major_strides(geo.stride)
        qlo = geo.backward_qlo()
        offsets = [(sum(r * s for r, s in zip(rr, residue_pitch)) * blocks * plane
                    + sum((d - q) * s for d, q, s in zip(dd, qlo, layout.strides))) * vw
                   for _, rr, dd in geo.backward_taps()]
        table = constant_buffer(queue, ("backward data taps over maps", geo, layout, idx, vw),
                                lambda: np.array(offsets, idx))
        in_size = prod(problem.in_sp)
        launch(queue, program, "", (ceil(in_size / variant.tn), geo.groups * ceil(problem.cig / variant.tm),
                                    problem.N), local,
               gyp=gy, tap_offsets=table, tap_count=geo.taps, tiles_per_row=0, nplanes=prod(geo.stride),
               plane=plane, in_size=in_size, ps=layout.strides[:-1], **{"in": problem.in_sp}, **common)
        return gx


def paired_rows(counts, tm):
    """From an in-place kernel's counts (the last stride, tap rows unrolled, the last axis' taps, ...) and its TM:
    the tap rows whose lone last taps it reads two rows to a set of vectors, which W's repack lays out to match
    (weight_repack.backward_data_slots). An odd last-axis kernel with a last stride of 2, its rows unrolled (at
    least two), tiles of more than one map; else 0."""
    sl, rows, kl = counts[:3]
    if sl != 2 or kl % 2 == 0 or tm == 1 or rows < 2:
        return 0
    return rows - rows % 2


def _unrolled(taps):
    """taps if within the unroll budget, else 0 (a loop over the tap table)."""
    return taps if unroll_within_budget([taps]) else 0
