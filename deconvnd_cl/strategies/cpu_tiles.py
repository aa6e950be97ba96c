"""Variants of the register-tiled (CPU) strategy: how much work one work-item owns, their constraints, and
the defaults per pass and device.

A tile is (TM, TN, VW): TM maps x TN positions held in TM*TN/VW private vector accumulators (for backward
weights, TM input maps x TN output maps, each a vector along the reduction or over output maps). On a CPU
device register tiling is the whole game: vectors as wide as the device's (8 floats on AVX2, 16 on AVX-512),
about 12 accumulators of AVX2's 16 vector registers or 24 of AVX-512's 32, and one
work-item per work-group lets PoCL run each tile as a plain loop nest. The choice depends on the layer and the
device, and on the spatial size only where that saves many lanes (phases of a few short rows take one-vector
tiles; stride-1 rows not a multiple of the tile read packed planes) or memory (backward data reads an output
gradient too large to copy in place), so most new input sizes reuse builds.
"""

import dataclasses
from math import ceil, prod


from .. import correlation, device_kind, gy_in_place, settings
from ..layouts import backward_grid, backward_layout, forward_layout, input_tiling
from ..variants import GySource, Variant, XSource

MAX_ACCUMULATORS = 32  # beyond this the tile spills on every device we know, and its code grows without bound
VECTOR_WIDTHS = (2, 4, 8, 16)
# (maps, vectors) of the forward and backward-data tuning candidates: AVX2-sized tiles, then AVX-512-sized
TILE_SHAPES = ((6, 2), (4, 3), (4, 2), (3, 4), (8, 1), (2, 4), (1, 4), (8, 3), (6, 4), (4, 6))
# (vectors of maps, positions) of the forward's and backward data's tuning candidates over maps
OVER_MAPS_SHAPES = ((2, 8), (2, 12), (3, 8), (1, 12), (4, 6))
CACHE_BLOCK = 256 * 1024  # bytes of an operand a CPU work-item sequence should find in cache (half an L2)
TAP_REUSE_BLOCK = 512 * 1024  # bytes of both weight-gradient operands the work-items of a tile's taps share


def _vector_rules(tile, lanes=None, lanes_name="tn"):
    """vw a vector width and, where `lanes` values fill whole vectors, `lanes` a multiple of it."""
    rules = [(tile.vw in VECTOR_WIDTHS, f"vw one of {', '.join(map(str, VECTOR_WIDTHS))} (an OpenCL vector width)")]
    if lanes is not None:
        rules.append((lanes % tile.vw == 0, f"{lanes_name} a multiple of vw"))
    return rules


def _in_place_weights_rules(problem):
    geo = problem.geo
    return [(geo.direct, "kernel size = stride on every axis (above 1 on one), no pad, no dilation and a "
                                  "last stride <= 2 to read gy in place")]


@dataclasses.dataclass(frozen=True)
class ForwardTile(Variant):
    """TM output maps x TN positions of a stride phase, in vectors of VW positions; x read from its packed grid,
    or in place (then TN input positions of a row, with every phase of the last axis; with a stride of 1, TN
    output positions of a row, the layer run as a correlation: correlation.py); planar: a stride-1 layer run as a
    correlation with x packed as backward data packs gy, TN consecutive positions of the padded grid; interleaved:
    x packed, a last stride of 2, TN positions u of rows (as row vectors) with both last-axis phases, outputs 2u
    and 2u + 1; over_maps: x packed, TM output maps in vectors of VW maps x TN consecutive positions, each x element
    broadcast (short phases, many maps)."""

    tm: int
    tn: int
    vw: int
    x: XSource = XSource.PACKED

    def constraints(self, problem):
        accumulators = self.tm * self.tn
        rules = [(self.x in (XSource.PACKED, XSource.IN_PLACE, XSource.PLANAR, XSource.INTERLEAVED,
                             XSource.OVER_MAPS), "x 'packed', 'in_place', 'planar', 'interleaved' or 'over_maps'")]
        if self.x is XSource.OVER_MAPS:
            return rules + _vector_rules(self, self.tm, "tm") + [
                (accumulators <= MAX_ACCUMULATORS * self.vw, f"at most {MAX_ACCUMULATORS} vector accumulators "
                                                             "(tm / vw * tn)")]
        if self.x is XSource.INTERLEAVED:
            accumulators *= 2
            rules += [(problem.geo.stride[-1] == 2, "a last stride of 2 for x 'interleaved'"),
                      (problem.out_sp[-1] >= 2 * self.vw - 1, f"output rows of at least 2 * vw - 1 = "
                                                               f"{2 * self.vw - 1} positions for x 'interleaved'")]
        elif self.x is XSource.PLANAR:
            rules += [(correlation.applies(problem.geo), "a stride of 1 on every axis, no postpad and pad <= dilation "
                                                         "* (size - 1) for x 'planar' (the layer run as a correlation)")]
        elif self.x is XSource.IN_PLACE and correlation.applies(problem.geo):
            rules += correlation.constraints(problem, self.tn, self.vw)
        elif self.x is XSource.IN_PLACE:
            accumulators *= problem.geo.stride[-1]
            rules += [(problem.geo.direct and not any(problem.geo.postpad),
                       "kernel size = stride on every axis (above 1 on one), no pad, no dilation, no postpad and a "
                       "last stride <= 2, or a stride of 1 on every axis, no postpad and pad <= dilation * "
                       "(size - 1), to read x in place"),
                      (problem.in_sp[-1] >= self.tn, f"input rows of at least tn = {self.tn} positions to read x "
                                                     "in place")]
        return rules + _vector_rules(self, self.tn) + [
            (accumulators <= MAX_ACCUMULATORS * self.vw, f"at most {MAX_ACCUMULATORS} vector accumulators "
                                                         "(tm * tn / vw, times the last stride in place or "
                                                         "interleaved)")]


