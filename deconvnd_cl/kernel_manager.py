"""The kernel manager: KernelKey -> render -> build (or load from disk) -> cl.Kernel, cached per context.

Memory level: one Program per (context, device, key), holding its cl.Kernel objects (pyopencl warns that
re-retrieving kernels is slow). Disk level: `disk_cache.DiskCache`, per device, so a second process launches
without compiling. pyopencl's own program cache is bypassed (`cache_dir=False`), so only one disk cache runs.

Whoever asks for a program also names its `KernelSource`: an object with `source(key)`, the OpenCL C text, and
`signatures(key)`, the declared signature of each kernel in it (signatures.py), by kernel-name suffix ("" for
the kernel named after the key). The source is rendered only when a program is not yet in memory.

`prepare` builds several programs as one ahead of their use (a training layer's passes: program_sets.py); each
is then held under its own key, sharing the one cl.Program.
"""

import logging
import os
import tempfile
import threading
import time
import warnings

import numpy as np
import pyopencl as cl

from . import disk_cache, settings
from .device import describe
from .errors import KernelBuildError, ModuleError
from .program_sets import CombinedSource, ProgramSet, combinable

log = logging.getLogger(__name__)

# What clang logs where a function's `target` attribute names a feature it does not know, and ignores the attribute
TARGET_IGNORED = "'target' attribute ignored"

# No fast-math options: -cl-fast-relaxed-math turns NaN*0 into 0 on PoCL, breaking IEEE propagation.
BUILD_OPTIONS = ()


