"""The functional layer (PuzzleLib's Backend.Dnn names): validate, choose the implementation, run it.

deconvNd / deconvNdBackwardData / deconvNdBackwardParams take pyopencl arrays and check everything before any
compile or launch: the arrays, the layer, and a variant (`tile`) the caller passes, against the implementation that
will run (strategies/). (A training module builds its passes' programs ahead, prepare_layer, once the arrays and the
layer are checked; the allocation limits are checked as each pass runs.) Outputs are fresh arrays; gradients passed
in (wgrad, bgrad) are only written by the last kernels of a call, after every build and allocation, so a call that
fails leaves them as they were.
"""

import dataclasses
import decimal
import numbers

import numpy as np
import pyopencl as cl
import pyopencl.array as cl_array

from . import call_forms, replay, row_split, settings
from .device import default_queue, supports_dtype
from .device_group import as_group, check_home, finish_all, home_copy, put_rows, rows_on, whole_on
from .errors import ModuleError, ScratchTooLarge
from .geometry import Geometry
from .kernel_key import dtype_tag
from .kernel_manager import manager
from .packing import GradPacks
from .plans import Plans
from .problem import Problem
from .reduction import GradientSum
from .strategies import implementation
from .variants import GySource, Variant


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


def _check_dtype(queue, dtype):
    dtype_tag(dtype)
    if not supports_dtype(queue.device, dtype):
        raise ModuleError(f"dtype {np.dtype(dtype)} is not supported by device {queue.device.name.strip()} "
                          f"(float64 needs cl_khr_fp64)")


def queue_for(array):
    """The queue a call on `array` runs on: the array's own, else the default queue."""
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


# ---------------------------------------------------------------------------------------------- forward

def deconvNd(data, W, bias=None, stride=1, pad=0, dilation=1, postpad=0, groups=1, tile=None, devices=None):
    """Transposed convolution: data (N, inmaps, *in) -> (N, outmaps, *out), the scatter-add
    y[b, g*Cog + co, i*stride + k*dilation - pad] += x[b, ci, i] * W[ci, co, k] (ci in group g), cropped by pad,
    extended by postpad, plus bias. `tile`: a variant of the implementation that runs (docs/guide.md).
    `devices`: a DeviceGroup (or a list of queues) that shares the batch (device_group.py)."""
    return forward_call(data, W, bias, dict(stride=stride, pad=pad, dilation=dilation, postpad=postpad,
                                            groups=groups), given=tile, devices=devices)


def forward_call(data, W, bias, conv, scratch_limit=None, given=None, variants=None, train=False, devices=None):
    """A whole forward call, deconvNd's or a module's (`variants` its tuned ones; `train`: its first call builds
    the layer's three passes ahead, prepare_layer): validated and worked out, or the replay an earlier call of
    its arguments' forms led to (call_forms.py). `conv`: stride, pad, dilation, postpad and groups by name."""
    variants = variants or {}

    def anew(call_key):
        problem = forward_problem(data, W, bias, scratch_limit=scratch_limit, **conv)
        if train and devices is None and problem.N > 0:
            prepare_layer(problem, variants)
        return forward(problem, data, W, bias, given=given, tuned=variants.get("forward"), devices=devices,
                       call_key=call_key)
    return call_forms.call("forward", (queue_for(data),), (data, W, bias), (conv, scratch_limit, given, variants,
                           train, devices), (), anew, dict(data=data, W=W, bias=bias))


def forward_problem(data, W, bias, stride, pad, dilation, postpad, groups, scratch_limit=None):
    """Validate a forward call's arrays and layer: the Problem, or ModuleError. scratch_limit: bytes a scratch
    buffer may take (a module's memlimit)."""
    queue = queue_for(data)
    _check_array("data", data, queue)
    _check_dtype(queue, data.dtype)
    if data.ndim < 3:
        raise ModuleError(f"data has {data.ndim} dimensions (expected: at least 3, (N, maps, *spatial))")
    if not isinstance(W, cl_array.Array):
        raise ModuleError(f"W must be a pyopencl.array.Array (given: {type(W).__name__})")
    nd = data.ndim - 2
    problem = Problem.create(queue, data.shape, W.shape if W.ndim == nd + 2 else (0, 0) + (1,) * nd, data.dtype,
                             stride, pad, dilation, postpad, groups, scratch_limit)
    _check_weights(W, bias, queue, data.dtype, nd, problem.cin, problem.geo)
    return problem


