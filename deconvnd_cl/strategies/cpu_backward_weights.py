"""Register-tiled backward weights (CPU strategy): stage one of the two-stage reduction (weight_gradient.py),
partial weight gradients over fixed chunks of input rows (cpu_backward_weights.mako)."""

from functools import lru_cache
from itertools import product
from math import ceil, prod

import numpy as np

from ..geometry import row_major_strides
from ..launch import launch
from ..layouts import PackSpec
from ..packing import GradPacks, buffer_of, pack
from ..signatures import Idx, In, Int, Out, Signature
from ..variants import GySource, XSource
from . import cpu_tiles
from .base import constant_buffer
from .weight_gradient import StageOne, TwoStageWeightGradient


@lru_cache(maxsize=256)
def tap_table(geo, in_place):
    """Where each work-item's tap reads gy, one row per tap (in place: per row of last-axis taps, in W's order):
    (residue plane, row shift per axis). The shift of axis a is in grid rows, times the row pitch ps{a} for all
    axes but the last. Packed layouts: the tap's plane R and D - qlo (Geometry.backward_taps). In place: gy's
    own rows, input row i of axis a meeting gy's row stride * i + k * dilation - pad, so the shift is
    k * dilation - pad; on the last axis, whose taps the work-item owns, -pad."""
    if in_place:
        rows = product(*(range(k) for k in geo.size[:-1]))
        return tuple((0,) + tuple(k * d - p for k, d, p in zip(row, geo.dilation, geo.pad)) + (-geo.pad[-1],)
                     for row in rows)
    plane_strides = row_major_strides(geo.stride)
    qlo = geo.backward_qlo()
    return tuple((sum(r * s for r, s in zip(rr, plane_strides)),) + tuple(d - q for d, q in zip(dd, qlo))
                 for _, rr, dd in geo.backward_taps())