def build_quietly(program, *args, **kwargs):
    """program.build(*args, **kwargs) without pyopencl's CompilerWarning for a successful build's non-empty log:
    drivers log as a matter of course (Intel's runtime on every build, from source or from a binary). The
    library keeps a build's log itself (the disk cache's entry, logging.debug); a failed build raises with it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cl.CompilerWarning)
        return program.build(*args, **kwargs)


class Program:
    """A built program for one device and key, with its kernels retrieved once and their scalar argument types
    declared from their signatures."""

    def __init__(self, key, device, program, source, signatures, build_seconds, from_disk):
        self.key, self.device, self.source = key, device, source
        self.signatures = signatures
        self.build_seconds, self.from_disk = build_seconds, from_disk
        self.cl_program = program
        self._kernels = {}
        self._local_sizes = {}
        self._lock = threading.Lock()
        self.launch_lock = threading.Lock()  # launch.launch: setting a kernel's arguments and enqueueing it

    def kernel(self, suffix=""):
        """(cl.Kernel, Signature) of the kernel named key.name + suffix."""
        with self._lock:
            found = self._kernels.get(suffix)
            if found is None:
                signature = self.signatures[suffix]
                kernel = cl.Kernel(self.cl_program, self.key.name + suffix)
                acc = np.float64 if self.key.dtype == "f64" else np.float32
                # declared once: pyopencl then packs scalars with generated code (2 us a launch instead of
                # 50-150 us of inspecting 10-20 untyped arguments on PoCL)
                kernel.set_scalar_arg_dtypes(signature.scalar_dtypes(self.key.index_bits, acc))
                found = self._kernels[suffix] = (kernel, signature)
            return found

    def max_work_group_size(self, suffix=""):
        """CL_KERNEL_WORK_GROUP_SIZE of this kernel on this device."""
        kernel, _ = self.kernel(suffix)
        return kernel.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, self.device)

    def local_size(self, suffix="", wanted=64):
        """The largest power of two <= wanted that this kernel may use along dimension 0 on this device (asked of
        the device once per kernel and wish: every call launches with it)."""
        size = self._local_sizes.get((suffix, wanted))
        if size is None:  # threads racing here compute the same size: no lock needed
            size = 1
            while size * 2 <= min(wanted, self.max_work_group_size(suffix), self.device.max_work_item_sizes[0]):
                size *= 2
            self._local_sizes[suffix, wanted] = size
        return size


class KernelManager:
    def __init__(self, cache=None):
        self._programs = {}
        self._lock = threading.Lock()
        self.builds = 0  # programs compiled from source in this process (tests prove warm caches with it)
        self.cache = cache if cache is not None else disk_cache.DiskCache.from_environment()
        self.replays = {}  # key -> the recorded enqueues of calls of this manager's kernels (replay.py)
        self.replayed_calls = {}  # a call's key -> the key of its replay (call_forms.py)

    def program(self, queue, key, kernel_source):
        device = queue.device
        mem_key = (queue.context.int_ptr, device.int_ptr, key)
        with self._lock:
            program = self._programs.get(mem_key)
            if program is None:
                program = self._programs[mem_key] = self._load_or_build(queue.context, device, key, kernel_source)
            return program

    def prepare(self, queue, requests):
        """Build the programs of `requests` ((key, kernel source) pairs) that are not in memory yet, those whose
        sources combine as one program (program_sets.py): a layer's passes ahead of their first calls, for one
        build's fixed cost instead of one each. The rest, and all of them if the combined build fails, build
        alone at their first use, as they would have; so does a program the disk cache already holds alone."""
        device = queue.device
        with self._lock:
            wanted = {}
            for key, kernel_source in requests:
                if (queue.context.int_ptr, device.int_ptr, key) not in self._programs:
                    wanted.setdefault(key, kernel_source)
            if len(wanted) < 2:
                return
            options = self._options()
            sources = {key: kernel_source.source(key) for key, kernel_source in wanted.items()}
            # a program the disk cache holds alone loads alone (an earlier process used it one pass at a time)
            sources = {key: source for key, source in sources.items()
                       if not self.cache.holds(device, key, source, options)}
            for keys in combinable(sources):
                members = ProgramSet(tuple(keys))
                try:
                    built = self._load_or_build(queue.context, device, members, CombinedSource(sources))
                except KernelBuildError as e:
                    log.debug("%s: built one by one (%s)", members.name, e)
                    continue
                for key in keys:
                    self._programs[queue.context.int_ptr, device.int_ptr, key] = Program(
                        key, device, built.cl_program, sources[key], wanted[key].signatures(key),
                        built.build_seconds, built.from_disk)

    def _load_or_build(self, context, device, key, kernel_source):
        source = kernel_source.source(key)
        signatures = kernel_source.signatures(key)
        options = self._options()
        cached = self.cache.load(device, key, source, options)
        if cached is disk_cache.DRIVER_CACHED:  # the implementation answers this build from its own cache
            program, seconds, _ = self._build(context, device, key, source, options, counted=False)
            return Program(key, device, program, source, signatures, seconds, from_disk=True)
        if cached is not None:
            try:
                program = build_quietly(cl.Program(context, [device], [cached]), options, [device])
                return Program(key, device, program, source, signatures, 0.0, from_disk=True)
            except cl.Error as e:
                self.cache.discard(device, key, f"the driver rejected the cached binary ({e})", source, options)
        program, seconds, build_log = self._build(context, device, key, source, options)
        driver_cache = disk_cache.driver_cache_of(device)
        binary = None if driver_cache else program.get_info(cl.program_info.BINARIES)[0]
        self.cache.store(device, key, source, options, binary, build_log, seconds, driver_cache)
        return Program(key, device, program, source, signatures, seconds, from_disk=False)

    @staticmethod
    def _options():
        return " ".join(BUILD_OPTIONS + settings.extra_build_options())

    def _build(self, context, device, key, source, options, counted=True):
        """Compile from source; `counted`: a build of the library's own (not one the implementation's cache
        answers), refused under DECONVND_CL_FORBID_BUILD and counted in `builds`."""
        if counted and settings.build_forbidden():
            raise KernelBuildError(key.name, describe(device), options,
                                   "building is forbidden by DECONVND_CL_FORBID_BUILD=1", "<not saved>")
        start = time.perf_counter()
        try:
            program = build_quietly(cl.Program(context, source), options, [device], cache_dir=False)
        except cl.Error as e:  # pyopencl's message carries the build log
            saved = ("<not saved: its programs build one by one>" if isinstance(key, ProgramSet)
                     else _save_failed_source(key, source))
            raise KernelBuildError(key.name, describe(device), options, str(e), saved) from None
        seconds = time.perf_counter() - start
        self.builds += counted
        build_log = _build_log(program, device)
        if build_log.strip():
            log.debug("build log of %s:\n%s", key.name, build_log)
        ignored = next((line for line in build_log.splitlines() if TARGET_IGNORED in line), None)
        if ignored:  # the kernels would run, compiled for the device's own target, at tiles sized for the features
            reason = ignored[ignored.find("unsupported"):] if "unsupported" in ignored else ignored.strip()
            raise ModuleError(f"DECONVND_CL_TARGET_FEATURES={','.join(settings.target_features())!r}: the compiler "
                              f"ignored them ({reason}); expected LLVM's names of features, e.g. "
                              f"avx512f,avx512vl,avx512bw,avx512dq")
        return program, seconds, build_log


def _build_log(program, device):
    try:
        return program.get_build_info(device, cl.program_build_info.LOG) or ""
    except cl.Error:
        return ""


def _save_failed_source(key, source):
    fd, path = tempfile.mkstemp(prefix=key.name + "_", suffix=".cl")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    return path


_manager = None
_manager_lock = threading.Lock()


def manager():
    """The process-wide kernel manager (created on first use, never at import; asked at every call, so the lock is
    taken only while there is none)."""
    global _manager
    existing = _manager
    if existing is not None:
        return existing
    with _manager_lock:
        if _manager is None:
            _manager = KernelManager()
        return _manager
