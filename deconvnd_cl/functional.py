"""The functional layer (PuzzleLib's Backend.Dnn names): validate, plan, launch.

deconvNd / deconvNdBackwardData / deconvNdBackwardParams take pyopencl arrays, check everything before any
compile or launch, and drive the kernels: pack the operand into its padded grid (layouts.py), run the tiled
kernel family, reduce where needed. Outputs are fresh arrays; gradients passed in (wgrad, bgrad) are only
written by the last kernels of a call, after every build and allocation, so a call that fails leaves them as
they were.
"""

import os
from math import ceil, prod

import numpy as np
import pyopencl as cl
import pyopencl.array as cl_array

from . import memory, tiles
from .device import default_queue, supports_dtype
from .errors import ModuleError
from .geometry import Geometry
from .kernel_key import KernelKey, dtype_tag
from .kernel_manager import manager
from .layouts import backward_layout, forward_layout, row_major_strides

INT32_LIMIT = 2**31 - 1


# ---------------------------------------------------------------------------------------------- validation

def _check_array(name, array, queue, dtype=None, ndim=None):
    if not isinstance(array, cl_array.Array):
        raise ModuleError(f"{name} must be a pyopencl.array.Array (given: {type(array).__name__})")
    if array.context != queue.context:
        raise ModuleError(f"{name} belongs to another OpenCL context than the queue's")
    if dtype is not None and array.dtype != dtype:
        raise ModuleError(f"{name} has dtype {array.dtype} (expected: {np.dtype(dtype)})")
    if ndim is not None and array.ndim != ndim:
        raise ModuleError(f"{name} has {array.ndim} dimensions (expected: {ndim})")
    if not array.flags.c_contiguous:
        raise ModuleError(f"{name} must be C-contiguous (given strides {array.strides} for shape {array.shape})")


def _buffer(array):
    """The array's own memory. A contiguous view with an offset is copied: its .data would be the base buffer."""
    if array.offset:
        array = array.copy()
    return array.data


def _check_dtype(queue, dtype):
    dtype_tag(dtype)
    if not supports_dtype(queue.device, dtype):
        raise ModuleError(f"dtype {np.dtype(dtype)} is not supported by device {queue.device.name.strip()} "
                          f"(float64 needs cl_khr_fp64)")


def _queue_for(array):
    return array.queue if isinstance(array, cl_array.Array) and array.queue is not None else default_queue()


def _check_weights(W, bias, queue, dtype, nd, inmaps, geo, outmaps=None):
    _check_array("W", W, queue, dtype, nd + 2)
    if W.shape[0] != inmaps:
        raise ModuleError(f"W has {W.shape[0]} input maps (expected: {inmaps}, the data's maps)")
    cout = W.shape[1] * geo.groups
    if outmaps is not None and cout != outmaps:
        raise ModuleError(f"W gives {cout} output maps (expected: {outmaps}, the grad's maps)")
    geo.check_maps(inmaps, cout)
    if bias is not None:
        _check_array("bias", bias, queue, dtype, nd + 2)
        expected = (1, cout) + (1,) * nd
        if bias.shape != expected:
            raise ModuleError(f"bias has shape {bias.shape} (expected: {expected})")
    return cout


class _Problem:
    """One validated call: geometry, maps, spatial extents and dtype, plus the device limits it must fit."""

    def __init__(self, queue, data_shape, W_shape, dtype, stride, pad, dilation, postpad, groups):
        self.queue, self.dtype = queue, np.dtype(dtype)
        self.nd = len(W_shape) - 2
        self.geo = Geometry.create(self.nd, tuple(W_shape[2:]), stride, pad, dilation, postpad, groups)
        self.N, self.cin = data_shape[0], data_shape[1]
        self.in_sp = tuple(data_shape[2:])
        if any(e < 1 for e in self.in_sp):
            raise ModuleError(f"Data spatial size {self.in_sp} must be positive on every axis")
        self.out_sp = self.geo.out_spatial(self.in_sp)
        self.cog = W_shape[1]
        self.cout = self.cog * groups
        self.cig = self.cin // groups

    @property
    def out_shape(self):
        return (self.N, self.cout) + self.out_sp

    def index_bits(self, *element_counts):
        """32-bit index arithmetic when every buffer's largest linear index fits, else 64-bit.
        DECONVND_CL_INDEX_BITS=64 forces 64-bit (the tests compare both on small shapes)."""
        if os.environ.get("DECONVND_CL_INDEX_BITS") == "64":
            return 64
        return 32 if max(element_counts) + 1024 <= INT32_LIMIT else 64

    def check_alloc(self, what, elements, itemsize=None):
        nbytes = elements * (itemsize or self.dtype.itemsize)
        limit = self.queue.device.max_mem_alloc_size
        if nbytes > limit:
            raise ModuleError(f"{what} needs {nbytes} bytes, over the device's max_mem_alloc_size of {limit} bytes "
                              f"({self.queue.device.name.strip()}); split the batch")

    def key(self, family, tile, index_bits):
        return KernelKey.for_conv(family, self.geo, self.dtype, tile, index_bits)


