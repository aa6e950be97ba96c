"""The kernel manager: KernelKey -> render -> build (or load from disk) -> cl.Kernel, cached per context.

Memory level: one Program per (context, device, key), holding its cl.Kernel objects (pyopencl warns that
re-retrieving kernels is slow). Disk level: `disk_cache.DiskCache`, per device, so a second process launches
without compiling. pyopencl's own program cache is bypassed: we build raw programs, so only one disk cache runs.
"""

import logging
import os
import tempfile
import threading
import time

import pyopencl as cl

from . import disk_cache
from .device import describe
from .errors import KernelBuildError
from .render import render

log = logging.getLogger(__name__)

# No fast-math options: -cl-fast-relaxed-math turns NaN*0 into 0 on PoCL, breaking IEEE propagation.
BUILD_OPTIONS = ()


class Program:
    """A built program for one device and key, with its kernels retrieved once."""

    def __init__(self, key, device, raw_program, source, build_seconds, from_disk):
        self.key, self.device, self.source = key, device, source
        self.build_seconds, self.from_disk = build_seconds, from_disk
        self._program = raw_program
        self._kernels = {}
        self._lock = threading.Lock()

    def kernel(self, name=None):
        name = name or self.key.name
        with self._lock:
            if name not in self._kernels:
                self._kernels[name] = cl.Kernel(self._program, name)
            return self._kernels[name]

    def local_size(self, name=None, wanted=64):
        """The largest power of two <= wanted that this kernel may use on this device."""
        limit = self.kernel(name).get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, self.device)
        size = 1
        while size * 2 <= min(wanted, limit, self.device.max_work_item_sizes[0]):
            size *= 2
        return size


class KernelManager:
    def __init__(self, cache=None):
        self._programs = {}
        self._lock = threading.Lock()
        self.builds = 0  # programs compiled from source in this process (tests prove warm caches with it)
        self.cache = cache if cache is not None else disk_cache.DiskCache.from_environment()

    def program(self, queue, key):
        device = queue.device
        mem_key = (queue.context.int_ptr, device.int_ptr, key)
        with self._lock:
            program = self._programs.get(mem_key)
            if program is None:
                program = self._programs[mem_key] = self._load_or_build(queue.context, device, key)
            return program

    def _load_or_build(self, context, device, key):
        source = render(key)
        # DECONVND_CL_BUILD_OPTIONS adds options, e.g. -cl-opt-disable for Oclgrind's uninitialised-value
        # checker, which cannot follow LLVM's `freeze` instruction that optimised builds contain
        options = " ".join(BUILD_OPTIONS + tuple(os.environ.get("DECONVND_CL_BUILD_OPTIONS", "").split()))
        binary = self.cache.load(device, key, source, options)
        if binary is not None:
            try:
                raw = cl._cl._Program(context, [device], [binary])
                raw.build(options.encode(), [device])
                return Program(key, device, raw, source, 0.0, from_disk=True)
            except cl.Error as e:
                self.cache.discard(device, key, f"the driver rejected the cached binary ({e})", source, options)
        raw, seconds, build_log = self._build(context, device, key, source, options)
        self.cache.store(device, key, source, options, raw.get_info(cl.program_info.BINARIES)[0],
                         build_log, seconds)
        return Program(key, device, raw, source, seconds, from_disk=False)

    def _build(self, context, device, key, source, options):
        if os.environ.get("DECONVND_CL_FORBID_BUILD") == "1":  # test switch: prove a warm cache builds nothing
            raise KernelBuildError(key.name, describe(device), options,
                                   "building is forbidden by DECONVND_CL_FORBID_BUILD=1", "<not saved>")
        start = time.perf_counter()
        raw = cl._cl._Program(context, source)
        try:
            raw.build(options.encode(), [device])
        except cl.Error:
            build_log = _build_log(raw, device)
            raise KernelBuildError(key.name, describe(device), options, build_log,
                                   _save_failed_source(key, source)) from None
        seconds = time.perf_counter() - start
        self.builds += 1
        build_log = _build_log(raw, device)
        if build_log.strip():
            log.debug("build log of %s:\n%s", key.name, build_log)
        return raw, seconds, build_log


def _build_log(raw, device):
    try:
        return raw.get_build_info(device, cl.program_build_info.LOG) or ""
    except cl.Error:
        return ""


def _save_failed_source(key, source):
    fd, path = tempfile.mkstemp(prefix=key.name + "_", suffix=".cl")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    return path


_manager = None


def manager():
    """The process-wide kernel manager (created on first use, never at import)."""
    global _manager
    if _manager is None:
        _manager = KernelManager()
    return _manager
