"""Choosing the OpenCL device: the default queue, and what a device can do."""

import os

import numpy as np
import pyopencl as cl

from .errors import ModuleError

NO_PLATFORM_HELP = (
    "No OpenCL platform found. Install a GPU driver's OpenCL runtime, or the portable CPU one with "
    "`pip install pocl-binary-distribution` (the `pocl` extra: `pip install deconvnd_cl[pocl]`)."
)

_default_queue = None

# PoCL's CPU device: pin its worker threads to the cores, unless the user set POCL_AFFINITY. Left to the OS
# scheduler, the two workers on a 2-core machine often ran on one core: kernels took 1.8x as long in stretches
# (V-Net weight gradient, 40 calls: 26-29 slow without, 0 with; docs/performance.md). PoCL reads it when it
# initialises, at the process's first platform query, so it is set here, before any.
os.environ.setdefault("POCL_AFFINITY", "1")


def is_simulator(device):
    """Oclgrind's device claims every device type; it is only used when asked for by name."""
    return "oclgrind" in device.platform.name.lower()


def all_devices():
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        platforms = []
    return [d for p in platforms for d in p.get_devices()]


def pick_default_device():
    """A GPU if there is one, else a CPU, never the simulator; ModuleError when there is no platform."""
    devices = [d for d in all_devices() if not is_simulator(d)]
    if not devices:
        raise ModuleError(NO_PLATFORM_HELP)
    for wanted in (cl.device_type.GPU, cl.device_type.CPU, cl.device_type.ALL):
        for device in devices:
            if device.type & wanted:
                return device
    return devices[0]


def create_queue(device=None):
    device = device or pick_default_device()
    return cl.CommandQueue(cl.Context([device]))


def default_queue():
    """The library's queue, created on first use: PYOPENCL_CTX if set, else a GPU, else a CPU."""
    global _default_queue
    if _default_queue is None:
        if os.environ.get("PYOPENCL_CTX"):
            try:
                context = cl.create_some_context(interactive=False)
            except (cl.Error, RuntimeError) as e:
                raise ModuleError(f"PYOPENCL_CTX={os.environ['PYOPENCL_CTX']!r} selects no device: {e}. "
                                  + NO_PLATFORM_HELP) from None
            _default_queue = cl.CommandQueue(context)
        else:
            _default_queue = create_queue()
    return _default_queue


def set_default_queue(queue):
    global _default_queue
    if queue is not None and not isinstance(queue, cl.CommandQueue):
        raise ModuleError(f"set_default_queue expects a pyopencl.CommandQueue (given: {type(queue).__name__})")
    _default_queue = queue


def supports_dtype(device, dtype):
    """float32 always; float64 with cl_khr_fp64; float16 as storage (vload_half) on every device."""
    dtype = np.dtype(dtype)
    if dtype == np.float32 or dtype == np.float16:
        return True
    if dtype == np.float64:
        return "cl_khr_fp64" in device.extensions or device.double_fp_config != 0
    return False


def is_cpu(device):
    return bool(device.type & cl.device_type.CPU) and not is_simulator(device)


def describe(device):
    return f"{device.name.strip()} ({device.platform.name.strip()}, {device.driver_version.strip()})"