# ---------------------------------------------------------------------------------------------- launching

def _int(v):
    return np.int32(v)


def _idx(bits):
    kind = np.int64 if bits == 64 else np.int32
    return lambda v: kind(v)


def _declare_scalar_types(kernel, args):
    """Tell pyopencl the kernel's scalar argument types, once per kernel: it then packs them with generated
    code, about 2 us a launch, instead of inspecting each argument (50-150 us for 10-20 arguments on PoCL,
    a third of a small layer's time)."""
    if not getattr(kernel, "_dcl_scalar_types", False):
        kernel.set_scalar_arg_dtypes([None if isinstance(a, cl.MemoryObjectHolder) else a.dtype for a in args])
        kernel._dcl_scalar_types = True


def _launch(queue, kernel, global_size, local_size, args):
    if not all(global_size):  # nothing to compute: never enqueue an empty range
        return
    gs = list(global_size)
    gs[0] = ceil(gs[0] / local_size) * local_size
    _declare_scalar_types(kernel, args)
    kernel.set_args(*args)
    cl.enqueue_nd_range_kernel(queue, kernel, tuple(gs), (local_size,) + (1,) * (len(gs) - 1))


def _pack(problem, src, planes, spec, index_bits, channels=None, block=None):
    """Launch `pack`: src (planes, *spec.ext) -> fresh (planes * nsplit, spec.plane) padded layout; with
    `channels`, src is (planes, channels, *spec.ext) -> map-blocked channels-last
    (planes * nsplit, groups * blocks per group, spec.plane, block)."""
    queue = problem.queue
    identity = (channels is None and spec.nsplit == 1 and not any(spec.lo) and spec.grid == spec.ext
                and spec.plane == prod(spec.ext))
    if identity:  # no border, no tail: the operand already is its own padded layout
        return src
    blocks_per_group = ceil(problem.cog / block) if channels is not None else 0
    total = planes * spec.nsplit * spec.plane * (problem.geo.groups * blocks_per_group * block if block else 1)
    problem.check_alloc("a padded operand", total)
    dst = memory.buffer(queue, total * problem.dtype.itemsize)
    key = KernelKey("pack", len(spec.grid), dtype_tag(problem.dtype), index_bits)
    program = manager().program(queue, key)
    idx = _idx(index_bits)
    rows = prod(spec.grid[:-1])
    rows_per_item = max(1, min(rows, 4096 // spec.grid[-1]))  # about 4K elements a work-item
    blocks = ceil(rows / rows_per_item)
    name, args = program.key.name, [src, dst]
    if channels is not None:
        name += "_cl"
        args += [_int(channels), _int(problem.cog), _int(blocks_per_group), _int(block)]
    args += [idx(spec.plane), idx(prod(spec.grid)), idx(prod(spec.ext)), _int(spec.nsplit), _int(rows),
             _int(rows_per_item)]
    for g, lo, s, e in zip(spec.grid, spec.lo, spec.split, spec.ext):
        args += [_int(g), _int(lo), _int(s), _int(e)]
    _launch(queue, program.kernel(name), (blocks + 1, planes * spec.nsplit),
            tiles.copy_local_size(queue.device, program, name), args)
    return dst


def _reduce_program(problem, index_bits):
    vw = tiles.vector_width(problem.queue.device, problem.dtype)
    return manager().program(problem.queue, KernelKey("reduce", 1, dtype_tag(problem.dtype), index_bits, (vw,)))


def _finalize(problem, program, part, n_parts, dst, count, scale, momentum, index_bits):
    acc = np.float64 if problem.dtype == np.float64 else np.float32
    kernel_name = program.key.name + "_finalize"
    _launch(problem.queue, program.kernel(kernel_name), (count,), program.local_size(kernel_name, 64),
            [part, dst.data, _idx(index_bits)(count), _int(n_parts), acc(scale), acc(momentum)])


def _pack_weights(problem, program, W, rows, row_length, args, index_bits):
    """Run a family's `_wpack` kernel: W -> the tile-major layout its work-items stream contiguously
    (one work-item per row of row_length elements)."""
    total = rows * row_length
    problem.check_alloc("the packed weights", total)
    wp = memory.buffer(problem.queue, total * problem.dtype.itemsize)
    name = program.key.name + "_wpack"
    _launch(problem.queue, program.kernel(name), (rows,), tiles.copy_local_size(problem.queue.device, program, name),
            [_buffer(W), wp, *args, _idx(index_bits)(rows)])
    return wp


# ---------------------------------------------------------------------------------------------- forward

def deconvNd(data, W, bias=None, stride=1, pad=0, dilation=1, postpad=0, groups=1, tile=None):
    """Transposed convolution: data (N, inmaps, *in) -> (N, outmaps, *out); see SPEC.md for the definition."""
    queue = _queue_for(data)
    _check_array("data", data, queue)
    _check_dtype(queue, data.dtype)
    if data.ndim < 3:
        raise ModuleError(f"data has {data.ndim} dimensions (expected: at least 3, (N, maps, *spatial))")
    if not isinstance(W, cl_array.Array):
        raise ModuleError(f"W must be a pyopencl.array.Array (given: {type(W).__name__})")
    nd = data.ndim - 2
    problem = _Problem(queue, data.shape, W.shape if W.ndim == nd + 2 else (0, 0) + (1,) * nd, data.dtype,
                       stride, pad, dilation, postpad, groups)
    _check_weights(W, bias, queue, data.dtype, nd, problem.cin, problem.geo)
    return _forward(problem, data, W, bias, tile)


def _forward(problem, data, W, bias, tile=None):
    queue, geo = problem.queue, problem.geo
    problem.check_alloc("the output", prod(problem.out_shape))
    y = memory.empty(queue, problem.out_shape, problem.dtype)
    if problem.N == 0:
        return y
    tile = tile or tiles.gemm_tile(queue.device, problem.dtype, problem.cog)
    tm, tn, _ = tile
    layout = forward_layout(geo, problem.in_sp, problem.out_sp, tn, problem.dtype.itemsize)
    planes = problem.N * problem.cin
    packed_w = geo.groups * ceil(problem.cog / tm) * tm * problem.cig * geo.taps
    bits = problem.index_bits(planes * layout.pack.plane, y.size, packed_w)
    xp = _pack(problem, _buffer(data), planes, layout.pack, bits)

    program = manager().program(queue, problem.key("forward", tile, bits))
    idx = _idx(bits)
    co_tiles = ceil(problem.cog / tm)
    out_strides = row_major_strides(problem.out_sp)
    bias_buffer = _buffer(bias) if bias is not None else _buffer(W)
    w_buffer = _pack_weights(problem, program, W, geo.groups * co_tiles * problem.cig, geo.taps * tm,
                             [_int(problem.cig), _int(problem.cog), _int(co_tiles)], bits)
    # one row per stride phase (prod(stride) of them, as in Geometry.forward_phases)
    phase_info = np.zeros((prod(geo.stride), 3 + 2 * geo.nd), np.int64 if bits == 64 else np.int32)
    for phase in layout.phases:  # phases without outputs keep v_tiles = 0
        phase_info[phase.index, :3] = (phase.v_tiles, phase.v_count, phase.base)
        phase_info[phase.index, 3::2], phase_info[phase.index, 4::2] = phase.q0, phase.extents
    info = cl.Buffer(queue.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=phase_info)
    args = [xp, w_buffer, bias_buffer, y.data, info, _int(bias is not None), _int(problem.cig), _int(problem.cog),
            _int(co_tiles), idx(layout.pack.plane), idx(prod(problem.out_sp))]
    args += [idx(s) for s in layout.strides[:-1]] + [idx(s) for s in out_strides]
    v_tiles = max(phase.v_tiles for phase in layout.phases)
    _launch(queue, program.kernel(), (len(phase_info) * geo.groups * co_tiles, v_tiles, problem.N),
            tiles.local_size(queue.device, program), args)
    return y


# ---------------------------------------------------------------------------------------------- backward

def _backward_problem(grad, W, data_shape, stride, pad, dilation, groups):
    """Validate grad against W and the forward input's shape; the postpad is what grad's shape implies."""
    queue = _queue_for(grad)
    _check_array("grad", grad, queue)
    _check_dtype(queue, grad.dtype)
    if not isinstance(W, cl_array.Array):
        raise ModuleError(f"W must be a pyopencl.array.Array (given: {type(W).__name__})")
    nd = W.ndim - 2
    if nd < 1:
        raise ModuleError(f"W has {W.ndim} dimensions (expected: at least 3, (inmaps, outmaps/groups, *size))")
    if grad.ndim != nd + 2:
        raise ModuleError(f"grad has {grad.ndim} dimensions (expected: {nd + 2})")
    base = Geometry.create(nd, tuple(W.shape[2:]), stride, pad, dilation, 0, groups)
    if data_shape is None:  # no forward input given: the smallest input that yields grad's spatial shape
        data_shape = (grad.shape[0], W.shape[0]) + tuple(
            max(1, ceil((o - d * (k - 1) + 2 * p - 1) / s) + 1)
            for o, k, s, p, d in zip(grad.shape[2:], base.size, base.stride, base.pad, base.dilation))
    in_sp = tuple(data_shape[2:])
    zero_post = tuple((i - 1) * s + d * (k - 1) - 2 * p + 1
                      for i, k, s, p, d in zip(in_sp, base.size, base.stride, base.pad, base.dilation))
    postpad = tuple(o - z for o, z in zip(grad.shape[2:], zero_post))
    if any(pp < 0 for pp in postpad):
        raise ModuleError(f"grad has spatial shape {tuple(grad.shape[2:])} (expected: {zero_post} plus a postpad "
                          f"smaller than max(stride, dilation) per axis, for input spatial shape {in_sp})")
    try:
        problem = _Problem(queue, data_shape, W.shape, grad.dtype, stride, pad, dilation, postpad, groups)
    except ModuleError as e:
        raise ModuleError(f"grad has spatial shape {tuple(grad.shape[2:])}, which does not match input spatial "
                          f"shape {in_sp}: {e}") from None
    _check_weights(W, None, queue, grad.dtype, nd, problem.cin, problem.geo, outmaps=grad.shape[1])
    if grad.shape[0] != problem.N:
        raise ModuleError(f"grad has batch {grad.shape[0]} (expected: {problem.N})")
    return problem


def _default_data_tile(problem):
    device, geo = problem.queue.device, problem.geo
    if geo.direct_backward:
        tile = tiles.backward_data_tile(device, problem.dtype, problem.cig, geo.stride[-1])
        if problem.in_sp[-1] >= tile[1]:  # rows shorter than a tile are read from the packed planes
            return tile
    return tiles.backward_data_tile(device, problem.dtype, problem.cig)


def _default_weights_tile(problem):
    return tiles.weights_tile(problem.queue.device, problem.dtype, problem.cig, problem.cog,
                              problem.geo.non_overlapping, problem.geo.direct_backward)


def _check_gy_in_place(problem, family, tile, rows_from=1):
    """A tile that reads gy in place (GY_IN_PLACE) needs a direct_backward layer and, for backward data,
    input rows of at least `rows_from` positions (its last tile per row is moved back inside the row) and
    whole vectors of positions."""
    geo = problem.geo
    whole = family != "backward_data" or tile[1] * geo.stride[-1] % tile[2] == 0
    if not geo.direct_backward or problem.in_sp[-1] < rows_from or not whole:
        raise ModuleError(f"{family} tile {tile} reads gy in place: it needs kernel size = stride, no pad, no "
                          f"dilation, a last stride <= 2, input rows >= {rows_from} positions and TN * last "
                          f"stride a multiple of VW (layer {geo}, input {problem.in_sp})")


class _GradPacks:
    """The output gradient laid out for the backward kernels, packed once per call and shared by them:
    planar residue planes (backward data, narrow backward weights) and channels-last (wide backward weights);
    `raw()` is gy itself, for the kernels that read it in place and for the bias sums."""

    def __init__(self, problem, grad, tile_bd, tile_bw):
        self.problem, self.grad = problem, grad
        self.layout = backward_layout(problem.geo, problem.in_sp, problem.out_sp, tile_bd[1], tile_bw[2],
                                      problem.dtype.itemsize)
        spec = self.layout.gy_pack
        self.block = tile_bw[1]  # output maps per block of the channels-last layout
        self.blocks_per_group = ceil(problem.cog / self.block)
        padded_maps = max(problem.cout, problem.geo.groups * self.blocks_per_group * self.block)
        self.bits = problem.index_bits(problem.N * padded_maps * spec.nsplit * spec.plane,
                                       problem.N * problem.cin * prod(problem.in_sp),
                                       # weights repacked with input maps rounded up to a tile (<= 16)
                                       (problem.cin + 16 * problem.geo.groups) * problem.cog * problem.geo.taps)
        self._raw = self._planar = self._channels_last = None

    def raw(self):
        if self._raw is None:
            self._raw = _buffer(self.grad)
        return self._raw

    def planar(self):
        if self._planar is None:
            self._planar = _pack(self.problem, self.raw(), self.problem.N * self.problem.cout,
                                 self.layout.gy_pack, self.bits)
        return self._planar

    def channels_last(self):
        if self._channels_last is None:
            problem, spec = self.problem, self.layout.gy_pack
            self._channels_last = _pack(problem, self.raw(), problem.N, spec, self.bits,
                                        channels=problem.cout, block=self.block)
        return self._channels_last


def deconvNdBackwardData(grad, W, data=None, stride=1, pad=0, dilation=1, groups=1, tile=None):
    """Input gradient of deconvNd: a strided direct convolution of grad with W. Shape of data (or the
    smallest input consistent with grad when data is None)."""
    problem = _backward_problem(grad, W, None if data is None else data.shape, stride, pad, dilation, groups)
    if data is not None:
        _check_array("data", data, problem.queue, grad.dtype)
    return _backward_data(problem, grad, W, tile)


def _backward_data(problem, grad, W, tile=None, packed=None):
    queue, geo = problem.queue, problem.geo
    gx_shape = (problem.N, problem.cin) + problem.in_sp
    if problem.N == 0:
        return memory.empty(queue, gx_shape, problem.dtype)
    tile = tile or _default_data_tile(problem)
    tm, tn, vw = tile[:3]
    in_place = tile[3:] == (tiles.GY_IN_PLACE,)
    if in_place:
        _check_gy_in_place(problem, "backward_data", tile, rows_from=tn)
    packed = packed or _GradPacks(problem, grad, tile, _default_weights_tile(problem))
    layout, bits = packed.layout, packed.bits
    gy = packed.raw() if in_place else packed.planar()  # the longest kernel first: the host's work below overlaps it
    gx = memory.empty(queue, gx_shape, problem.dtype)
    program = manager().program(queue, problem.key("backward_data", tile, bits))
    idx = _idx(bits)
    ci_tiles = ceil(problem.cig / tm)
    in_strides = row_major_strides(problem.in_sp)
    wp = _pack_weights(problem, program, W, geo.groups * ci_tiles * problem.cog, geo.taps * tm,
                       [_int(problem.cig), _int(problem.cog), _int(ci_tiles)], bits)
    tiles_per_row = ceil(problem.in_sp[-1] / tn)
    if in_place:
        out_strides = row_major_strides(problem.out_sp)
        args = [gy, wp, gx.data, _int(problem.cig), _int(problem.cog), _int(ci_tiles),
                _int(tiles_per_row), idx(prod(problem.out_sp)), idx(prod(problem.in_sp)), _int(problem.in_sp[-1])]
        for a in range(geo.nd - 1):
            args += [_int(problem.in_sp[a]), idx(in_strides[a]), idx(out_strides[a])]
        _launch(queue, program.kernel(), (geo.groups * ci_tiles, prod(problem.in_sp[:-1]) * tiles_per_row,
                                          problem.N), tiles.local_size(queue.device, program), args)
        return gx
    # tiles within input rows (backward_data.mako), whose stores are whole vectors, where that computes no
    # more positions than tiles over the padded grid's rows, junk lanes included
    position_tiles = prod(problem.in_sp[:-1]) * tiles_per_row
    if problem.in_sp[-1] < tn or position_tiles > ceil(layout.v_count / tn):
        tiles_per_row, position_tiles = 0, ceil(layout.v_count / tn)
    args = [gy, wp, gx.data, _int(problem.cig), _int(problem.cog), _int(ci_tiles), _int(tiles_per_row),
            idx(layout.gy_pack.plane), idx(layout.v_count), idx(prod(problem.in_sp))]
    args += [idx(s) for s in layout.strides[:-1]]
    for a in range(geo.nd):
        args += [_int(problem.in_sp[a]), idx(in_strides[a])]
    _launch(queue, program.kernel(), (geo.groups * ci_tiles, position_tiles, problem.N),
            tiles.local_size(queue.device, program), args)
    return gx


def deconvNdBackwardParams(data, grad, W, bias=None, stride=1, pad=0, dilation=1, groups=1, wgrad=None,
                           bgrad=None, scale=1.0, momentum=0.0, tile=None):
    """(wgrad, bgrad) = scale * (gradients of W and b) + momentum * (wgrad, bgrad); bgrad is None without bias.

    The reduction is deterministic (fixed chunks summed in a fixed order, no atomics)."""
    queue = _queue_for(data)
    _check_array("data", data, queue)
    problem = _backward_problem(grad, W, data.shape, stride, pad, dilation, groups)
    _check_array("data", data, queue, grad.dtype, W.ndim)
    if bias is not None:
        _check_weights(W, bias, queue, grad.dtype, problem.nd, problem.cin, problem.geo)
    for name, given, like in (("wgrad", wgrad, W), ("bgrad", bgrad, bias)):
        if given is not None:
            if like is None:
                raise ModuleError(f"{name} given without the parameter it is the gradient of")
            _check_array(name, given, queue, like.dtype)
            if given.offset:
                raise ModuleError(f"{name} is a view at offset {given.offset}; it is written in place, so it must "
                                  "own its buffer (pass a fresh array)")
            if given.shape != like.shape:
                raise ModuleError(f"{name} has shape {given.shape} (expected: {like.shape})")
    return _backward_params(problem, data, grad, W, bias is not None, wgrad, bgrad, scale, momentum, tile)


def _backward_params(problem, data, grad, W, with_bias, wgrad=None, bgrad=None, scale=1.0, momentum=0.0,
                     tile=None, packed=None):
    queue, geo, device = problem.queue, problem.geo, problem.queue.device
    if wgrad is None:
        wgrad, momentum_w = memory.empty(queue, W.shape, problem.dtype), 0.0
    else:
        momentum_w = momentum
    if with_bias and bgrad is None:
        bgrad, momentum_b = memory.empty(queue, (1, problem.cout) + (1,) * geo.nd, problem.dtype), 0.0
    else:
        momentum_b = momentum
    tile = tile or _default_weights_tile(problem)
    tm, tn, vw, gy_layout = tile
    acc_dtype = np.float64 if problem.dtype == np.float64 else np.float32
    acc_size = np.dtype(acc_dtype).itemsize
    w_size = W.size
    if problem.N == 0:  # empty batch: the new gradients are zero, blended as usual
        bits, n_chunks, bias_rows, direct = 32, 1, 1, False
        part = cl_array.zeros(queue, w_size, acc_dtype).data
        bias_part = cl_array.zeros(queue, problem.cout, acc_dtype).data if with_bias else None
        reduce = _reduce_program(problem, bits)
    else:
        in_place = gy_layout == tiles.GY_IN_PLACE
        if in_place:
            _check_gy_in_place(problem, "backward_weights", tile)
        packed = packed or _GradPacks(problem, grad, _default_data_tile(problem), tile)
        layout, bits = packed.layout, packed.bits
        gyp = {0: packed.planar, 1: packed.channels_last, tiles.GY_IN_PLACE: packed.raw}[gy_layout]()
        # gy's plane and row pitches as the kernel reads it: the packed grid's, or gy's own
        g_plane, g_strides = ((prod(problem.out_sp), row_major_strides(problem.out_sp)) if in_place
                              else (layout.gy_pack.plane, layout.strides))
        # work-items per (maps tile, chunk): one per tap, or with gy in place one per row of last-axis taps
        tap_items = geo.taps // geo.stride[-1] if in_place else geo.taps

        # stage one: partial sums over fixed chunks of input rows (batch item, all axes but the last)
        ci_tiles, co_tiles = ceil(problem.cig / tm), ceil(problem.cog / tn)
        tiles_total = ci_tiles * co_tiles * geo.groups * tap_items
        rows_per_b = prod(problem.in_sp[:-1])
        total_rows = problem.N * rows_per_b
        blocking = ((problem.in_sp[-1], problem.cig, problem.N * problem.cin * prod(problem.in_sp), w_size,
                     problem.dtype.itemsize) if in_place else None)
        n_chunks = tiles.weight_chunks(device, total_rows, tiles_total, blocking)
        chunk_rows = ceil(total_rows / n_chunks)
        n_chunks = ceil(total_rows / chunk_rows)
        program = manager().program(queue, problem.key("backward_weights", tile, bits))
        reduce = _reduce_program(problem, bits)
        bias_part, bias_rows = None, problem.N
        if with_bias:  # per (batch item, map) sums of grad, summed over the batch by finalize
            bias_part = memory.buffer(queue, bias_rows * problem.cout * acc_size)
            name = reduce.key.name + "_rows"
            _launch(queue, reduce.kernel(name), (problem.N * problem.cout,), reduce.local_size(name, 64),
                    [packed.raw(), bias_part, _idx(bits)(problem.N * problem.cout),
                     _idx(bits)(prod(problem.out_sp))])
        # one chunk, nothing to blend: stage one writes the gradient itself and stage two is skipped. Every
        # build and scratch allocation of the call has happened by now, so this write comes with the others.
        direct = n_chunks == 1 and momentum_w == 0 and scale == 1 and np.dtype(acc_dtype) == problem.dtype
        if direct:
            part = wgrad.data
        else:
            problem.check_alloc("the weight-gradient partial sums", n_chunks * w_size, acc_size)
            part = memory.buffer(queue, n_chunks * w_size * acc_size)
        idx = _idx(bits)
        args = [_buffer(data), gyp, part, _int(problem.cig), _int(problem.cog), _int(ci_tiles), _int(co_tiles),
                idx(chunk_rows), idx(total_rows), idx(rows_per_b), idx(prod(problem.in_sp)),
                idx(g_plane), _int(packed.blocks_per_group), _int(problem.in_sp[-1])]
        in_strides = row_major_strides(problem.in_sp)
        for a in range(geo.nd - 1):
            args += [_int(problem.in_sp[a]), idx(in_strides[a]), idx(g_strides[a])]
        _launch(queue, program.kernel(), (ci_tiles, co_tiles * geo.groups, n_chunks * tap_items),
                tiles.local_size(queue.device, program), args)

    # stage two: the last writes to wgrad / bgrad (with the direct weight write just above), so a failure in
    # validation, building or allocation leaves them untouched
    if not direct:
        _finalize(problem, reduce, part, n_chunks, wgrad, w_size, scale, momentum_w, bits)
    if with_bias:
        _finalize(problem, reduce, bias_part, bias_rows, bgrad, problem.cout, scale, momentum_b, bits)
    return wgrad, (bgrad if with_bias else None)


def backward(data, grad, W, bias, stride, pad, dilation, groups, want_data=True, want_params=True,
             wgrad=None, bgrad=None, scale=1.0, momentum=0.0, variants=None):
    """Module helper: input grad and parameter grads from one packing of grad (validated once).
    `variants` maps a family name to a tile (as optimizeForShape picks them); defaults come from tiles.py."""
    problem = _backward_problem(grad, W, data.shape, stride, pad, dilation, groups)
    variants = variants or {}
    tile_bd = variants.get("backward_data") or _default_data_tile(problem)
    tile_bw = variants.get("backward_weights") or _default_weights_tile(problem)
    packed = _GradPacks(problem, grad, tile_bd, tile_bw) if problem.N > 0 else None
    gx = _backward_data(problem, grad, W, tile_bd, packed) if want_data else None
    params = (_backward_params(problem, data, grad, W, bias is not None, wgrad, bgrad, scale, momentum,
                               tile_bw, packed) if want_params else (None, None))
    return gx, params
