"""`deconvnd-cl`: devices, the kernel cache, benchmarks and tuning from the command line.

Exit codes: 0 success; 1 a check failed (damaged cache entries, a demo mismatch); 2 bad usage;
3 an error (no OpenCL device, bad layer config, build failure), printed as one line.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3

EXAMPLES = """examples:
  deconvnd-cl devices
  deconvnd-cl demo
  deconvnd-cl cache list
  deconvnd-cl cache warm nd=2,inmaps=512,outmaps=256,size=4,stride=2,pad=1
  deconvnd-cl cache warm --file model_layers.json
  deconvnd-cl cache verify && deconvnd-cl cache prune --older-than 30
  deconvnd-cl bench --suite
  deconvnd-cl tune nd=2,inmaps=128,outmaps=128,size=4,stride=2,pad=1,groups=32,batch=4,spatial=32x32
layers are name=value lists: nd, inmaps, outmaps, size, stride, pad, dilation, postpad, groups, dtype,
batch, spatial; per-axis values as 3x3."""


class CliError(Exception):
    pass


def _select_device(pattern):
    """--device: the first device whose 'platform, version / device' contains the pattern (the simulator only by
    name)."""
    if not pattern:
        return
    from .device import create_queue, find_device, set_default_queue
    device = find_device(pattern)
    if device is None:
        raise CliError(f"no OpenCL device matches {pattern!r} (see `deconvnd-cl devices`)")
    set_default_queue(create_queue(device))


def _cache():
    from .disk_cache import DiskCache
    cache = DiskCache.from_environment()
    if not cache.enabled:
        raise CliError("the kernel disk cache is disabled (DECONVND_CL_NO_CACHE=1, or no HOME and no "
                       "DECONVND_CL_CACHE_DIR)")
    return cache


def _layers(args):
    from . import layer_spec
    specs = [layer_spec.parse(text) for text in args.layers]
    if getattr(args, "file", None):
        specs += layer_spec.load_file(args.file)
    return specs


def _progress_bar(total, what):
    """A progress bar on stderr (tqdm)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=what, unit="", file=sys.stderr, dynamic_ncols=True, leave=True)


def _age(seconds):
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


# ---------------------------------------------------------------------------------------------- commands

def cmd_devices(args):
    import pyopencl as cl

    from . import settings
    from .device import NO_PLATFORM_HELP, all_devices, is_simulator, pick_default_device
    from .device_kind import kind_of, target_features, vector_width
    devices = all_devices()
    if not devices:
        raise CliError(NO_PLATFORM_HELP)
    try:
        default = pick_default_device()
    except Exception:
        default = None
    def device_type(d):
        return next(name for name in ("GPU", "ACCELERATOR", "CPU", "CUSTOM", "DEFAULT")
                    if d.type & getattr(cl.device_type, name)) if not is_simulator(d) else "simulator"

    rows = [{
        "platform": d.platform.name.strip(), "platform_version": d.platform.version.strip(),
        "device": d.name.strip(), "type": device_type(d),
        "driver": d.driver_version.strip(), "opencl_c": d.get_info(cl.device_info.OPENCL_C_VERSION).strip(),
        "compute_units": d.max_compute_units, "global_mem_mb": d.global_mem_size // 2**20,
        "max_alloc_mb": d.max_mem_alloc_size // 2**20, "max_work_group": d.max_work_group_size,
        "fp64": "cl_khr_fp64" in d.extensions, "fp16": "cl_khr_fp16" in d.extensions,
        "simulator": is_simulator(d), "default": default is not None and d.int_ptr == default.int_ptr,
        "kind": kind_of(d).name, "strategy": settings.forced_strategy() or kind_of(d).strategy,
        "vector_width": vector_width(d, np.dtype(np.float32)), "tiled_local_size": kind_of(d).tiled_local,
        "target_features": target_features(d),
    } for d in devices]
    if args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    for r in rows:
        mark = "*" if r["default"] else " "
        half = "fp16 native" if r["fp16"] else "fp16 storage-only"
        print(f"{mark} {r['platform']} / {r['device']} [{r['type']}]")
        print(f"    {r['platform_version']}; driver {r['driver']}, {r['opencl_c']}, {r['compute_units']} CUs, "
              f"{r['global_mem_mb']} MiB (max alloc {r['max_alloc_mb']} MiB), work-group <= {r['max_work_group']}, "
              f"fp64 {'yes' if r['fp64'] else 'no'}, {half}")
        features = f", compiled for target features {r['target_features']}" if r["target_features"] else ""
        print(f"    deconvnd_cl uses: {r['kind']} defaults, {r['strategy']} strategy first, float32 vectors of "
              f"{r['vector_width']}, register-tiled work-groups of {r['tiled_local_size']}{features}")
    print("* = default device (PYOPENCL_CTX overrides; the simulator is never the default)")
    return EXIT_OK


