"""Every environment switch of the library, read in this one place (at each use, so a test or a user can change
one between calls). Documented in docs/guide.md (user switches) and docs/design.md (test switches).
"""

import os

from .errors import ModuleError

STRATEGIES = ("cpu", "gpu")


def _get(name):
    return os.environ.get(name, "")


# -- user switches

def cache_dir():
    """DECONVND_CL_CACHE_DIR: where the kernel cache lives (empty: the platform's user cache directory)."""
    return _get("DECONVND_CL_CACHE_DIR") or None


def cache_disabled():
    """DECONVND_CL_NO_CACHE=1: no disk cache (kernels are cached in memory only)."""
    return _get("DECONVND_CL_NO_CACHE") == "1"


def driver_cache():
    """DECONVND_CL_DRIVER_CACHE=0: store program binaries in the disk cache even where the OpenCL implementation
    keeps compiled programs itself (default, unset or 1: rely on that cache there; disk_cache.py)."""
    value = _get("DECONVND_CL_DRIVER_CACHE").strip()
    if value not in ("", "0", "1"):
        raise ModuleError(f"DECONVND_CL_DRIVER_CACHE={value!r} is not a switch (expected 0 or 1, or unset)")
    return value != "0"


def pocl_kernel_cache():
    """POCL_KERNEL_CACHE (PoCL's own switch, on unless 0): whether PoCL keeps compiled programs on disk."""
    return _get("POCL_KERNEL_CACHE").strip() != "0"


def forced_strategy():
    """DECONVND_CL_STRATEGY=cpu|gpu: run that kernel strategy on any device (empty: by device kind)."""
    value = _get("DECONVND_CL_STRATEGY").strip().lower()
    if value and value not in STRATEGIES:
        raise ModuleError(f"DECONVND_CL_STRATEGY={value!r} is not a strategy (expected one of: "
                          f"{', '.join(STRATEGIES)}, or unset)")
    return value or None


def scratch_limit():
    """DECONVND_CL_SCRATCH_LIMIT: bytes one scratch buffer of a call may take at most (suffixes K, M, G); a call
    whose scratch is larger is split along the batch. Unset: the device's max_mem_alloc_size."""
    value = _get("DECONVND_CL_SCRATCH_LIMIT").strip().upper()
    if not value:
        return None
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(value[-1], 1)
    digits = value[:-1] if value[-1] in "KMG" else value
    if not digits.isdigit() or int(digits) < 1:
        raise ModuleError(f"DECONVND_CL_SCRATCH_LIMIT={value!r} is not a positive size (e.g. 512M)")
    return int(digits) * scale


def extra_build_options():
    """DECONVND_CL_BUILD_OPTIONS: options added to every kernel build (e.g. -cl-opt-disable for a debugger)."""
    return tuple(_get("DECONVND_CL_BUILD_OPTIONS").split())


def target_features():
    """DECONVND_CL_TARGET_FEATURES: LLVM target features (comma-separated, e.g. avx512f,avx512vl,avx512bw,avx512dq)
    the register-tiled kernels are compiled for on PoCL's CPU device beyond PoCL's own target, each one the CPU
    must have (device_kind.target_features checks). Empty: PoCL's target alone."""
    value = _get("DECONVND_CL_TARGET_FEATURES").strip().lower()
    features = [f.strip() for f in value.split(",")] if value else []
    bad = [f for f in features if not f or not f.replace("_", "").replace(".", "").replace("-", "").isalnum()]
    if bad:
        raise ModuleError(f"DECONVND_CL_TARGET_FEATURES={value!r} is not a list of target features (expected names "
                          f"separated by commas, e.g. avx512f,avx512vl,avx512bw,avx512dq)")
    return tuple(features)


def replay_enabled():
    """DECONVND_CL_REPLAY=0: every call works out its launches anew (default: a call of a shape seen before
    replays its recorded enqueues, replay.py)."""
    return _get("DECONVND_CL_REPLAY") != "0"


# What a pass's launches depend on among these switches, read as one key of its replays (replay.py).
REPLAY_SWITCHES = ("DECONVND_CL_STRATEGY", "DECONVND_CL_SCRATCH_LIMIT", "DECONVND_CL_BUILD_OPTIONS",
                   "DECONVND_CL_INDEX_BITS", "DECONVND_CL_LOCAL_SIZE", "DECONVND_CL_TARGET_FEATURES")


def replay_switches():
    return tuple(map(_get, REPLAY_SWITCHES))


def pyopencl_ctx():
    """PYOPENCL_CTX (pyopencl's own switch): the device the default queue takes, when set."""
    return _get("PYOPENCL_CTX") or None


# -- test switches

def forced_index_bits():
    """DECONVND_CL_INDEX_BITS=64: 64-bit index arithmetic even where 32 bits suffice."""
    return 64 if _get("DECONVND_CL_INDEX_BITS") == "64" else None


def local_size_override():
    """DECONVND_CL_LOCAL_SIZE=N: work-items per work-group of the register-tiled kernels (capped per kernel)."""
    value = _get("DECONVND_CL_LOCAL_SIZE")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ModuleError(f"DECONVND_CL_LOCAL_SIZE={value!r} is not a positive integer")
    return int(value)


def build_forbidden():
    """DECONVND_CL_FORBID_BUILD=1: any kernel build fails (proves that a warm cache builds nothing)."""
    return _get("DECONVND_CL_FORBID_BUILD") == "1"


# -- defaults the library sets for the OpenCL implementations it runs on

def apply_pocl_defaults():
    """PoCL's CPU device: pin its worker threads to the cores, unless the user set POCL_AFFINITY. Left to the OS
    scheduler, the two workers on a 2-core machine often ran on one core: kernels took 1.8x as long in
    stretches (V-Net weight gradient, 40 calls: 26-29 slow without, 0 with; docs/performance.md). PoCL reads
    it when it initialises, at the process's first platform query, so this runs when the library is imported."""
    os.environ.setdefault("POCL_AFFINITY", "1")
