"""Packing operands into the padded grids the tiled kernels read (pack.mako, in shared_program.py), and the output
gradient's layouts, packed once per call and shared by both backward passes."""

from math import ceil, prod

from . import memory, replay, shared_program
from .launch import launch
from .layouts import backward_grid, backward_layout
from .variants import GySource


def buffer_of(array):
    """The array's own memory. A contiguous view with an offset is copied: its .data would be the base buffer."""
    if array.offset:
        replay.refuse("a copy of an array with an offset")  # enqueued outside launch()
        array = array.copy()
    return array.data


def copy_local_size(problem, program, suffix):
    """Work-items per work-group for the memory-bound copy kernels (PoCL runs a work-group as one loop)."""
    return (program.local_size(suffix, 16 if problem.on_cpu else 64),)


def pack(problem, src, planes, spec, index_bits, channels=None, block=None):
    """Launch `pack`: src (planes, *spec.ext) -> fresh (planes * nsplit, spec.plane) padded layout; with
    `channels` (x's or gy's maps, all groups), src is (planes, channels, *spec.ext) -> map-blocked channels-last
    (planes * nsplit, groups * blocks per group, spec.plane, block)."""
    queue = problem.queue
    identity = (channels is None and spec.nsplit == 1 and not any(spec.lo) and spec.grid == spec.ext
                and spec.plane == prod(spec.ext))
    if identity:  # no border, no tail: the operand already is its own padded layout
        return src
    group_maps = channels // problem.geo.groups if channels is not None else 0
    blocks_per_group = ceil(group_maps / block) if channels is not None else 0
    total = planes * spec.nsplit * spec.plane * (problem.geo.groups * blocks_per_group * block if block else 1)
    problem.check_alloc("a padded operand", total, scratch=True)
    dst = memory.buffer(queue, total * problem.dtype.itemsize)
    program = shared_program.program(queue, len(spec.grid), problem.dtype, index_bits)
    rows = prod(spec.grid[:-1])
    # per grid position a work-item writes one element, or every residue of the last axis from the rows it reads
    # (a last-axis split above 2: read a residue at a time, each row would be read that many times, every split-th
    # element; with a split of 2, short rows behind zero borders packed as fast or faster a residue at a time), or
    # (channels-last) a block of maps for every residue
    suffix, extra, per_position, map_blocks = "_pack", {}, 1, 1
    if channels is None and spec.split[-1] > 2:
        suffix, per_position = "_pack_split", spec.split[-1]
    if channels is not None:
        suffix, per_position = "_pack_cl", spec.split[-1] * block
        map_blocks = problem.geo.groups * blocks_per_group
        extra = dict(channels=channels, group_maps=group_maps, blocks_per_group=blocks_per_group, block_maps=block)
    rows_per_item = max(1, min(rows, 4096 // (spec.grid[-1] * per_position)))  # about 4K elements an item
    blocks = ceil(rows / rows_per_item)
    launch(queue, program, suffix, (blocks + 1, planes * spec.nsplit // (1 if suffix == "_pack" else spec.split[-1]),
                                    map_blocks),
           copy_local_size(problem, program, suffix) + (1, 1),
           src=src, dst=dst, dst_plane=spec.plane, grid_size=prod(spec.grid), src_plane=prod(spec.ext),
           n_split=spec.nsplit, rows=rows, rows_per_item=rows_per_item, grid=spec.grid, lo=spec.lo,
           split=spec.split, ext=spec.ext, **extra)
    return dst


class GradPacks:
    """The output gradient laid out for the backward kernels of one call, each layout packed at most once:
    planar residue planes, map-blocked channels-last residue planes (in blocks of `block` maps), or gy itself.

    `reach`: how many virtual positions past each tap's start the kernels that read the packed layouts may read
    (their junk lanes included), at least the grid's v_count."""

    def __init__(self, problem, grad, reach, block=1):
        self.problem, self.grad = problem, grad
        self.layout = backward_layout(problem.geo, problem.in_sp, problem.out_sp, reach, problem.dtype.itemsize)
        spec = self.layout.gy_pack
        self.block = block
        self.blocks_per_group = ceil(problem.cog / block)
        padded_maps = max(problem.cout, problem.geo.groups * self.blocks_per_group * block)
        self.bits = problem.index_bits(problem.N * padded_maps * spec.nsplit * spec.plane, problem.x_elements,
                                       # weights repacked with input maps rounded up to a tile (<= 16)
                                       (problem.cin + 16 * problem.geo.groups) * problem.cog * problem.geo.taps)
        self._packed = {}

    @staticmethod
    def v_count(problem):
        return backward_grid(problem.geo, problem.in_sp, problem.out_sp)[2]

    def get(self, source):
        """gy in the layout `source` (a GySource): a buffer."""
        if source not in self._packed:
            problem, spec = self.problem, self.layout.gy_pack
            if source is GySource.IN_PLACE:
                packed = buffer_of(self.grad)
            elif source is GySource.PLANAR:
                packed = pack(problem, self.get(GySource.IN_PLACE), problem.N * problem.cout, spec, self.bits)
            else:
                packed = pack(problem, self.get(GySource.IN_PLACE), problem.N, spec, self.bits,
                              channels=problem.cout, block=self.block)
            self._packed[source] = packed
        return self._packed[source]