def forward(problem, data, W, bias, given=None, tuned=None, devices=None, row_chunk=False, call_key=None):
    """The forward of a validated call, by the implementation that serves it, with the variant given (checked),
    else the tuned one where it fits, else the default; split along the batch where its scratch would not fit,
    then along the first spatial axis (unless the call is such a chunk already), and across the devices of a
    group."""
    if devices is not None:
        return _forward_on_group(as_group(devices), problem, data, W, bias, given, tuned)
    impl = implementation("forward", problem)
    variant = impl.choose_variant(problem, given, tuned)

    def run(bounds):
        if len(bounds) == 1:
            return _replayed(("forward", impl, variant), problem, lambda: impl.run(problem, data, W, bias, variant),
                             call_key, data=data, W=W, bias=bias)
        y = problem.empty_output()
        for b0, b1 in bounds:
            _copy_batch(y, impl.run(batch_chunk(problem, b0, b1), data[b0:b1], W, bias, variant), b0)
        return y
    try:
        return split_along_batch(problem, run)
    except ScratchTooLarge:
        if row_chunk or problem.out_sp[0] < 2:
            raise
    return row_split.forward(problem, data, problem.empty_output(),
                             lambda sub, x_rows: forward(sub, x_rows, W, bias, given, tuned, row_chunk=True))


def _forward_on_group(group, problem, data, W, bias, given, tuned):
    check_home(group, data, "data", problem.dtype)
    y = problem.empty_output()
    problem.queue.finish()  # the other queues read what this one wrote
    parts = []
    try:  # on success and on failure alike, no part's memory is released while a queue still uses it
        for queue, b0, b1 in group.parts(problem.N):
            sub = batch_chunk(problem, b0, b1, queue)
            parts.append((b0, forward(sub, rows_on(sub, data, b0, b1), whole_on(sub, W), whole_on(sub, bias), given,
                                      tuned)))
        for b0, part in parts:
            put_rows(y, part, b0)
        return y
    finally:
        finish_all(group, problem.queue)


# ---------------------------------------------------------------------------------------------- ahead

PASSES = ("forward", "backward_data", "backward_weights")
_built_ahead = Plans()


def prepare_layer(problem, tuned=None):
    """Build the programs of a layer's three passes as one, ahead of its first forward in training (a compile's
    fixed cost once, not three times: kernel_manager.prepare); once per call shape, strategy switch and tuned
    variants (and target features). Builds only: a pass no implementation serves is left to fail at its own call."""
    tuned = tuned or {}
    key = ("layer", problem.queue.context.int_ptr, settings.forced_strategy(), settings.target_features(),
           problem.shape_key,
           tuple(v if isinstance(v, Variant) else None for v in map(tuned.get, PASSES)))  # others: not used
    _built_ahead.get(key, lambda: _build(problem, _chosen(problem, tuned)))


def build_ahead(problem, chosen):
    """The same for the passes chosen for a call ({family: (implementation, variant)}): backward data and the
    weight gradient of a functional call that wants both."""
    key = ("passes", problem.queue.context.int_ptr, settings.forced_strategy(), settings.target_features(),
           problem.shape_key, tuple((family, impl.strategy, variant) for family, (impl, variant) in chosen.items()))
    _built_ahead.get(key, lambda: _build(problem, chosen))


def _chosen(problem, tuned):
    chosen = {}
    for family in PASSES:
        try:
            impl = implementation(family, problem)
        except ModuleError:
            continue
        chosen[family] = impl, impl.choose_variant(problem, None, tuned.get(family))
    return chosen


def _build(problem, chosen):
    manager().prepare(problem.queue, [request for impl, variant in chosen.values()
                                      for request in impl.planned_programs(problem, variant)])
    return True


# ---------------------------------------------------------------------------------------------- backward