def inner_positions(problem):
    """x channels-last: [v_lo, v_hi), the input positions of a row whose every last-axis tap lies inside gy's
    row (stride * v - pad + k * dilation for k < size); the positions outside it check each tap."""
    geo = problem.geo
    s, p, d, k = geo.stride[-1], geo.pad[-1], geo.dilation[-1], geo.size[-1]
    in_last, out_last = problem.in_sp[-1], problem.out_sp[-1]
    v_lo = min(in_last, -(-p // s))
    v_hi = max(v_lo, min(in_last, (out_last - 1 + p - (k - 1) * d) // s + 1))
    return v_lo, v_hi


class RegisterTiledBackwardWeights(TwoStageWeightGradient):
    strategy = "cpu"
    template = "cpu_backward_weights.mako"
    variant_type = cpu_tiles.WeightsTile

    def default_variant(self, problem):
        return cpu_tiles.weights_tile(problem)

    def candidates(self, problem):
        return cpu_tiles.weights_candidates(problem)

    def gy_reach(self, problem, variant):
        """It reads whole vectors from the start of each input row."""
        return GradPacks.v_count(problem) + variant.vw

    def gy_block(self, variant):
        """Maps per block of the channels-last layout: a tile's output maps."""
        return variant.tn

    def counts(self, problem, variant):
        """gy in place: the taps of the last axis a work-item owns (x in place: interleaved in a vector's lanes,
        as many as the last stride; x channels-last: all of them)."""
        if variant.gy is not GySource.IN_PLACE:
            return ()
        return (problem.geo.size[-1] if variant.x is XSource.CHANNELS_LAST else problem.geo.stride[-1],)

    def signatures(self, key):
        nd = key.nd
        return {"": Signature(
            In("x"), In("gyp"), Out("part", "acc"), In("tap_table", "int"), Int("tap_items"), Int("ks"),
            Int("groups"), Int("nplanes"), Int("cig"), Int("cog"), Int("ci_tiles"), Int("co_tiles"),
            Idx("chunk_rows"), Idx("total_rows"), Idx("rows_per_b"), Idx("in_plane"), Idx("g_plane"),
            Int("blocks_per_group"), Int("in_last"), Int("taps_fastest"), Int("in", nd - 1), Idx("is", nd - 1),
            Idx("ps", nd - 1), Int("stride", nd - 1), Int("out", nd - 1), Int("out_last"), Int("last_stride"),
            Int("last_dilation"), Int("v_lo"), Int("v_hi"))}

    def template_args(self, key):
        tm, tn, vw, gy, x = key.variant
        return dict(tm=tm, tn=tn, vw=vw, gy=gy, x=x, sl=key.counts[0] if gy == GySource.IN_PLACE.value else 1)

    def stage_one(self, problem, data, grad, W, variant, packs):
        queue, geo = problem.queue, problem.geo
        in_place = variant.gy is GySource.IN_PLACE
        packs = packs or GradPacks(problem, grad, self.gy_reach(problem, variant), variant.tn)
        layout, bits = packs.layout, packs.bits
        gyp = packs.get(variant.gy)
        x_source = buffer_of(data)
        if variant.x is XSource.CHANNELS_LAST:  # x's maps interleaved in blocks of a tile's TM
            bits = max(bits, problem.index_bits(problem.N * geo.groups * ceil(problem.cig / variant.tm)
                                                * variant.tm * prod(problem.in_sp)))
            nd = geo.nd
            spec = PackSpec(problem.in_sp, (0,) * nd, (1,) * nd, problem.in_sp, prod(problem.in_sp))
            x_source = pack(problem, x_source, problem.N, spec, bits, channels=problem.cin, block=variant.tm)
        # gy's plane and row pitches as the kernel reads it: the packed grid's, or gy's own
        g_plane, g_strides = ((prod(problem.out_sp), row_major_strides(problem.out_sp)) if in_place
                              else (layout.gy_pack.plane, layout.strides))
        tap_items = len(tap_table(geo, in_place))
        # partial sums over fixed chunks of input rows (batch item, all axes but the last)
        ci_tiles, co_tiles = ceil(problem.cig / variant.tm), ceil(problem.cog / variant.tn)
        tiles_total = ci_tiles * co_tiles * geo.groups * tap_items
        rows_per_b = prod(problem.in_sp[:-1])
        total_rows = problem.N * rows_per_b
        blocking = ((problem.in_sp[-1], problem.cig, problem.x_elements, W.size, problem.dtype.itemsize)
                    if in_place else None)
        n_chunks = cpu_tiles.weight_chunks(problem, total_rows, tiles_total, blocking)
        chunk_rows = ceil(total_rows / n_chunks)
        n_chunks = ceil(total_rows / chunk_rows)
        program = self.program(problem, variant, bits)
        in_strides = row_major_strides(problem.in_sp)
        table = constant_buffer(queue, ("weight taps", geo, in_place),
                                lambda: np.array(tap_table(geo, in_place), np.int32))

        v_lo, v_hi = inner_positions(problem)
        taps_fastest = cpu_tiles.weights_taps_fastest(problem, variant, chunk_rows)
        tiles = (ci_tiles, co_tiles * geo.groups)
        global_size = (n_chunks * tap_items,) + tiles if taps_fastest else tiles + (n_chunks * tap_items,)

        def enqueue(part):
            launch(queue, program, "", global_size,
                   cpu_tiles.local_size(problem, program),
                   x=x_source, gyp=gyp, part=part, tap_table=table, tap_items=tap_items, ks=geo.taps,
                   groups=geo.groups, nplanes=prod(geo.stride), stride=geo.stride[:-1], cig=problem.cig,
                   cog=problem.cog, ci_tiles=ci_tiles, co_tiles=co_tiles, chunk_rows=chunk_rows,
                   total_rows=total_rows, rows_per_b=rows_per_b, in_plane=prod(problem.in_sp), g_plane=g_plane,
                   blocks_per_group=packs.blocks_per_group, in_last=problem.in_sp[-1],
                   taps_fastest=int(taps_fastest), ps=g_strides[:-1], out=problem.out_sp[:-1],
                   out_last=problem.out_sp[-1], last_stride=geo.stride[-1], last_dilation=geo.dilation[-1],
                   v_lo=v_lo, v_hi=v_hi, **{"in": problem.in_sp[:-1], "is": in_strides[:-1]})
        return StageOne(bits, n_chunks, enqueue)
