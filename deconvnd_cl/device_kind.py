"""What kind of OpenCL device a device is, for the choices that depend on it: the strategy it prefers and the
launch shape of the register-tiled kernels. A device type (CPU, GPU) is not enough: the same CPU runs the
register-tiled kernels at about 100 GFLOP/s under PoCL and Intel's runtime and at 1.4 under Mesa's rusticl,
whose llvmpipe back end pays a fixed cost per work-group and runs the work-items of a group in SIMD lanes.
Each entry says where its numbers come from (docs/portability.md).
"""

import warnings
from dataclasses import dataclass
from functools import lru_cache

import pyopencl as cl

from . import settings
from .errors import ModuleError


@dataclass(frozen=True)
class DeviceKind:
    name: str
    strategy: str        # the strategy tried first: "cpu" (register-tiled) or "gpu" (work-group tiled)
    cpu_like: bool       # runs the register-tiled kernels' defaults for CPUs (big tiles, native-width vectors)
    tiled_local: int     # work-items per work-group of the register-tiled kernels
    source: str          # where the choice comes from


KINDS = {
    "pocl-cpu": DeviceKind("pocl-cpu", "cpu", True, 1, "PoCL runs a work-group as one loop nest: local size 1, "
                                                        "tiles of 12 float8 accumulators (docs/performance.md)"),
    "intel-cpu": DeviceKind("intel-cpu", "cpu", True, 1, "Intel's CPU runtime: same kernels within 10% of PoCL "
                                                          "(docs/portability.md)"),
    "rusticl-cpu": DeviceKind("rusticl-cpu", "cpu", True, 8, "llvmpipe: 1.4 GFLOP/s at local size 1, 6.4 at 8 "
                                                               "(2d 64->32 k4 s2 forward, docs/portability.md)"),
    "cpu": DeviceKind("cpu", "cpu", True, 1, "other CPU implementations: as PoCL"),
    "nvidia-gpu": DeviceKind("nvidia-gpu", "gpu", False, 64, "NVIDIA: warps of 32; strategies/gpu_tiles.py"),
    "amd-gpu": DeviceKind("amd-gpu", "gpu", False, 64, "AMD: wavefronts of 64 (32 on RDNA); strategies/gpu_tiles.py"),
    "intel-gpu": DeviceKind("intel-gpu", "gpu", False, 64, "Intel: subgroups of 8-32; strategies/gpu_tiles.py"),
    "gpu": DeviceKind("gpu", "gpu", False, 64, "other GPUs and accelerators: work-groups of 64 (two AMD "
                                                "wavefronts, two NVIDIA warps)"),
    "simulator": DeviceKind("simulator", "gpu", False, 64, "Oclgrind presents itself as a GPU; tested as one"),
}


@lru_cache(maxsize=64)
def _kind(platform_name, vendor, device_type):
    platform, vendor = platform_name.lower(), vendor.lower()
    if "oclgrind" in platform:
        return KINDS["simulator"]
    if not device_type & cl.device_type.CPU:
        if device_type & cl.device_type.GPU:
            for name, marks in (("nvidia-gpu", ("nvidia",)), ("amd-gpu", ("advanced micro devices", "amd")),
                                ("intel-gpu", ("intel",))):
                if any(mark in vendor for mark in marks):
                    return KINDS[name]
        return KINDS["gpu"]
    if "portable computing language" in platform:
        return KINDS["pocl-cpu"]
    if "intel" in platform:
        return KINDS["intel-cpu"]
    if "rusticl" in platform:
        return KINDS["rusticl-cpu"]
    return KINDS["cpu"]


def kind_of(device):
    return _kind(device.platform.name.strip(), device.vendor.strip(), device.type)


PROBE_KERNEL = "dcl_vector_registers"
_probe_contexts = []  # kept alive: Intel's CPU runtime invalidates a released context (device.keep_context_alive)


@lru_cache(maxsize=64)
def compiled_float_lanes(device):
    """Float lanes of the vector registers the device's compiler targets, from the target macros it predefines
    (templates/vector_registers.mako: built, never launched), or 0 where it names none the probe knows or the
    probe does not build. The hardware's width is not enough: PoCL 3.0 (LLVM 14) on an AMD Zen 4 reports
    CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT = 16, as the CPU has AVX-512, but compiles for znver3, AVX2 with 16
    registers of 256 bits, where tiles sized for 512-bit vectors spill (forward 1.5-3x slower,
    docs/performance.md). The answer is recorded in the kernel cache's directory for the device (whose identity
    covers its driver's version and the templates): a later process skips the probe's context and build, 0.1-0.2 s
    of its first layer's cold start on PoCL."""
    from .kernel_manager import manager  # not at import: the kernel manager reads the environment's settings
    cache = manager().cache
    recorded = cache.load_fact(device, PROBE_KERNEL)
    if type(recorded) is int and recorded >= 0:
        return recorded
    lanes = _probe_float_lanes(device)
    if lanes is not None:
        cache.record_fact(device, PROBE_KERNEL, lanes)
    return lanes or 0


def _probe_float_lanes(device):
    """compiled_float_lanes' probe; None where the probe does not build (not recorded: the next process tries
    again)."""
    from .kernel_manager import build_quietly  # not at import: the kernel manager imports this module (device)
    from .render import render  # not at import: the library reads no template before its first call
    try:
        context = cl.Context([device])
        _probe_contexts.append(context)
        program = build_quietly(cl.Program(context, render("vector_registers.mako", name=PROBE_KERNEL)),
                                cache_dir=False)
        size = getattr(program, PROBE_KERNEL).get_work_group_info(
            cl.kernel_work_group_info.COMPILE_WORK_GROUP_SIZE, device)
    except cl.Error:
        return None
    return max(0, int(size[0]) - 1)