def cmd_cache_path(args):
    print(_cache().root)
    return EXIT_OK


def cmd_cache_list(args):
    from .disk_cache import entries
    rows = entries(_cache().root)
    if args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    now = time.time()
    for r in rows:
        flag = "  DAMAGED" if "error" in r else ""
        size = f"in {r['driver_cache']}'s cache" if r.get("driver_cache") else f"{r['size'] / 1024:8.1f} KiB"
        print(f"{r['name']:<72} {r['device'][:28]:<28} {size:>15} {_age(now - r['last_used']):>5}{flag}")
        for member in r.get("members", ()):  # programs built as one: the kernels it holds
            print(f"  + {member}")
    total = sum(r["size"] for r in rows)
    print(f"{len(rows)} entries, {total / 2**20:.2f} MiB in {_cache().root}")
    return EXIT_OK


def _find(root, key):
    from .disk_cache import entries
    matches = [r for r in entries(root)
               if key in (r["name"], r["id"]) or r["id"].startswith(key)
               or any(m.startswith(key) for m in r.get("members", ()))]
    if not matches:
        raise CliError(f"no cache entry named {key!r} (see `deconvnd-cl cache list`)")
    return matches


def cmd_cache_show(args):
    for r in _find(_cache().root, args.key):
        meta = json.loads(Path(r["path"]).read_text())
        if args.json:
            print(json.dumps(meta, indent=1))
            continue
        kernels = ", ".join(r.get("members") or [meta["name"]])
        print(f"entry:   {r['id']}\nkernel:  {kernels}\ndevice:  {meta['device']['platform']} / "
              f"{meta['device']['device']} (driver {meta['device']['driver_version']})")
        binary = (f"{meta['binary']} ({meta['binary_size']} bytes, sha256 {meta['binary_sha256'][:16]}...)"
                  if meta["binary"] else f"none: in the implementation's own cache ({meta.get('driver_cache')})")
        print(f"key:     {meta['key']}\noptions: {meta['options'] or '(none)'}\nbinary:  {binary}")
        print(f"built:   {time.ctime(meta['created'])} in {meta['build_seconds']} s")
        if meta.get("build_log", "").strip():
            print("build log:\n" + meta["build_log"])
        source = Path(r["path"]).with_suffix(".cl")
        if args.source and source.exists():
            print("--- source ---\n" + source.read_text())
    return EXIT_OK


def cmd_cache_verify(args):
    from .disk_cache import entries, verify_entry
    rows = entries(_cache().root)
    damaged = [(r, problem) for r in rows if (problem := verify_entry(r["path"]))]
    if args.json:
        print(json.dumps({"entries": len(rows), "damaged": [{"path": r["path"], "problem": p} for r, p in damaged]}))
    else:
        for r, problem in damaged:
            print(f"DAMAGED {r['id']}: {problem}")
        print(f"{len(rows)} entries checked, {len(damaged)} damaged")
    return EXIT_CHECK_FAILED if damaged else EXIT_OK


def cmd_cache_prune(args):
    from .disk_cache import entries, remove_entry, remove_orphans, verify_entry
    root = _cache().root
    rows = sorted(entries(root), key=lambda r: r["last_used"])
    now, removed = time.time(), []
    for r in rows:
        too_old = args.older_than is not None and now - r["last_used"] > args.older_than * 86400
        if too_old or verify_entry(r["path"]):
            removed.append(r)
    if args.max_size is not None:
        kept = [r for r in rows if r not in removed]
        total = sum(r["size"] for r in kept)
        for r in kept:  # least recently used first
            if total <= args.max_size * 2**20:
                break
            removed.append(r)
            total -= r["size"]
    for r in removed:
        remove_entry(r["path"])
    orphans = remove_orphans(root)
    print(f"removed {len(removed)} entries and {orphans} orphaned files; {len(rows) - len(removed)} kept")
    return EXIT_OK