def backward_problem(grad, W, data_shape, stride, pad, dilation, groups, scratch_limit=None):
    """Validate grad against W and the forward input's shape; the postpad is what grad's shape implies."""
    queue = queue_for(grad)
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
        data_shape = (grad.shape[0], W.shape[0]) + base.smallest_input(grad.shape[2:])
    in_sp = tuple(data_shape[2:])
    zero_post = base.zero_postpad_out(in_sp)
    postpad = tuple(o - z for o, z in zip(grad.shape[2:], zero_post))
    if any(pp < 0 for pp in postpad):
        raise ModuleError(f"grad has spatial shape {tuple(grad.shape[2:])} (expected: {zero_post} plus a postpad "
                          f"smaller than max(stride, dilation) per axis, for input spatial shape {in_sp})")
    try:
        problem = Problem.create(queue, data_shape, W.shape, grad.dtype, stride, pad, dilation, postpad, groups,
                                 scratch_limit)
    except ModuleError as e:
        raise ModuleError(f"grad has spatial shape {tuple(grad.shape[2:])}, which does not match input spatial "
                          f"shape {in_sp}: {e}") from None
    _check_weights(W, None, queue, grad.dtype, nd, problem.cin, problem.geo, outmaps=grad.shape[1])
    if grad.shape[0] != problem.N:
        raise ModuleError(f"grad has batch {grad.shape[0]} (expected: {problem.N})")
    return problem


def deconvNdBackwardData(grad, W, data=None, stride=1, pad=0, dilation=1, groups=1, tile=None, devices=None):
    """Input gradient of deconvNd: a strided direct convolution of grad with W. Shape of data (or the
    smallest input consistent with grad when data is None). `devices` as for deconvNd."""
    def anew(call_key):
        problem = backward_problem(grad, W, None if data is None else data.shape, stride, pad, dilation, groups)
        if data is not None:
            _check_array("data", data, problem.queue, grad.dtype)
        return backward(problem, None, grad, W, None, want_params=False, given={"backward_data": tile},
                        devices=devices, call_key=call_key)
    conv = dict(stride=stride, pad=pad, dilation=dilation, groups=groups)
    gx, _ = call_forms.call("backward_data", (queue_for(grad),), (grad, W, data), (conv, tile, devices), (), anew,
                            dict(grad=grad, data=None, W=W, wgrad=None, bgrad=None))
    return gx


def deconvNdBackwardParams(data, grad, W, bias=None, stride=1, pad=0, dilation=1, groups=1, wgrad=None,
                           bgrad=None, scale=1.0, momentum=0.0, tile=None, devices=None):
    """(wgrad, bgrad) = scale * (gradients of W and b) + momentum * (wgrad, bgrad); bgrad is None without bias.

    The reduction is deterministic (fixed chunks summed in a fixed order, no atomics), over the devices of a
    group (`devices`, as for deconvNd) too: their parts are summed in the group's order."""
    def anew(call_key):
        return _backward_params(data, grad, W, bias, stride, pad, dilation, groups, wgrad, bgrad, scale, momentum,
                                tile, devices, call_key)
    conv = dict(stride=stride, pad=pad, dilation=dilation, groups=groups)
    _, params = call_forms.call("backward_params", (queue_for(grad), queue_for(data)),
                                (data, grad, W, bias, wgrad, bgrad), (conv, tile, devices), (scale, momentum), anew,
                                dict(grad=grad, data=data, W=W, wgrad=wgrad, bgrad=bgrad))
    return params


def _backward_params(data, grad, W, bias, stride, pad, dilation, groups, wgrad, bgrad, scale, momentum, tile,
                     devices, call_key):
    """deconvNdBackwardParams validated and worked out: (gx, (wgrad, bgrad)) as backward returns them."""
    queue = queue_for(data)
    _check_array("data", data, queue)
    problem = backward_problem(grad, W, data.shape, stride, pad, dilation, groups)
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
    return backward(problem, data, grad, W, bias, want_data=False, wgrad=wgrad, bgrad=bgrad, scale=scale,
                    momentum=momentum, given={"backward_weights": tile}, devices=devices, call_key=call_key)


