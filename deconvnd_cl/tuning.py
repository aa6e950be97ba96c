"""optimizeForShape / `deconvnd-cl tune`: time the tile variants of each kernel family for one layer and input
shape on one device, keep the fastest, and remember it beside the kernel cache so later runs skip the timing
(as cuDNN's find does for PuzzleLib on CUDA).

Winners live in <cache dir>/<device dir>/tuning.json, keyed by the layer's geometry, maps, dtype and input
shape; the file is replaced atomically. With the disk cache disabled they are remembered for the process only.
"""

import json
import time

import numpy as np
import pyopencl.array as cla

from . import functional, tiles
from .device import default_queue, is_cpu
from .disk_cache import _atomic_write
from .kernel_manager import manager

_memory = {}


def _candidates(device, dtype, cig, cog, non_overlapping, direct_last_stride=0):
    """Tile variants per family. direct_last_stride (1 or 2, 0 if none): the layer can read gy in place
    (Geometry.direct_backward), which adds the GY_IN_PLACE variants; those that do not fit the shape fail and
    are skipped by the tuner."""
    vw = tiles.vector_width(device, dtype)
    gemm = {tiles.gemm_tile(device, dtype, cog)}
    data = {tiles.backward_data_tile(device, dtype, cig, direct_last_stride)}
    weights = {tiles.weights_tile(device, dtype, cig, cog, non_overlapping, bool(direct_last_stride))}
    widths = (vw,) if is_cpu(device) else (4, 8)
    for v in widths:
        for tm, nvec in ((6, 2), (4, 3), (4, 2), (3, 4), (8, 1), (2, 4), (1, 4)):
            gemm.add((min(tm, cog), v * nvec, v))
            data.add((min(tm, cig), v * nvec, v))
        for tm, tn in ((4, 3), (3, 4), (2, 6), (1, 12)):
            weights.add((min(tm, cig), min(tn, cog), v, 0))
            if direct_last_stride:
                weights.add((min(tm, cig), min(tn, cog), v, tiles.GY_IN_PLACE))
        if direct_last_stride:
            for tm, nvec in ((6, 2), (4, 3), (3, 4), (8, 1)):
                data.add((min(tm, cig), v * nvec // direct_last_stride, v, tiles.GY_IN_PLACE))
        if cog >= v:
            for tm, nvec in ((6, 2), (4, 3), (12, 1), (3, 4)):
                weights.add((min(tm, cig), v * nvec, v, 1))
    return {"forward": sorted(gemm), "backward_data": sorted(data), "backward_weights": sorted(weights)}


def _key(spec, shape):
    g = spec.geometry()
    return json.dumps([spec.nd, spec.inmaps, spec.outmaps, g.size, g.stride, g.pad, g.dilation, g.postpad,
                       g.groups, str(spec.np_dtype), list(shape)])


def _store_path(queue):
    cache = manager().cache
    return cache.device_dir(queue.device) / "tuning.json" if cache.enabled else None


def _load_all(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def lookup(spec, shape, queue=None):
    """The remembered winners for this layer and shape, or None."""
    queue = queue or default_queue()
    key = _key(spec, shape)
    if key in _memory:
        return _memory[key]
    path = _store_path(queue)
    found = _load_all(path).get(key) if path else None
    if found:
        found = {family: tuple(tile) for family, tile in found.items()}
        _memory[key] = found
    return found


def _remember(spec, shape, winners, queue):
    key = _key(spec, shape)
    _memory[key] = winners
    path = _store_path(queue)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = _load_all(path)
        table[key] = {family: list(tile) for family, tile in winners.items()}
        _atomic_write(path, json.dumps(table, indent=1).encode())
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


def tune_layer(spec, queue=None, shape=None, progress=None, force=False):
    """Winning tile per family for `spec` on input `shape` (default spec.input_shape()); cached."""
    queue = queue or default_queue()
    shape = tuple(shape or spec.input_shape())
    if not force:
        known = lookup(spec, shape, queue)
        if known:
            return known
    g = spec.geometry()
    dtype = spec.np_dtype
    rng = np.random.default_rng(0)
    conv = dict(stride=g.stride, pad=g.pad, dilation=g.dilation, groups=g.groups)
    x = cla.to_device(queue, rng.standard_normal(shape).astype(dtype))
    W = cla.to_device(queue, rng.standard_normal(spec.weight_shape()).astype(dtype))
    y = functional.deconvNd(x, W, None, postpad=g.postpad, **conv)
    grad = cla.to_device(queue, rng.standard_normal(y.shape).astype(dtype))
    runs = {
        "forward": lambda t: functional.deconvNd(x, W, None, postpad=g.postpad, tile=t, **conv),
        "backward_data": lambda t: functional.deconvNdBackwardData(grad, W, x, tile=t, **conv),
        "backward_weights": lambda t: functional.deconvNdBackwardParams(x, grad, W, tile=t, **conv),
    }
    candidates = _candidates(queue.device, dtype, spec.inmaps // g.groups, spec.outmaps // g.groups,
                             g.non_overlapping, g.stride[-1] if g.direct_backward else 0)
    total = sum(len(c) for c in candidates.values())
    done, winners = 0, {}
    for family, tiles_to_try in candidates.items():
        best = None
        for tile in tiles_to_try:
            done += 1
            if progress:
                progress(done, total, f"{family} {tile}")
            try:
                seconds = _time(queue, lambda: runs[family](tile))
            except Exception:  # a variant this device cannot build or run is simply not a candidate
                continue
            if best is None or seconds < best[0]:
                best = (seconds, tile)
        if best:
            winners[family] = best[1]
    _remember(spec, shape, winners, queue)
    return winners


def tune_cli(specs, args):
    from .cli import _progress
    for spec in specs:
        shape = spec.input_shape()
        print(f"tuning {spec.label()} for input {shape}")
        winners = tune_layer(spec, shape=shape, progress=_progress, force=True)
        for family, tile in winners.items():
            print(f"  {family:<17} tile {tile}")
    return 0