@dataclasses.dataclass(frozen=True)
class BackwardDataTile(Variant):
    """TM input maps x TN input positions in vectors of VW; gy read from packed residue planes, or in place; over_maps:
    TM input maps in vectors of VW maps x TN input positions, gy packed channels-last and broadcast."""

    tm: int
    tn: int
    vw: int
    gy: GySource = GySource.PLANAR

    def constraints(self, problem):
        rules = [(self.gy in (GySource.PLANAR, GySource.IN_PLACE, GySource.OVER_MAPS),
                  "gy 'planar', 'in_place' or 'over_maps'")]
        if self.gy is GySource.OVER_MAPS:
            return rules + _vector_rules(self, self.tm, "tm") + [
                (self.tm * self.tn <= MAX_ACCUMULATORS * self.vw, f"at most {MAX_ACCUMULATORS} vector accumulators "
                                                                  "(tm / vw * tn)")]
        lanes = self.tn
        if self.gy is GySource.IN_PLACE:
            rules += gy_in_place.constraints(problem.geo, problem.in_sp[-1], problem.out_sp[-1], self.tn, self.vw)
            lanes = self.tn * problem.geo.stride[-1]
        return rules + _vector_rules(self, lanes, "tn" if lanes == self.tn else "tn * last stride") + [
            (self.tm * lanes <= MAX_ACCUMULATORS * self.vw, f"at most {MAX_ACCUMULATORS} vector accumulators")]


@dataclasses.dataclass(frozen=True)
class WeightsTile(Variant):
    """TM input maps x TN output maps of one tap (in place: of one row of last-axis taps). gy planar or in
    place: TM x TN vector accumulators along positions; channels-last: TM x TN/VW vectors over output maps.
    x channels-last (gy in place): TM/VW vectors over input maps x TN output maps x the last axis' taps."""

    tm: int
    tn: int
    vw: int
    gy: GySource = GySource.PLANAR
    x: XSource = XSource.IN_PLACE

    def constraints(self, problem):
        rules = [(self.x in (XSource.IN_PLACE, XSource.CHANNELS_LAST), "x 'in_place' or 'channels_last'")]
        if self.gy is GySource.IN_PLACE and self.x is XSource.IN_PLACE:
            rules += _in_place_weights_rules(problem)
        accumulators = self.tm * self.tn
        if self.x is XSource.CHANNELS_LAST:
            rules += [(self.gy is GySource.IN_PLACE, "gy 'in_place' with x 'channels_last'")]
            rules += _vector_rules(self, self.tm, "tm")
            accumulators = self.tm // self.vw * self.tn * problem.geo.size[-1]
        elif self.gy is GySource.CHANNELS_LAST:
            rules += _vector_rules(self, self.tn)
            accumulators = self.tm * self.tn // self.vw
        else:
            rules += _vector_rules(self)
        return rules + [(accumulators <= MAX_ACCUMULATORS, f"at most {MAX_ACCUMULATORS} vector accumulators")]


# ---------------------------------------------------------------------------------------------- defaults

def vector_width(problem):
    return device_kind.vector_width(problem.device, problem.dtype)


def accumulator_budget(problem):
    return device_kind.accumulator_budget(problem.device, problem.dtype)