def cmd_cache_clear(args):
    root = _cache().root
    if root.is_dir():
        shutil.rmtree(root)
    print(f"cleared {root}")
    return EXIT_OK


def warm_layer(spec, backward=True):
    """Build (or load) every kernel a layer needs by running it once on a tiny input."""
    import pyopencl.array as cla

    from . import functional
    from .device import default_queue
    queue = default_queue()
    dtype = spec.np_dtype
    shape = spec.input_shape()
    geo = spec.geometry()
    x = cla.to_device(queue, np.zeros(shape, dtype))
    W = cla.to_device(queue, np.zeros(spec.weight_shape(), dtype))
    b = cla.to_device(queue, np.zeros(spec.bias_shape(), dtype))
    if backward:  # as a training module builds them: one program for the three passes
        functional.prepare_layer(functional.forward_problem(x, W, b, geo.stride, geo.pad, geo.dilation, geo.postpad,
                                                            geo.groups))
    y = functional.deconvNd(x, W, b, geo.stride, geo.pad, geo.dilation, geo.postpad, geo.groups)
    if backward:
        problem = functional.backward_problem(y, W, x.shape, geo.stride, geo.pad, geo.dilation, geo.groups)
        functional.backward(problem, x, y, W, b)
    queue.finish()


def _warm_in_worker(device_pattern, spec, backward):
    """One layer in a worker process: (programs compiled, loaded from the cache)."""
    from .kernel_manager import manager
    _select_device(device_pattern)
    builds0, hits0 = manager().builds, manager().cache.hits
    warm_layer(spec, backward)
    return manager().builds - builds0, manager().cache.hits - hits0


def cmd_cache_warm(args):
    """Layers are warmed by `--jobs` worker processes at once: the OpenCL implementations compile a program in
    the thread that asks, so one process builds one kernel at a time (PoCL: about a second each). The workers
    share the disk cache, whose writers never tear each other's entries."""
    import concurrent.futures
    import multiprocessing

    from .kernel_manager import manager
    specs = _layers(args)
    if not specs:
        raise CliError("cache warm needs layer configs (name=value lists) or --file")
    if args.jobs < 1:
        raise CliError(f"--jobs must be at least 1 (given: {args.jobs})")
    _select_device(args.device)  # here too with workers: a pattern that matches nothing fails before they start
    start, builds, hits = time.perf_counter(), 0, 0
    with _progress_bar(len(specs), "layers") as bar:
        if args.jobs == 1 or len(specs) == 1:
            for spec in specs:
                bar.set_postfix_str(spec.label())
                built, loaded = _warm_in_worker(None, spec, not args.forward_only)
                builds, hits = builds + built, hits + loaded
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")  # no OpenCL state copied into the workers
            with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
                futures = [pool.submit(_warm_in_worker, args.device, spec, not args.forward_only) for spec in specs]
                for future in concurrent.futures.as_completed(futures):
                    built, loaded = future.result()
                    builds, hits = builds + built, hits + loaded
                    bar.update()
    print(f"warmed {len(specs)} layer configs: {builds} programs compiled, {hits} loaded from the cache, in "
          f"{time.perf_counter() - start:.1f} s -> {manager().cache.root}")
    return EXIT_OK


def cmd_demo(args):
    from .demo import main as demo_main
    _select_device(args.device)
    return EXIT_OK if demo_main() == 0 else EXIT_CHECK_FAILED


def cmd_bench(args):
    from .bench import run_cli
    _select_device(args.device)
    return run_cli(args, _layers(args))