def backward_call(data, grad, W, bias, conv, scratch_limit=None, want_data=True, want_params=True, wgrad=None,
                  bgrad=None, scale=1.0, momentum=0.0, variants=None, devices=None):
    """A module's whole backward call (`data`: its forward's input; `variants`: its tuned ones): validated and
    worked out, or the replay an earlier call of its arguments' forms led to (call_forms.py). `conv`: stride,
    pad, dilation and groups by name."""
    variants = variants or {}

    def anew(call_key):
        problem = backward_problem(grad, W, data.shape, scratch_limit=scratch_limit, **conv)
        return backward(problem, data, grad, W, bias, want_data, want_params, wgrad, bgrad, scale, momentum,
                        tuned=variants, devices=devices, call_key=call_key)
    return call_forms.call("backward", (queue_for(grad),), (grad, data, W, bias, wgrad, bgrad),
                           (conv, scratch_limit, variants, want_data, want_params, devices), (scale, momentum), anew,
                           dict(grad=grad, data=data, W=W, wgrad=wgrad, bgrad=bgrad))


def backward(problem, data, grad, W, bias, want_data=True, want_params=True, wgrad=None, bgrad=None, scale=1.0,
             momentum=0.0, given=None, tuned=None, devices=None, row_chunk=False, call_key=None):
    """Input grad and parameter grads of a validated call, gy packed once for both. `given` and `tuned` map a
    family name to a variant: given ones are checked (ModuleError if they do not fit), tuned ones used where
    they fit. Split along the batch where the scratch would not fit, then along the first spatial axis (unless
    the call is such a chunk already), and across the devices of a group."""
    scale, momentum = _blend_factor("scale", scale), _blend_factor("momentum", momentum)
    if devices is not None and problem.N > 0 and (want_data or want_params):
        return _backward_on_group(as_group(devices), problem, data, grad, W, bias, want_data, want_params, wgrad,
                                  bgrad, scale, momentum, given, tuned)
    given, tuned = given or {}, tuned or {}
    passes = {}
    for family, wanted in (("backward_data", want_data), ("backward_weights", want_params)):
        if wanted:
            impl = implementation(family, problem)
            passes[family] = impl, impl.choose_variant(problem, given.get(family), tuned.get(family))
    with_bias = bias is not None
    if not passes:
        return None, (None, None)
    if len(passes) > 1 and problem.N > 0:  # both in one build (a training module's forward built them already)
        build_ahead(problem, passes)

    def run_whole(sub, grad_sub, data_sub, wgrad_sub, bgrad_sub, scale_sub, momentum_sub):
        packs = None
        if sub.N > 0:
            reach = max(impl.gy_reach(sub, variant) for impl, variant in passes.values())
            weights = passes.get("backward_weights")
            packs = GradPacks(sub, grad_sub, reach, weights[0].gy_block(weights[1]) if weights else 1)
        gx, params = None, (None, None)
        if want_data:
            impl, variant = passes["backward_data"]
            gx = impl.run(sub, grad_sub, W, variant, packs)
        if want_params:
            impl, variant = passes["backward_weights"]
            params = impl.run(sub, data_sub, grad_sub, W, with_bias, variant, wgrad_sub, bgrad_sub, scale_sub,
                              momentum_sub, packs)
        return gx, params

    def run(bounds):
        if len(bounds) == 1:
            what = ("backward", tuple(passes.items()), with_bias, scale.hex(), momentum.hex())  # -0.0 is not 0.0
            return _replayed(what, problem, lambda: run_whole(problem, grad, data, wgrad, bgrad, scale, momentum),
                             call_key, grad=grad, data=data, W=W, wgrad=wgrad, bgrad=bgrad)
        gx = None
        if want_data:
            gx = problem.empty_input_gradient()
        sums = GradientSum(problem, W, with_bias) if want_params else None
        for b0, b1 in bounds:
            chunk = batch_chunk(problem, b0, b1)
            # each chunk's operands copied once (a view with an offset would be copied by every kernel)
            gx_c, params_c = run_whole(chunk, grad[b0:b1].copy(), None if data is None else data[b0:b1].copy(),
                                       None, None, 1.0, 0.0)
            if want_data:
                _copy_batch(gx, gx_c, b0)
            if want_params:
                sums.add(params_c)
        params = sums.write(wgrad, bgrad, scale, momentum) if want_params else (None, None)
        return gx, params
    try:
        return split_along_batch(problem, run)
    except ScratchTooLarge:
        if row_chunk or problem.in_sp[0] < 2:
            raise
    gx = None
    if want_data and getattr(passes["backward_data"][1], "gy", None) is GySource.IN_PLACE:
        # Backward data reading gy in place needs no scratch: it runs on the whole call, unsplit. That keeps
        # its result bitwise the unsplit call's too (a 1d layer's chunks of rows, shorter than its tile, would
        # read gy from packed planes, which sum in another order).
        impl, variant = passes["backward_data"]
        gx, want_data = impl.run(problem, grad, W, variant), False
        if not want_params:
            return gx, (None, None)

    def run_rows(sub, x_rows, gy_rows):
        return backward(sub, x_rows, gy_rows, W, None, want_data, want_params, None, None, 1.0, 0.0, given, tuned,
                        row_chunk=True)
    gx_rows, params = row_split.backward(problem, data, grad, W, want_data, want_params, with_bias, wgrad, bgrad,
                                         scale, momentum, run_rows)
    return gx if gx is not None else gx_rows, params


