"""Choosing the OpenCL device: the default queue, and what a device can do."""

import numpy as np
import pyopencl as cl

from . import settings
from .device_kind import kind_of
from .errors import ModuleError

NO_PLATFORM_HELP = (
    "No OpenCL platform found. Install a GPU driver's OpenCL runtime, or the portable CPU one with "
    "`pip install pocl-binary-distribution` (the `pocl` extra: `pip install deconvnd_cl[pocl]`)."
)

_default_queue = None

settings.apply_pocl_defaults()  # before the first platform query


def is_simulator(device):
    """Oclgrind's device claims every device type; it is only used when asked for by name."""
    return "oclgrind" in device.platform.name.lower()


def all_devices():
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        platforms = []
    return [d for p in platforms for d in p.get_devices()]


def device_label(device):
    """'platform, platform version / device': what --device and DECONVND_CL_TEST_DEVICES match against (the
    version tells two builds of one implementation apart, such as PoCL 3.0 from pip and 3.1 from Debian)."""
    platform = device.platform
    return f"{platform.name.strip()}, {platform.version.strip()} / {device.name.strip()}"


def find_device(pattern):
    """The first device whose label contains `pattern` (case-insensitive), or None."""
    for device in all_devices():
        if pattern.lower() in device_label(device).lower():
            return device
    return None


def pick_default_device():
    """A GPU if there is one, else a CPU (Mesa's rusticl last: its llvmpipe runs these kernels 15-70x slower than
    PoCL or Intel's runtime on the same CPU), never the simulator; ModuleError when there is no platform."""
    devices = [d for d in all_devices() if not is_simulator(d)]
    if not devices:
        raise ModuleError(NO_PLATFORM_HELP)

    def rank(device):
        order = (cl.device_type.GPU, cl.device_type.CPU)
        kind = next((i for i, t in enumerate(order) if device.type & t), len(order))
        return kind, kind_of(device).name == "rusticl-cpu"
    return min(devices, key=rank)  # min is stable: the platforms' order among equals


def keep_context_alive(queue, context):
    """Hold `context` for as long as `queue` lives. The OpenCL specification has a queue retain its context,
    but Intel's CPU runtime invalidates a context once its last handle is released, even while queues still
    use it (every later call fails with INVALID_CONTEXT); so whatever the library creates, it keeps."""
    queue._dcl_context = context
    return queue


def create_queue(device=None):
    """A queue on a context of its own for `device` (default: pick_default_device), the context kept alive."""
    device = device or pick_default_device()
    context = cl.Context([device])
    return keep_context_alive(cl.CommandQueue(context), context)


def default_queue():
    """The library's queue, created on first use: PYOPENCL_CTX if set, else a GPU, else a CPU."""
    global _default_queue
    if _default_queue is None:
        if settings.pyopencl_ctx():
            try:
                context = cl.create_some_context(interactive=False)
            except (cl.Error, RuntimeError) as e:
                raise ModuleError(f"PYOPENCL_CTX={settings.pyopencl_ctx()!r} selects no device: {e}. "
                                  + NO_PLATFORM_HELP) from None
            _default_queue = keep_context_alive(cl.CommandQueue(context), context)
        else:
            _default_queue = create_queue()
    return _default_queue


def set_default_queue(queue):
    global _default_queue
    if queue is not None and not isinstance(queue, cl.CommandQueue):
        raise ModuleError(f"set_default_queue expects a pyopencl.CommandQueue (given: {type(queue).__name__})")
    if queue is not None and not hasattr(queue, "_dcl_context"):
        keep_context_alive(queue, queue.context)  # from now on at least; see keep_context_alive
    _default_queue = queue


def supports_dtype(device, dtype):
    """float32 always; float64 with cl_khr_fp64; float16 as storage (vload_half) on every device."""
    dtype = np.dtype(dtype)
    if dtype == np.float32 or dtype == np.float16:
        return True
    if dtype == np.float64:
        return "cl_khr_fp64" in device.extensions or device.double_fp_config != 0
    return False


def describe(device):
    return f"{device.name.strip()} ({device.platform.name.strip()}, {device.driver_version.strip()})"