def gemm_tile(problem, maps):
    """The forward's and backward data's planar tile: TM of `maps` (maps per group) x TN positions."""
    vw = vector_width(problem)
    if not problem.on_cpu:
        return ForwardTile(min(4, maps), vw, vw)
    budget = accumulator_budget(problem)
    tm = min(6 if budget <= 12 else 8, maps)
    return ForwardTile(tm, vw * max(1, min(4, budget // tm)), vw)


def forward_tile(problem):
    """gemm_tile over the output maps; with one input and one output map per group (depthwise) on a CPU, a row
    of the whole accumulator budget: a work-item's reduction is then only one phase's taps of one map, so its fixed
    cost (set-up, epilogue) outweighs it, and a longer tile spreads that cost over more positions (depthwise
    64->64 k4 s2 32x32: 1.39-1.40 ms with 4 vectors, 1.12-1.13 with 12). Backward data's reduction runs over every
    tap, and there 4 vectors measured fastest (0.76-0.77 ms against 0.93-1.0 with 6 to 12). Either tile runs
    both phases of a last stride of 2 at once where outputs are short sums (_interleaved)."""
    tile = gemm_tile(problem, problem.cog)
    depthwise = problem.on_cpu and tile.tm == 1 and problem.cig == 1
    if depthwise:
        tile = ForwardTile(1, tile.vw * accumulator_budget(problem), tile.vw)
    interleaved = _interleaved(problem, tile)
    if interleaved or depthwise:
        return interleaved or tile
    if problem.on_cpu and correlation.applies(problem.geo) and accumulator_budget(problem) <= 12:
        # a stride-1 layer as a correlation, x in place (walls, alternating: dilated 2.15-2.35 -> 1.8-2.0 ms,
        # 56x56 6.05-6.2 -> 5.8)
        in_place = ForwardTile(tile.tm, tile.tn, tile.vw, XSource.IN_PLACE)
        if in_place.fits(problem):
            # rows not a multiple of the tile: x packed, tiles across row ends, as backward data's gy (56x56
            # kernels with their packs, alternating: in place 5.2 ms, planar 4.9, the forward's packed grid 5.9-6.1)
            mirrored = _across_row_ends(correlation.mirror_problem(problem), BackwardDataTile(
                tile.tm, tile.tn, tile.vw, GySource.IN_PLACE))
            return ForwardTile(mirrored.tm, mirrored.tn, mirrored.vw, XSource.PLANAR) if mirrored else in_place
    elif problem.on_cpu and correlation.applies(problem.geo):
        # with 512-bit vectors, in place where rows are whole tiles of 6 maps x 2 vectors (PoCL 3.0 on an Intel
        # Xeon, 9 rounds alternating against x packed, 8 maps x 3 vectors: dilated 32x32 1.42 -> 1.17 ms); rows
        # that are not keep x packed (56x56: in place 3.90 against 3.43, planar across row ends 3.58; PoCL 3.1
        # on an AMD Zen 4 had measured 56x56 in place 5.9 against 5.7)
        in_place = ForwardTile(min(6, problem.cog), 2 * tile.vw, tile.vw, XSource.IN_PLACE)
        if problem.out_sp[-1] % in_place.tn == 0 and in_place.fits(problem):
            return in_place
    if problem.on_cpu and problem.geo.direct:
        # x in place, two vectors of a row; with 512-bit vectors, rows shorter than that (16 positions) take one
        # vector and twice the maps (PoCL 3.0 on an Intel Xeon, 9 rounds alternating against x packed, 8 maps x
        # 3 vectors: V-Net 64->32 k2 16^3 1.79 -> 1.36 ms; 6 maps 1.55, 8 1.40, 16 1.45)
        sl = problem.geo.stride[-1]
        for nvec in (2, 1) if accumulator_budget(problem) > 12 else (2,):
            in_place = ForwardTile(max(1, min(problem.cog, accumulator_budget(problem) // (nvec * sl))),
                                   nvec * tile.vw, tile.vw, XSource.IN_PLACE)
            if in_place.fits(problem):
                return in_place
    if problem.on_cpu and tile.tn > tile.vw and accumulator_budget(problem) <= 12:
        # Phases of a few short rows (4x4 inputs): tiles of several vectors compute many lanes past the phase's
        # positions, one vector a tile far fewer, and with the whole budget of maps that wins where it saves
        # more than the tile's weights cost (kernels, alternating: AVX2 2d 1024->512 4x4 95 -> 80 ms; a 1d
        # layer of 6 positions 3.9 -> 3.2; where the lanes are as many, 3d 4^3 and 6^3, it lost 20-40%).
        narrow = ForwardTile(min(problem.cog, accumulator_budget(problem)), tile.vw, tile.vw)
        if _forward_lanes(problem, narrow) <= NARROW_AT_MOST * _forward_lanes(problem, tile) and narrow.fits(problem):
            return narrow
    elif problem.on_cpu:
        return _fewest_lanes(problem, tile)
    return tile


def _fewest_lanes(problem, tile):
    """With 512-bit vectors, phases of a few short rows fill whole tiles of `tile`'s width badly (an 8x8 input's
    phase is 78 positions of the packed grid: 2 tiles of 3 vectors compute 96 lanes, one of 5 vectors 80): the
    tile of 1 to 6 vectors, with maps for about the accumulator budget, that computes the fewest lanes, where that
    is at most FEWER_LANES_AT_MOST of `tile`'s; of tiles as short, the one of most vectors (fewest weight
    broadcasts for each multiply-add). PoCL 3.0 on an Intel Xeon, 7-9 rounds alternating against 8 maps x 3
    vectors: DCGAN 512->256 8x8 29.7 -> 23.2 ms with 5 x 5 (4 x 5 25.2, 24 x 1 31.8, where the broadcasts cost
    more than the lanes saved), 2d 1024->512 4x4 73 -> 58 with 12 x 2 (24 x 1 54). Where even that tile computes
    many lanes past the positions, vectors over maps instead (_over_maps)."""
    budget = accumulator_budget(problem)
    shorter = [ForwardTile(min(problem.cog, round(budget / nvec)), nvec * tile.vw, tile.vw) for nvec in range(6, 0, -1)]
    best = min((t for t in shorter if t.fits(problem)), key=lambda t: _forward_lanes(problem, t), default=tile)
    if _forward_lanes(problem, best) > FEWER_LANES_AT_MOST * _forward_lanes(problem, tile):
        best = tile
    return _over_maps(problem, best) or best


# A tile of other width than the default's is taken where it computes at most this share of the lanes (512-bit
# vectors: _fewest_lanes).
FEWER_LANES_AT_MOST = 0.9

# Vectors over maps are taken where the best tile over positions computes at least this many lanes per output
# position (_over_maps).
OVER_MAPS_AT_LEAST = 1.15


def _over_maps(problem, best):
    """With 512-bit vectors, where phases are so short that the best tile over positions (`best`) still computes
    OVER_MAPS_AT_LEAST lanes an output position or more, and a group has two vectors of output maps and a vector
    of input maps: 2 vectors of maps x 8 positions over maps (XSource.OVER_MAPS), which computes no lanes past a
    phase's positions. PoCL 3.0 on an Intel Xeon, 7-9 rounds alternating against `best`: DCGAN 512->256 8x8 b16
    22.2 -> 17.4 ms (1.25 lanes a position), 2d 1024->512 4x4 50.5 -> 25.0 (2.0), 3d 128->64 k4 4^3 2.53 -> 1.44,
    1d 512->256 L12 1.68 -> 1.53 (1.33); level where lanes are few (2d 256->128 16x16 b16 17.7 against 17.9, 1.0;
    the 56x56 layer and the audio layer, 1.04 and 1.0), and 2-10x slower with fewer maps (DCGAN out, grouped,
    depthwise)."""
    over_maps = ForwardTile(2 * best.vw, 8, best.vw, XSource.OVER_MAPS)
    if (problem.cog >= over_maps.tm and problem.cig >= best.vw and over_maps.fits(problem)
            and _forward_lanes(problem, best) >= OVER_MAPS_AT_LEAST * prod(problem.out_sp)):
        return over_maps
    return None


# A tile of one vector is taken where it computes at most this share of the lanes of the default's.
NARROW_AT_MOST = 0.85

# The interleaved forward is taken where an output sums at most this many products (input maps of a group x the
# most taps of a phase), its epilogue then being a large share of a work-item's time.
INTERLEAVED_REDUCTION_AT_MOST = 256


def _interleaved(problem, tile):
    """`tile` with both phases of a last stride of 2 in one work-item (x 'interleaved') where it fits and its
    outputs are short sums on a CPU, else None. Forward walls, alternating with the packed default, medians
    (AVX2, PoCL 3.0): 2d k4 s2 32x32 depthwise 64 maps 1.79 -> 1.58 ms, 8 maps a group 3.29 -> 2.00, 32 a group
    (the suite's grouped) 5.38 -> 3.45, 16 a group 3.41 -> 2.71, 2 groups of 32 3.83 -> 3.05; 3d depthwise
    5.35 -> 3.0, 1d depthwise 1.27 -> 1.06. Longer sums were level (64 -> 64, 128 -> 3) or lost (DCGAN 512->256,
    whose 8x8 rows leave no room for the whole tile's vectors either); a layer with kernel size = stride keeps
    its in-place kernel. Sums of 256 products won too (nineteenth session, 20 rounds: 3d 32->16 k3 16^3 b2 2.87 ->
    2.50 ms, 2d 64->64 k4 32x32 b4 5.65 -> 4.90, 2d 64->32 k3 1.75 -> 1.44), with 4 maps x 3 vectors where the
    gemm tile has 6 x 2: the same 24 accumulators over both phases, but 8 weight broadcasts a step instead of 12
    for one more x vector (6 x 2 read 2.76, 4.97 and 1.55 ms there)."""
    if not problem.on_cpu or problem.geo.stride[-1] != 2 or problem.geo.direct:
        return None
    tap_counts = {len(taps) for _, taps in problem.geo.forward_phases()}
    if problem.cig * max(tap_counts) > INTERLEAVED_REDUCTION_AT_MOST:
        return None
    if len(tap_counts) > 1 and accumulator_budget(problem) > 12:
        # 512-bit vectors (PoCL 3.0, Intel Xeon, 9 rounds alternating against x packed, 8 maps x 3 vectors): won
        # where every phase has as many taps (kernel size 4: 2d 64->64 32x32 groups 4, 2, 1 0.87 / 1.30 / 2.15
        # ms against 1.18 / 1.63 / 2.47, 3d 32->16 2.34 against 2.44), lost where they differ (kernel size 3:
        # 2d 64->32 1.04 against 0.88, 3d 32->16 1.60 against 1.22, 16->16 1.13 against 0.80)
        return None
    tm, nvec = tile.tm, tile.tn // tile.vw
    if (tm, nvec) == (6, 2):
        tm, nvec = 4, 3
    nvec = max(1, min(nvec, MAX_ACCUMULATORS // (2 * tm)))  # two phases' accumulators
    interleaved = ForwardTile(tm, nvec * tile.vw, tile.vw, XSource.INTERLEAVED)
    return interleaved if interleaved.fits(problem) else None


def _data_lanes(problem, tile):
    """Lanes backward data from packed planes computes with `tile` (layouts.input_tiling's tiles times their
    lanes)."""
    v_count = backward_grid(problem.geo, problem.in_sp, problem.out_sp)[2]
    return tile.tn * input_tiling(problem.in_sp, v_count, tile.tn, tile.vw)[2]


def _forward_lanes(problem, tile):
    """Lanes the forward from packed x computes with `tile`: its tiles over every phase, times their lanes."""
    layout = forward_layout(problem.geo, problem.in_sp, problem.out_sp, tile.tn, problem.dtype.itemsize,
                            vw=0 if tile.x is XSource.OVER_MAPS else tile.vw)
    return tile.tn * sum(phase.v_tiles for phase in layout.phases)


def _too_large_to_pack(problem):
    """gy past an eighth of the device's memory: its packed copy would crowd out the tensors themselves (an
    output of 8 GiB beside its input and input gradient on a 24 GiB host), so a layer that can read gy in place
    does, as it does with 256-bit vectors."""
    gy_bytes = problem.N * problem.cout * prod(problem.out_sp) * problem.dtype.itemsize
    return gy_in_place.supported(problem.geo) and gy_bytes > problem.queue.device.global_mem_size // 8


def backward_data_tile(problem):
    """gemm_tile over input maps, with gy read in place (gy_in_place.py: a last stride of 1, or 2 without
    dilation) where the tile with as many accumulators fits (with a last stride of 2 a vector holds VW/2
    positions, each with its two taps): no packing pass, and kernels level or faster (alternating runs, PoCL 3.0
    AVX2: DCGAN 512->256 24-25 -> 20 ms a pass, grouped 2.1-2.3 -> 1.3, depthwise 0.96 -> 0.7, 3d k3 2.4 -> 2.2,
    dilated kernel 1.55 -> 1.42), but for stride-1 rows not a multiple of the tile (_across_row_ends) and short
    sums beside a cheap pack (_short_sums_from_planes). With 512-bit vectors, tiles of their own (below)."""
    base = gemm_tile(problem, problem.cig)
    tm, tn, vw = base.tm, base.tn, base.vw
    if problem.on_cpu and accumulator_budget(problem) > 12 and not _too_large_to_pack(problem):
        # 512-bit vectors: 8 maps x 2 vectors (DCGAN 512->256 29.4 -> 22.7 ms, U-Net 11.2 -> 5.5 against 24
        # accumulators), with a last stride of 2 read in place where it fits (kernels on Intel's runtime and
        # PoCL 3.1: grouped 2.3-2.7 -> 0.6-0.8 ms, U-Net 7.2-7.7 -> 5.8-6.3, DCGAN 512->256 level); with a
        # last stride of 1 from packed planes (in place with 2 vectors: 56x56 4.7-4.8 -> 5.0-6.3)
        if problem.geo.stride[-1] == 2 and gy_in_place.supported(problem.geo):
            # 6 maps where a tap row has two groups of taps or more (kernel size 4 and up): 8 ran 1.7-1.9x
            # slower there (PoCL 3.1: 2d 128->64 k4 32x32 46 -> 24 ms, DCGAN out 2.6 -> 1.5), 8 faster with k3
            # (3d k3 1.74 -> 1.52), level with k2 (U-Net)
            # tiles of one or two maps (depthwise) take two vectors (PoCL 3.0, Intel Xeon, 9 rounds alternating:
            # depthwise 64 maps k4 32x32 0.49 -> 0.40 ms)
            tm = min(8 if problem.geo.size[-1] <= 3 else 6, problem.cig)
            tile = BackwardDataTile(tm, vw * (2 if tm <= 2 else 1), vw, GySource.IN_PLACE)
            if tile.fits(problem):
                return tile
        # from packed planes: one vector of positions and 16 maps where that computes at most NARROW_AT_MOST of
        # the lanes (rows of less than two vectors; kernels, alternating, PoCL 3.1: DCGAN 512->256 8x8 30.3 ->
        # 26.3 ms, 16x16 planar 27.8 -> 24.5; where the lanes are as many, 56x56 and dilated level, audio 45 -> 48)
        wide, narrow = BackwardDataTile(min(8, problem.cig), 2 * vw, vw), BackwardDataTile(min(16, problem.cig), vw, vw)
        planar = narrow if _data_lanes(problem, narrow) <= NARROW_AT_MOST * _data_lanes(problem, wide) else wide
        return _data_over_maps(problem, planar) or planar
    planar = BackwardDataTile(tm, tn, vw)
    if gy_in_place.supported(problem.geo):
        tile = BackwardDataTile(tm, tn // problem.geo.stride[-1], vw, GySource.IN_PLACE)
        if tile.fits(problem):  # rows shorter than a tile are read from the packed planes, and so may others
            return _across_row_ends(problem, tile) or _short_sums_from_planes(problem, planar) or tile
    return planar


def _data_over_maps(problem, planar):
    """With 512-bit vectors, where the tile from packed planes (`planar`) computes OVER_MAPS_AT_LEAST lanes an input
    position or more (inputs of 8x8 and less) and a group has two vectors of input maps and a vector of output
    maps: 2 vectors of maps x 8 positions over maps (GySource.OVER_MAPS), which computes no lanes past the input's
    positions. PoCL 3.0 on an Intel Xeon, 7-9 rounds alternating against `planar`: DCGAN 512->256 8x8 b16 21.1-21.9
    -> 15.5-16.4 ms (1.25 lanes a position), 2d 1024->512 4x4 35.7 -> 24.4 (2.0), 3d 128->64 k4 4^3 2.68 -> 1.46
    (2.5), 1d 512->256 L12 1.41 against 1.46 (1.33); level where lanes are few (the 56x56 and audio layers), slower
    on layers read in place (U-Net 0.77x, V-Net 0.53x) and with fewer maps."""
    over_maps = BackwardDataTile(2 * planar.vw, 8, planar.vw, GySource.OVER_MAPS)
    if (problem.cig >= over_maps.tm and problem.cog >= planar.vw and over_maps.fits(problem)
            and _data_lanes(problem, planar) >= OVER_MAPS_AT_LEAST * prod(problem.in_sp)):
        return over_maps
    return None


def _across_row_ends(problem, in_place):
    """With a last stride of 1 and rows not a multiple of the in-place tile, the tile of packed planes whose
    tiles run across row ends: in place, a row's last tile is moved back and recomputes the positions it shares
    with the one before (rows of 56 = 3.5 tiles compute 64), and half the tiles are at a border. Packed planes
    pay a copy of gy and compute their borders' junk lanes (58 a row of 56, k3 p1); 4 maps x 3 vectors, where
    those lanes are at most 5% more than in place's, and where the call's pack fits its scratch budget (in place
    needs none, and serves a budget too small for a pack without splitting the call). Kernels with their packs,
    alternating, PoCL 3.0 AVX2, 64->64 k3 p1 b4: 56x56 5.13 -> 4.75 ms (6 maps x 2 vectors 4.9), 40x40 2.71 ->
    2.41, 28x28 1.28 -> 1.22; rows of 64, a multiple, 5.81 in place against 5.85-6.0 planar."""
    rows, last = prod(problem.in_sp[:-1]), problem.in_sp[-1]
    if problem.geo.stride[-1] != 1 or last % in_place.tn == 0 or problem.cig < 4 or _too_large_to_pack(problem):
        return None
    planar = BackwardDataTile(4, 3 * in_place.vw, in_place.vw)
    in_place_lanes = rows * ceil(last / in_place.tn) * in_place.tn
    if not planar.fits(problem) or _data_lanes(problem, planar) > 1.05 * in_place_lanes:
        return None
    return planar if _gy_pack_fits(problem, planar) else None


def _gy_pack_fits(problem, planar):
    """Whether gy packed for the `planar` tile fits the call's scratch budget: in place needs none, and serves a
    budget too small for the pack without splitting the call."""
    # the reach a training step packs gy with: this tile's, or the weight gradient's (v_count + vw) if longer
    v_count = backward_grid(problem.geo, problem.in_sp, problem.out_sp)[2]
    reach = max(ceil(v_count / planar.tn) * planar.tn, v_count + planar.vw)
    pack = backward_layout(problem.geo, problem.in_sp, problem.out_sp, reach, problem.dtype.itemsize).gy_pack
    pack_bytes = problem.N * problem.cout * pack.nsplit * pack.plane * problem.dtype.itemsize
    return pack_bytes <= problem.scratch_budget()


# With a last stride of 2, backward data reads gy from packed planes rather than in place where an input gradient
# sums at most this many products (a group's output maps x the taps) and each element of gy packed feeds at least
# this many multiply-adds (a group's input maps x the taps / the strides' product).
SHORT_DATA_SUMS_AT_MOST = 256
PACK_REUSE_AT_LEAST = 256


def _short_sums_from_planes(problem, planar):
    """`planar` (backward data's gemm tile) where its sums are short and gy's pack is cheap beside them, else
    None. In place, a last stride of 2 holds a vector's positions in half its lanes, so a work-item computes half
    the outputs of a planar one, and where its sum is short its fixed cost (set-up, epilogue) is a large share.
    Passes with their packs, 20 rounds alternating, medians (PoCL 3.0, AVX2; nineteenth session): DCGAN out 128->3
    k4 s2 32x32 b16 2.17 -> 1.90 ms, 64->3 64x64 1.24 -> 1.09, 128->1 1.46 -> 1.18, 128->16 2.50 -> 2.08, 128->3 k3
    1.77 -> 1.38, 3d 32->1 k4 16^3 0.90 -> 0.60, 64->8 1.15 -> 1.08. Where sums are long in place stayed level or
    faster (U-Net 256->128 k2, 512 products: 8.03 against 7.95; 3d 32->16 k3, 432: 2.21 against 2.42), and where
    the pack is most of the work (grouped, depthwise) far faster."""
    geo = problem.geo
    if (geo.stride[-1] != 2 or problem.cog * geo.taps > SHORT_DATA_SUMS_AT_MOST
            or problem.cig * geo.taps < PACK_REUSE_AT_LEAST * prod(geo.stride) or _too_large_to_pack(problem)):
        return None
    return planar if planar.fits(problem) and _gy_pack_fits(problem, planar) else None


def _packs_x_for_weights(geo):
    """Whether the weight gradient packs x (channels-last, gy read in place) rather than gy: for kernel size =
    stride layers, and for others where x is at most a quarter of gy's size and a tap row of the last axis has
    at most 3 taps (so 2 vectors of input maps x 2 output maps x the taps fit 12 accumulators). Kernels with their
    packs, alternating, against gy packed channels-last: 3d k3 s2 p1 16^3 1.78 -> 1.47 ms, 2d k3 s2 p1 32x32
    1.87 -> 1.70, 3d k3 8^3 level; a last-axis kernel of 4 (one output map a tile) lost on DCGAN's layers (25.9 ->
    34.4 ms, 1.7 -> 2.0) though it won on a 3d k4 (1.54 -> 1.40); with a stride of 1 (x as large as gy) 3-6%
    slower."""
    return geo.direct or (prod(geo.stride) >= 4 and geo.size[-1] <= 3)


def weights_tile(problem):
    """With at least a vector's worth of output maps per group, vectors run over output maps (channels-last,
    the forward's GEMM tile); with fewer (depthwise, narrow), over positions (planar). On a CPU, non-overlapping
    up-sampling layers (Geometry.non_overlapping: kernel size = stride) read planar residue planes too: each
    gradient element is then a dot product of x with one residue plane of gy, which the planar layout holds as
    it is, where channels-last first needs gy transposed (measured 1.06-1.41x on the training step of three
    such layers, docs/performance.md); those without padding or dilation (Geometry.direct) read gy
    unpacked, sparing the packing pass. Of those, layers with a vector's worth of input maps per group pack x
    channels-last instead, a quarter of gy's size in 2d (an eighth in 3d), and run a GEMM step per input
    position (kernel times, alternating: U-Net 8.6 -> 6.2 ms, V-Net 2.8 -> 2.5; docs/performance.md), and so do
    other layers where x is much smaller than gy (_packs_x_for_weights)."""
    vw = vector_width(problem)
    cig, cog, geo, cpu = problem.cig, problem.cog, problem.geo, problem.on_cpu
    budget = accumulator_budget(problem) if cpu else 4
    if cpu and cig >= vw and _packs_x_for_weights(geo):
        # 12 accumulators: 2 vectors of input maps x 3 output maps x 2 taps on AVX2 (U-Net). With 512-bit vectors
        # 2 vectors too, and output maps up to 24 accumulators (PoCL 3.0 on an Intel Xeon, 9 rounds alternating
        # against 1 vector x 12 accumulators: U-Net 7.50 -> 5.90 ms, V-Net 2.34 -> 1.73, 3d k3 1.75 -> 1.29;
        # on an AMD Zen 4, PoCL 3.1, one vector x 6 maps had measured 6.0 ms on U-Net against 6.4 for 2 x 3)
        nvec = 2 if cig > vw else 1
        tn = max(1, min(cog, budget // (nvec * geo.size[-1])))
        return WeightsTile(nvec * vw, tn, vw, GySource.IN_PLACE, XSource.CHANNELS_LAST)
    if geo.direct and cpu:
        return WeightsTile(min(3, cig), min(4, cog), vw, GySource.IN_PLACE)
    if geo.non_overlapping and cpu:
        return WeightsTile(min(3, cig), min(4, cog), vw)
    if cog >= vw:
        # at most 8 input maps: each is a stream of x a plane apart, and more of them than a cache set's 8 ways
        # evicted one another on power-of-two planes (512-bit tiles, PoCL 3.1, kernel ms with 8 maps against
        # 12 or 24: 3d k3 4.6 -> 1.5, dilated 1.8 -> 1.5, audio 57 -> 48, DCGAN 512->256 level)
        nvec = 2 if cog > vw and cpu else 1
        return WeightsTile(min(cig, budget // nvec, 8), nvec * vw, vw, GySource.CHANNELS_LAST)
    tm = min(4 if cpu else 2, cig)
    return WeightsTile(tm, min(cog, max(1, budget // tm)), vw)


# ---------------------------------------------------------------------------------------------- tuning space

def forward_candidates(problem):
    widths = (vector_width(problem),) if problem.on_cpu else (4, 8)
    found = {forward_tile(problem)}
    for vw in widths:
        for tm, nvec in TILE_SHAPES:
            found.add(ForwardTile(min(tm, problem.cog), vw * nvec, vw))
            found.add(ForwardTile(min(tm, problem.cog), vw * nvec, vw, XSource.IN_PLACE))
            found.add(ForwardTile(min(tm, problem.cog), vw * nvec, vw, XSource.PLANAR))
            found.add(ForwardTile(min(tm, problem.cog), vw * nvec, vw, XSource.INTERLEAVED))
        for map_vectors, positions in OVER_MAPS_SHAPES:
            found.add(ForwardTile(map_vectors * vw, positions, vw, XSource.OVER_MAPS))
    return sorted((t for t in found if t.fits(problem)), key=Variant.key)


def backward_data_candidates(problem):
    widths = (vector_width(problem),) if problem.on_cpu else (4, 8)
    sl = problem.geo.stride[-1]
    found = {backward_data_tile(problem)}
    for vw in widths:
        for tm, nvec in TILE_SHAPES:
            found.add(BackwardDataTile(min(tm, problem.cig), vw * nvec, vw))
            found.add(BackwardDataTile(min(tm, problem.cig), vw * nvec // sl or 1, vw, GySource.IN_PLACE))
        for map_vectors, positions in OVER_MAPS_SHAPES:
            found.add(BackwardDataTile(map_vectors * vw, positions, vw, GySource.OVER_MAPS))
    return sorted((t for t in found if t.fits(problem)), key=Variant.key)


def weights_candidates(problem):
    widths = (vector_width(problem),) if problem.on_cpu else (4, 8)
    cig, cog = problem.cig, problem.cog
    found = {weights_tile(problem)}
    for vw in widths:
        for tm, tn in ((4, 3), (3, 4), (2, 6), (1, 12)):
            found.add(WeightsTile(min(tm, cig), min(tn, cog), vw))
            found.add(WeightsTile(min(tm, cig), min(tn, cog), vw, GySource.IN_PLACE))
        for nvec, tn in ((2, 3), (3, 2), (1, 6), (2, 6), (4, 3)):
            found.add(WeightsTile(nvec * vw, min(tn, cog), vw, GySource.IN_PLACE, XSource.CHANNELS_LAST))
        for tm, nvec in ((6, 2), (4, 3), (12, 1), (3, 4)):
            if cog >= vw:
                found.add(WeightsTile(min(tm, cig), vw * nvec, vw, GySource.CHANNELS_LAST))
    return sorted((t for t in found if t.fits(problem)), key=Variant.key)


# ---------------------------------------------------------------------------------------------- launch shape

def local_size(problem, program):
    """Work-items per work-group for the tiled kernels: the device kind's (1 on PoCL's CPU device, where a
    work-group is then one loop nest; 64 on GPUs), or settings.local_size_override (the tests show results do not
    depend on it); as a 3-D tuple."""
    wanted = settings.local_size_override() or problem.kind.tiled_local
    return (program.local_size("", wanted), 1, 1)


def parallel_target(problem):
    """Work-items worth launching at least, to keep every compute unit busy. A constant per device kind, not
    a function of max_compute_units: the weight gradient's chunking (and so its summation order) follows from
    it, and results must not change with the thread count (POCL_MAX_PTHREAD_COUNT) or the GPU's size."""
    return 64 if problem.on_cpu else 8192


def weights_taps_fastest(problem, variant, chunk_rows):
    """Whether the weight gradient's launch runs its taps in the fastest dimension: from packed planes, where a
    work-item's x and gy tiles (its chunk's positions, TM + TN maps) fit TAP_REUSE_BLOCK bytes, the work-items
    of the other taps then find both in cache. Kernel times, alternating runs: DCGAN 512->256 (8x8 rows, 90 KB
    tiles) 30-33 -> 26-27 ms, grouped (115 KB) 1.79 -> 1.50 ms, DCGAN out (460 KB) 1.68 -> 1.62 (medians);
    the 56x56 layer's 1.1 MB tiles ran 12% slower, so larger tiles keep map tiles fastest, as gy read in place
    does (weight_chunks blocks it for the cache)."""
    if variant.gy is GySource.IN_PLACE:
        return False
    tile_bytes = chunk_rows * problem.in_sp[-1] * (variant.tm + variant.tn) * problem.dtype.itemsize
    return tile_bytes <= TAP_REUSE_BLOCK


def weight_chunks(problem, total_rows, tiles_total, blocking=None):
    """How many fixed chunks of input rows the weight gradient sums apart (reduce.mako adds them in order).

    Enough for the parallel target. With `blocking` = (row length, input maps, x elements, gradient elements,
    itemsize), on a CPU also enough that one chunk of x over those maps fits CACHE_BLOCK bytes, so the work-items
    for other output maps and taps find it in cache instead of streaming all of x again, as long as the chunks'
    partial sums (one gradient each) stay under a quarter of x. The caller asks for it with gy read in place
    (V-Net's layer: 7.7 -> 6.3 ms and 8.1 -> 4.9 ms, alternating); other layouts measured level or slower with
    it (dilated 2.7 -> 3.8 ms). Shape and device kind only, never the thread count, so the summation order is
    the same on every run."""
    n = max(1, min(total_rows, ceil(parallel_target(problem) / tiles_total)))
    if blocking and problem.on_cpu:
        row_length, maps, x_elements, w_elements, itemsize = blocking
        block_rows = max(1, CACHE_BLOCK // (maps * row_length * itemsize))
        affordable = max(1, x_elements // (4 * w_elements))
        n = max(n, min(ceil(total_rows / block_rows), affordable))
    return min(n, total_rows)
