"""optimizeForShape / `deconvnd-cl tune`: time the variants of each pass's implementation for one layer and
input shape on one device, keep the fastest, and remember it beside the kernel cache so later runs skip the
timing (as cuDNN's find does for PuzzleLib on CUDA).

Only variants whose declared constraints hold for the call are timed (Implementation.candidates). Winners live
in <cache dir>/<device dir>/tuning.json (one directory per OpenCL implementation, device and driver), keyed by
the layer's geometry, maps, dtype and input shape, each stored with the strategy that ran it; the file is
replaced atomically. With the disk cache disabled they are remembered for the process only.
"""

import json
import logging
import time

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import functional
from .device import default_queue
from .disk_cache import TUNING, atomic_write
from .errors import ModuleError
from .kernel_manager import manager
from .strategies import IMPLEMENTATIONS, implementation

_memory = {}
log = logging.getLogger(__name__)


def _key(spec, shape):
    g = spec.geometry()
    return json.dumps([spec.nd, spec.inmaps, spec.outmaps, g.size, g.stride, g.pad, g.dilation, g.postpad,
                       g.groups, str(spec.np_dtype), list(shape)])


def _store_path(queue):
    cache = manager().cache
    return cache.device_dir(queue.device) / TUNING if cache.enabled else None


def _load_all(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _decode(stored):
    """{family: variant} from the stored form, skipping entries this version cannot read."""
    winners = {}
    for family, entry in stored.items():
        for impl in IMPLEMENTATIONS.get(family, ()):
            if isinstance(entry, dict) and impl.strategy == entry.get("strategy"):
                try:
                    winners[family] = impl.variant_type.from_key(entry["variant"])
                except (ModuleError, KeyError, TypeError):  # an entry this version cannot read: tune again
                    pass
    return winners


def lookup(spec, shape, queue=None):
    """The remembered winners for this layer and shape ({family: variant}), or None."""
    queue = queue or default_queue()
    key = _key(spec, shape)
    if key in _memory:
        return _memory[key]
    path = _store_path(queue)
    found = _decode(_load_all(path).get(key, {})) if path else None
    if found:
        _memory[key] = found
    return found or None


def _remember(spec, shape, winners, strategies, queue):
    key = _key(spec, shape)
    _memory[key] = winners
    path = _store_path(queue)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = _load_all(path)
        table[key] = {family: {"strategy": strategies[family], "variant": list(variant.key())}
                      for family, variant in winners.items()}
        atomic_write(path, json.dumps(table, indent=1).encode())
    except OSError:
        pass  # remembered for this process; the kernel cache has already warned about its directory


def _time(queue, fn, repeats=3):
    fn()
    queue.finish()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        queue.finish()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def pass_runs(spec, queue, shape, memlimit=None):
    """{family: (problem, run)}: `run(variant)` calls that pass of `spec` with the variant, on fixed random
    operands of input `shape` (what the tuner times)."""
    g = spec.geometry()
    dtype = spec.np_dtype
    rng = np.random.default_rng(0)
    conv = dict(stride=g.stride, pad=g.pad, dilation=g.dilation, groups=g.groups)
    x = cla.to_device(queue, rng.standard_normal(shape).astype(dtype))
    W = cla.to_device(queue, rng.standard_normal(spec.weight_shape()).astype(dtype))
    y = functional.deconvNd(x, W, None, postpad=g.postpad, **conv)
    grad = cla.to_device(queue, rng.standard_normal(y.shape).astype(dtype))
    forward = functional.forward_problem(x, W, None, postpad=g.postpad, scratch_limit=memlimit, **conv)
    backward = functional.backward_problem(grad, W, x.shape, scratch_limit=memlimit, **conv)
    return {
        "forward": (forward, lambda v: functional.forward(forward, x, W, None, given=v)),
        "backward_data": (backward, lambda v: functional.backward(backward, x, grad, W, None, want_params=False,
                                                                  given={"backward_data": v})),
        "backward_weights": (backward, lambda v: functional.backward(backward, x, grad, W, None, want_data=False,
                                                                     given={"backward_weights": v})),
    }


def tune_layer(spec, queue=None, shape=None, progress=None, force=False, memlimit=None):
    """Winning variant per family for `spec` on input `shape` (default spec.input_shape()); cached.
    `progress(done, total, label)` is called before each timing; `memlimit` bounds the scratch of the timed calls
    as it will bound the module's. A candidate the device fails to build or run (its resources are not all
    known before building), or whose scratch does not fit the budget even for one batch item, is skipped with a
    log line."""
    queue = queue or default_queue()
    shape = tuple(shape or spec.input_shape())
    if not force:
        known = lookup(spec, shape, queue)
        if known:
            return known
    runs = pass_runs(spec, queue, shape, memlimit)
    chosen = {}
    for family, (problem, _) in runs.items():
        impl = implementation(family, problem)
        chosen[family] = impl, impl.candidates(problem)
    total = sum(len(candidates) for _, candidates in chosen.values())
    done, winners = 0, {}
    for family, (impl, candidates) in chosen.items():
        best = None
        for variant in candidates:
            done += 1
            if progress:
                progress(done, total, f"{family} {variant.key()}")
            try:
                seconds = _time(queue, lambda: runs[family][1](variant))
            except (cl.Error, ModuleError) as e:  # KernelBuildError is a ModuleError
                log.info("tuning %s: variant %s cannot run this call here (%s)", family, variant.key(), e)
                continue
            if best is None or seconds < best[0]:
                best = (seconds, variant)
        if best is not None:
            winners[family] = best[1]
    _remember(spec, shape, winners, {family: impl.strategy for family, (impl, _) in chosen.items()}, queue)
    return winners