def host_cpu_features():
    """The host CPU's features as Linux lists them (/proc/cpuinfo's flags), spelled without underscores (feature_key),
    or None where that list cannot be read."""
    return _host_cpu_features(CPUINFO)


CPUINFO = "/proc/cpuinfo"


@lru_cache(maxsize=4)
def _host_cpu_features(path):
    try:
        with open(path) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return None
    return None if flags is None else frozenset(map(feature_key, flags))


def feature_key(name):
    """A CPU feature's name as Linux and LLVM both spell it: Linux's avx512_vnni, sse4_2 and amx_tile are LLVM's
    avx512vnni, sse4.2 and amx-tile (separators dropped), and a few have other names (LINUX_NAMES)."""
    name = name.replace("_", "").replace(".", "").replace("-", "")
    return LINUX_NAMES.get(name, name)


# LLVM's x86 feature names that /proc/cpuinfo lists under another name
LINUX_NAMES = {"sse3": "pni", "lzcnt": "abm", "sha": "shani", "sahf": "lahflm"}


def target_features(device):
    """The LLVM target features the register-tiled kernels are compiled for on this device beyond its compiler's
    own target (settings.target_features, "" where unset), as a comma-separated string: only on PoCL's CPU
    device, which compiles for the host CPU, and only features the host CPU has (a kernel compiled for one it
    lacks would stop the process with an illegal instruction), else ModuleError.

    What it is for: PoCL 3.0's LLVM 14 knows no AMD Zen 4 and compiles for znver3 (AVX2) there, though the CPU
    has AVX-512; with avx512f,avx512vl,avx512bw,avx512dq the kernels are compiled for 512-bit vectors, and the
    tiles take 16 float lanes (float_lanes). PoCL accepts no build option that would change its target, but
    honours a function's `target` attribute (common.mako's kernel_head).

    Where the compiler's own target has 512-bit registers already (PoCL 3.0 on an Intel Xeon with AVX-512), AVX-512
    features are not applied, with a warning: the kernels are compiled for them anyway, and a work function
    compiled for them under that target's tuning (LLVM's prefer-256-bit on Intel's AVX-512 cores) splits each
    512-bit operation in two and spills its tile (every suite pass 1.2-1.9x slower, docs/performance.md)."""
    features = settings.target_features()
    if not features or kind_of(device).name != "pocl-cpu":
        return ""
    checked = _checked_features(features, host_cpu_features())
    if "avx512f" in features and compiled_float_lanes(device) >= 16:
        _warn_not_applied(checked)
        return ""
    return checked


@lru_cache(maxsize=16)
def _warn_not_applied(features):
    warnings.warn(f"deconvnd_cl: DECONVND_CL_TARGET_FEATURES={features} is not applied: PoCL compiles for 512-bit "
                  f"vectors on this CPU already, and the kernels run faster compiled for its own target",
                  stacklevel=2)


@lru_cache(maxsize=16)
def _checked_features(features, host):
    if host is None:
        raise ModuleError(f"DECONVND_CL_TARGET_FEATURES={','.join(features)}: the CPU's features cannot be read "
                          f"({CPUINFO}) to check them; unset it on this system")
    missing = [f for f in features if feature_key(f) not in host]
    if missing:
        raise ModuleError(f"DECONVND_CL_TARGET_FEATURES names {', '.join(missing)}, which {CPUINFO}'s flags do "
                          f"not list: this CPU does not have them (expected features it lists, e.g. "
                          f"avx512f,avx512vl,avx512bw,avx512dq where it has AVX-512)")
    return ",".join(features)


def float_lanes(device):
    """Float lanes of one vector register as the kernels are compiled for this device: the width the
    implementation reports (CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT), capped by the registers its compiler targets
    where it names them, unless the kernels are compiled for AVX-512 by their own target features
    (target_features). A width of 8 or less is taken as it is: the tiles take 8 lanes at least (vector_width),
    so the probe could not change them, and its build (0.1 s) is spared where it matters most, a first layer's
    cold start on the AVX2 machines most users have."""
    return _float_lanes(device, "avx512f" in target_features(device).split(","))


@lru_cache(maxsize=64)
def _float_lanes(device, avx512):
    if avx512:  # the kernels are compiled for 512-bit registers whatever the compiler's own target
        return 16
    native = device.native_vector_width_float
    if native <= 8:
        return native
    compiled = compiled_float_lanes(device)
    return min(native, compiled) if compiled else native


def vector_width(device, dtype):
    """Lanes of the register-tiled kernels' vectors: on CPU-like devices one vector register (float_lanes: 8
    floats for AVX2, 16 for AVX-512; doubles half as many; float16 storage accumulates in float vectors), 8 to 16
    lanes; 4 elsewhere."""
    if not kind_of(device).cpu_like:
        return 4
    lanes = min(16, max(8, float_lanes(device)))
    return lanes // 2 if dtype.itemsize == 8 else lanes


def accumulator_budget(device, dtype):
    """Vector accumulators of a default register tile on a CPU-like device: 12 of AVX2's 16 registers, 24 of
    AVX-512's 32 (the rest hold the streamed operand and the broadcast weights)."""
    return 24 if vector_width(device, dtype) * max(4, dtype.itemsize) >= 64 else 12