def _backward_on_group(group, problem, data, grad, W, bias, want_data, want_params, wgrad, bgrad, scale, momentum,
                       given, tuned):
    check_home(group, grad, "grad", problem.dtype)
    gx = problem.empty_input_gradient() if want_data else None
    problem.queue.finish()  # the other queues read what this one wrote
    parts = []
    try:  # on success and on failure alike, no part's memory is released while a queue still uses it
        for queue, b0, b1 in group.parts(problem.N):
            sub = batch_chunk(problem, b0, b1, queue)
            parts.append((b0, backward(sub, rows_on(sub, data, b0, b1), rows_on(sub, grad, b0, b1), whole_on(sub, W),
                                       whole_on(sub, bias), want_data, want_params, None, None, 1.0, 0.0, given,
                                       tuned)))
        params = (None, None)
        if want_data:
            for b0, (gx_part, _) in parts:
                put_rows(gx, gx_part, b0)
        if want_params:  # summed in the group's order on the call's queue, then written once
            sums = GradientSum(problem, W, bias is not None)
            for _, (_, params_part) in parts:
                sums.add([None if p is None else home_copy(problem.queue, p) for p in params_part])
            params = sums.write(wgrad, bgrad, scale, momentum)
        return gx, params
    finally:
        finish_all(group, problem.queue)


def _blend_factor(name, value):
    """scale or momentum as a float: a real number (a NumPy scalar or 0-d array, a Decimal too), else
    ModuleError."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, decimal.Decimal)):
        raise ModuleError(f"{name} must be a real number (given: {value!r})")
    try:
        return float(value)
    except OverflowError:
        raise ModuleError(f"{name} = {value!r} is out of a float's range") from None


def _replayed(what, problem, run, call_key, **arrays):
    """run() of a whole (unsplit) call, replayed where a call of its shape was recorded (replay.py). `what`: the
    pass and everything its Python reads but the Problem and the arrays. `call_key`: the whole call's key
    (call_forms.py), which then leads to this replay's key at once."""
    if problem.N == 0:
        return run()
    queue = problem.queue
    key = what + (problem.shape_key, queue.int_ptr, queue.context.int_ptr, problem.scratch_limit,
                  settings.replay_switches(), tuple(map(replay.array_form, arrays.values())))
    if call_key is not None:
        replay.remember_call(call_key, key)
    return replay.call(key, run, queue, arrays)


def batch_chunk(problem, b0, b1, queue=None):
    """The call restricted to batch items b0 .. b1 - 1 (on another queue, where given)."""
    return dataclasses.replace(problem, N=b1 - b0, queue=queue or problem.queue)


def split_along_batch(problem, run):
    """run(bounds) with one chunk, or, while some scratch buffer is too large (ScratchTooLarge), with the batch in
    2, 4, 8 ... equal chunks, up to one item a chunk. The chunking depends on the shape and the limits only, so
    results are the same on every run: forward and input gradients bitwise those of the unsplit call, parameter
    gradients summed over the chunks in order."""
    parts = 1
    while True:
        bounds = [(problem.N * i // parts, problem.N * (i + 1) // parts) for i in range(parts)]
        try:
            return run(bounds)
        except ScratchTooLarge:
            if parts >= problem.N:
                raise
            parts = min(problem.N, parts * 2)


def _copy_batch(dst, chunk, b0):
    """dst[b0 : b0 + len(chunk)] = chunk, on the device."""
    if chunk.size:
        cl.enqueue_copy(dst.queue, dst.data, chunk.data, dst_offset=b0 * dst.strides[0], byte_count=chunk.nbytes)
