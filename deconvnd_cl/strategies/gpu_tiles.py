"""Variants of the work-group tiled (GPU) strategy, their constraints, and the defaults per device kind.

A work-group of WN x WM work-items computes a block of N = WN*TN positions x M = WM*TM rows (maps), each
work-item a TM x TN register tile whose rows are WM apart and whose positions are WN apart (so neighbouring
work-items read neighbouring local-memory words and store neighbouring outputs). The reduction runs in slabs of
KC (input maps, output maps, or positions for the weight gradient): each slab's operands are staged in __local
memory once per work-group and read from there by every work-item, so a global element is read once per slab
and work-group instead of once per tap and work-item.
"""

import dataclasses

from ..variants import Variant

SUBGROUP = 8           # lanes of the subgroup path's subgroups (intel_reqd_sub_group_size)
MAX_TILE = 64          # accumulators of a work-item's register tile (GPU register files: 255 / 512 per lane)


@dataclasses.dataclass(frozen=True)
class WorkgroupTile(Variant):
    """Work-items WM x WN, register tile TM x TN per work-item, reduction slab KC."""

    wm: int
    wn: int
    tm: int
    tn: int
    kc: int

    @property
    def m(self):
        return self.wm * self.tm

    @property
    def n(self):
        return self.wn * self.tn

    @property
    def work_items(self):
        return self.wm * self.wn

    def operand_bytes(self, problem):
        """__local memory of the staged operands: a slab of KC x (M + N) in the accumulator type (none on the
        subgroup path, whose lanes pass operands by shuffles)."""
        if getattr(self, "subgroup", 0):
            return 0
        return problem.acc_dtype.itemsize * self.kc * (self.m + self.n)

    def local_sizes(self, problem):
        """Bytes of __local memory the family's kernel needs for this call: (staged operands, tables)."""
        raise NotImplementedError

    def local_bytes(self, problem):
        return sum(self.local_sizes(problem))

    def constraints(self, problem):
        device = problem.device
        local = self.local_bytes(problem)
        limit = min(device.local_mem_size, 48 * 1024)
        rules = []
        if getattr(self, "subgroup", 0):
            rules += [(self.subgroup == 1, "subgroup 0 or 1"),
                      ("cl_intel_subgroups" in device.extensions, "cl_intel_subgroups on the device (subgroup = 1)"),
                      (self.wn == SUBGROUP, f"wn = {SUBGROUP}, the subgroup's lanes (subgroup = 1)"),
                      (self.tm <= SUBGROUP, f"tm <= {SUBGROUP} (subgroup = 1: lane i loads row i)"),
                      (not getattr(self, "window", 0), "window 0 (subgroup = 1 stages nothing)")]
        return rules + [
            (self.tm * self.tn <= MAX_TILE, f"tm * tn <= {MAX_TILE} accumulators a work-item"),
            (self.work_items <= device.max_work_group_size,
             f"wm * wn <= {device.max_work_group_size} work-items (the device's work-group limit)"),
            (self.wn <= device.max_work_item_sizes[0] and self.wm <= device.max_work_item_sizes[1],
             f"wn <= {device.max_work_item_sizes[0]} and wm <= {device.max_work_item_sizes[1]} (the device's "
             "work-item limits per dimension)"),
            (local <= limit, f"at most {limit} bytes of __local memory for this input (needs {local}; a smaller "
                             "kc or tile)"),
        ]


@dataclasses.dataclass(frozen=True)
class WindowedTile(WorkgroupTile):
    """A tile whose kernel can stage one window per map serving every tap (window = 1; its halo grows with the
    layer's dilation and rank and can outgrow __local memory), or each (map, tap) pair's operands (window = 0)."""

    window: int = dataclasses.field(default=1, metadata={"minimum": 0})

    def constraints(self, problem):
        return super().constraints(problem) + [(self.window in (0, 1), "window 0 or 1")]


def subgroup_field():
    """The `subgroup` field of the GPU tiles: 1 takes the cl_intel_subgroups path (no __local staging: each lane
    loads its positions' operands and the rows' weights pass between lanes by intel_sub_group_shuffle)."""
    return dataclasses.field(default=0, metadata={"minimum": 0})