def cmd_tune(args):
    from .tuning import tune_layer
    _select_device(args.device)
    specs = _layers(args)
    if not specs:
        raise CliError("tune needs layer configs (with batch= and spatial=) or --file")
    for spec in specs:
        shape = spec.input_shape()
        print(f"tuning {spec.label()} for input {shape}")
        with _progress_bar(None, "variants") as bar:
            def progress(done, total, label):
                bar.total = total
                bar.set_postfix_str(label)
                bar.update(done - bar.n)
            winners = tune_layer(spec, shape=shape, progress=progress, force=True)
            bar.update(bar.total - bar.n)
        for family, variant in winners.items():
            print(f"  {family:<17} variant {variant.key()}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- parser

def build_parser():
    parser = argparse.ArgumentParser(prog="deconvnd-cl", description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent, name, func, help_text, epilog=None):
        p = parent.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add(sub, "devices", cmd_devices, "list OpenCL platforms and devices, fp16/fp64 support, the default",
            "example: deconvnd-cl devices --json")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add(sub, "demo", cmd_demo, "run a Deconv2D forward/backward on the default device, checked vs NumPy")
    p.add_argument("--device", help="substring of 'platform, version / device' to run on")

    cache = add(sub, "cache", None, "inspect and manage the kernel disk cache").add_subparsers(
        dest="cache_command", required=True, metavar="CACHE_COMMAND")
    add(cache, "path", cmd_cache_path, "print the cache directory", "example: deconvnd-cl cache path")
    p = add(cache, "list", cmd_cache_list, "one row per entry: kernel, device, size, last use",
            "example: deconvnd-cl cache list --json")
    p.add_argument("--json", action="store_true")
    p = add(cache, "show", cmd_cache_show, "metadata (and --source) of an entry",
            "example: deconvnd-cl cache show dcl_cpu_fwd2d_f32_i32_t6x16x8_c4 --source")
    p.add_argument("key", help="kernel name or entry id (prefix)")
    p.add_argument("--source", action="store_true", help="print the OpenCL source")
    p.add_argument("--json", action="store_true")
    p = add(cache, "verify", cmd_cache_verify, "check every entry's checksum; exit 1 on damage",
            "example: deconvnd-cl cache verify --json")
    p.add_argument("--json", action="store_true")
    p = add(cache, "prune", cmd_cache_prune, "remove damaged, old or least-recently-used entries",
            "example: deconvnd-cl cache prune --older-than 30 --max-size 200")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries unused for DAYS days")
    p.add_argument("--max-size", type=float, metavar="MB", help="keep at most MB megabytes (LRU)")
    add(cache, "clear", cmd_cache_clear, "delete the whole cache directory", "example: deconvnd-cl cache clear")
    p = add(cache, "warm", cmd_cache_warm, "precompile the kernels of layer configs, with progress",
            "examples:\n  deconvnd-cl cache warm nd=2,inmaps=64,outmaps=32,size=4,stride=2,pad=1\n"
            "  deconvnd-cl cache warm --file layers.json   # [{\"nd\": 3, \"inmaps\": 64, ...}, ...]")
    p.add_argument("layers", nargs="*", help="layer configs: nd=2,inmaps=64,outmaps=32,size=4,...")
    p.add_argument("--file", help="JSON list of layer configs")
    p.add_argument("--device", help="substring of 'platform, version / device' to build for")
    p.add_argument("--forward-only", action="store_true", help="skip the backward kernels")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="layers warmed at once, each in a worker process (default: the CPU count)")

    p = add(sub, "bench", cmd_bench, "time forward/backward per layer, against PyTorch, ONNX Runtime and "
            "OpenVINO when installed",
            "examples:\n  deconvnd-cl bench --suite\n  deconvnd-cl bench nd=2,inmaps=64,outmaps=64,size=3,pad=1,"
            "batch=4,spatial=56x56")
    p.add_argument("layers", nargs="*", help="layer configs with batch= and spatial=")
    p.add_argument("--file", help="JSON list of layer configs")
    p.add_argument("--suite", action="store_true", help="the standard suite of layer families (bench.SUITE)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--torch-device", default="cpu", help="where PyTorch runs: cpu (default) or cuda")
    p.add_argument("--peers", help="comma-separated peers to run (default: torch,onnxruntime,openvino, each if "
                                   "installed; an empty value runs none)")
    p.add_argument("--tuned", action="store_true", help="tune every layer first (optimizeForShape)")
    p.add_argument("--markdown", help="also write the table as Markdown to this file")
    p.add_argument("--plot", help="also write a PNG of GFLOP/s per layer (needs matplotlib)")
    p.add_argument("--device", help="substring of 'platform, version / device' to run on")

    p = add(sub, "tune", cmd_tune, "time the kernel variants for a layer and shape; store the winner",
            "example: deconvnd-cl tune nd=3,inmaps=64,outmaps=32,size=2,stride=2,batch=2,spatial=16x16x16")
    p.add_argument("layers", nargs="*")
    p.add_argument("--file")
    p.add_argument("--device")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import ModuleError
    try:
        return args.func(args)
    except (CliError, ModuleError) as e:
        print(f"deconvnd-cl: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # an OpenCL runtime error, say: one line, not a traceback
        print(f"deconvnd-cl: error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return EXIT_ERROR