# Defaults per device kind: (WM, WN, TM, TN, KC). The block shapes follow CLBlast's single-precision Xgemm
# tuning database (src/database/kernels/xgemm/xgemm_32.hpp): AMD's vendor default and gfx906 tile 64 x 64 per
# work-group with 16 x 16 (gfx906) work-items of 4 x 4; NVIDIA's A100 default 32 x 64 with 8 x 16 work-items of
# 4 x 4; Intel's GPU default 64 x 64 with 16 x 8 work-items (4 x 8 each). Other GPUs, and devices the strategy is
# forced onto, take the 64 x 64 / 16 x 16 shape. Our N (positions) is doubled, TN = 8 (and TM = 4 on Intel):
# positions are the long dimension of a deconvolution, and each position tile re-reads the slab's weights (the
# 64->64 8x8 k4 s2 layer: 11 FLOP per global byte with N = 64, 21 with N = 128, counted under Oclgrind).
# KC: input maps per staged slab, each with all its taps (CLBlast stages KWG = 32 reduction steps; 8 maps x 4
# taps is the same for k4 s2 layers).
DEFAULTS = {
    "amd-gpu": (16, 16, 4, 8, 8),
    "nvidia-gpu": (8, 16, 4, 8, 8),
    "intel-gpu": (16, 8, 4, 8, 8),
    "gpu": (16, 16, 4, 8, 8),
}


def default_tile(problem, cls):
    """The device kind's default tile of type `cls`, its slab shrunk (kc 8, 4, 2, 1), then its work-group, until
    it fits the call; None if none fits. (A smaller slab costs barriers; a smaller work-group re-reads operands.)"""
    wm, wn, tm, tn, kc = DEFAULTS.get(problem.kind.name, DEFAULTS["gpu"])
    for wm_try, wn_try in ((wm, wn), (wm, max(4, wn // 2)), (4, 4)):
        for kc_try in sorted({kc, max(1, kc // 2), 2, 1}, reverse=True):
            tile = cls(wm_try, wn_try, tm, tn, kc_try)
            if tile.fits(problem):
                return tile
    return None


def candidates(problem, cls, default):
    """Tiles worth timing: the default and the CLBlast-like shapes around it, in slabs of 4, 8 and 16 (for
    windowed tiles with and without the window), those that fit the call."""
    found = {default}
    windowed = issubclass(cls, WindowedTile)
    for wm, wn, tm, tn in ((16, 16, 4, 8), (16, 16, 4, 4), (8, 8, 4, 4), (8, 16, 4, 8), (16, 8, 8, 4),
                           (8, 16, 8, 8), (8, 32, 4, 4), (4, 16, 4, 4)):
        for kc in (4, 8, 16):
            for window in ((1, 0) if windowed else (None,)):
                found.add(cls(wm, wn, tm, tn, kc) if window is None else cls(wm, wn, tm, tn, kc, window))
    if "cl_intel_subgroups" in problem.device.extensions:
        for wm, tm, tn in ((8, 4, 4), (16, 4, 4), (8, 8, 4), (16, 4, 8)):
            found.add(cls(wm, SUBGROUP, tm, tn, 1, 0, 1) if windowed else cls(wm, SUBGROUP, tm, tn, 1, 1))
    return sorted((t for t in found if t is not None and t.fits(problem)), key=cls.key)


class WorkgroupTiled:
    """What the GPU strategy's implementations share (mixed into an Implementation): the default variant (its
    operands staged in windows where a window fits the call's __local memory, else per tap), applicability, the
    tuning candidates, and the variant's fields as template arguments."""

    strategy = "gpu"

    def default_variant(self, problem):
        fields = [f.name for f in dataclasses.fields(self.variant_type)]
        if "window" not in fields:
            return default_tile(problem, self.variant_type)
        return (default_tile(problem, self.variant_type)
                or default_tile(problem, lambda *values: self.variant_type(*values, window=0)))

    def serves(self, problem):
        if self.default_variant(problem) is None:
            return "no work-group tile fits the device's __local memory for this input"
        return None

    def candidates(self, problem):
        return candidates(problem, self.variant_type, self.default_variant(problem))

    def template_args(self, key):
        return dict(zip((f.name for f in dataclasses.fields(self.variant_type)), key.variant))
