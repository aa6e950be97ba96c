"""The kernel disk cache: warm processes build nothing, damage is survived, writers never block each other.

Most tests here are about binaries, so their processes store them (DECONVND_CL_DRIVER_CACHE=0) even on PoCL, whose
own program cache the library otherwise relies on (test_driver_cache_entries)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deconvnd_cl import disk_cache
from deconvnd_cl.disk_cache import DiskCache, entries, verify_entry
from deconvnd_cl.kernel_key import KernelKey
from deconvnd_cl.shared_program import SHARED
from deconvnd_cl.kernel_manager import KernelManager
from deconvnd_cl.render import template_hash

ROOT = Path(__file__).resolve().parent.parent

# One small layer, forward + backward, in a fresh process; prints what the kernel manager did.
RUN_LAYER = """
import json, warnings, numpy as np, pyopencl.array as cla, deconvnd_cl as dcl
from deconvnd_cl.disk_cache import driver_cache_of
from deconvnd_cl.kernel_manager import manager
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    layer = dcl.Deconv2D(3, 4, size=3, stride=2, pad=1)
    q = dcl.default_queue()
    x = cla.to_device(q, np.ones((1, 3, 4, 4), np.float32))
    y = layer(x)
    layer.backward(cla.to_device(q, np.ones(y.shape, np.float32)))
    ok = bool(np.isfinite(layer.grad.get()).all())
print(json.dumps({"builds": manager().builds, "hits": manager().cache.hits, "ok": ok,
                  "warnings": [str(w.message) for w in caught], "driver_cache": driver_cache_of(q.device)}))
"""


def env_for(cache_dir, **extra):
    env = dict(os.environ, DECONVND_CL_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT), DECONVND_CL_DRIVER_CACHE="0")
    env.pop("DECONVND_CL_NO_CACHE", None)
    env.update(extra)
    return env


def run_layer(cache_dir, **extra):
    result = subprocess.run([sys.executable, "-c", RUN_LAYER], env=env_for(cache_dir, **extra),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"process failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A cache directory filled by one cold process."""
    cache_dir = tmp_path_factory.mktemp("seeded")
    first = run_layer(cache_dir)
    assert first["ok"] and first["builds"] > 0 and first["hits"] == 0
    return cache_dir


def copy_of(seeded, tmp_path):
    import shutil
    target = tmp_path / "cache"
    shutil.copytree(seeded, target)
    return target


def test_warm_process_builds_nothing(seeded, tmp_path):
    cache_dir = copy_of(seeded, tmp_path)
    # with building forbidden, only a fully warm cache can succeed
    second = run_layer(cache_dir, DECONVND_CL_FORBID_BUILD="1")
    assert second["ok"] and second["builds"] == 0 and second["hits"] > 0 and not second["warnings"]


# RUN_LAYER, counting the templates Mako compiles (to Python) on the way.
COUNT_TEMPLATE_COMPILES = """
import mako.template, sys
compiled = []
real_compile = mako.template._compile
mako.template._compile = lambda template, *a, **k: compiled.append(template.uri) or real_compile(template, *a, **k)
exec(sys.argv[1])
print(len(compiled))
"""


def template_compiles(cache_dir, **extra):
    result = subprocess.run([sys.executable, "-c", COUNT_TEMPLATE_COMPILES, RUN_LAYER], env=env_for(cache_dir, **extra),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"process failed ({result.returncode}):\n{result.stderr[-3000:]}"
    *_, layer, count = result.stdout.strip().splitlines()
    return json.loads(layer), int(count)


def test_warm_process_compiles_no_template(seeded, tmp_path):
    """The compiled templates are kept beside the kernels, so a warm process renders its kernels' sources (the
    cache's keys) without compiling a template."""
    cache_dir = copy_of(seeded, tmp_path)
    assert list((cache_dir / disk_cache.TEMPLATES / template_hash()).glob("*.mako.py"))
    result, compiles = template_compiles(cache_dir, DECONVND_CL_FORBID_BUILD="1")
    assert result["ok"] and result["builds"] == 0 and not result["warnings"]
    assert compiles == 0


def test_damaged_compiled_template_compiles_in_memory(seeded, tmp_path):
    cache_dir = copy_of(seeded, tmp_path)
    for module in (cache_dir / disk_cache.TEMPLATES / template_hash()).glob("*.mako.py"):
        module.write_text("def (\n")  # not Python
    result, compiles = template_compiles(cache_dir, DECONVND_CL_FORBID_BUILD="1")
    assert result["ok"] and result["builds"] == 0 and not result["warnings"]
    assert compiles > 0  # in memory: the kernels' sources, and so the cache's keys, are the same


def test_compiled_templates_of_other_template_text_are_pruned(tmp_path):
    current = tmp_path / disk_cache.TEMPLATES / template_hash()
    other = tmp_path / disk_cache.TEMPLATES / "0123456789abcdef"
    for directory in (current, other):
        directory.mkdir(parents=True)
        (directory / "common.mako.py").write_text("")
        os.utime(directory, (time.time() - 7200,) * 2)
    assert disk_cache.remove_orphans(tmp_path) == 1
    assert current.is_dir() and not other.exists()


def test_driver_cache_entries(tmp_path):
    """On PoCL, entries record programs whose code PoCL's own cache keeps (no binary fetched, which would compile
    every kernel once more); a warm process builds nothing of its own; with PoCL's cache off they are misses
    and come back with binaries."""
    cache_dir, pocl_dir = tmp_path / "cache", tmp_path / "pocl"
    driver = dict(DECONVND_CL_DRIVER_CACHE="1", POCL_CACHE_DIR=str(pocl_dir))
    first = run_layer(cache_dir, **driver)
    if first["driver_cache"] is None:
        pytest.skip("the test device's implementation keeps no program cache the library relies on")
    rows = entries(cache_dir)
    assert first["ok"] and first["builds"] == len(rows) > 0 and not first["warnings"]
    assert all(r["binary"] is None and r["driver_cache"] == "pocl" and verify_entry(r["path"]) is None for r in rows)
    assert not list(cache_dir.glob("*/*.bin")) and any(pocl_dir.rglob("*.so"))
    second = run_layer(cache_dir, DECONVND_CL_FORBID_BUILD="1", **driver)
    assert second["ok"] and second["builds"] == 0 and second["hits"] == len(rows) and not second["warnings"]
    env = env_for(cache_dir, **driver)
    listing = subprocess.run([sys.executable, "-m", "deconvnd_cl", "cache", "list"], env=env, capture_output=True,
                             text=True)
    shown = subprocess.run([sys.executable, "-m", "deconvnd_cl", "cache", "show", rows[0]["id"]], env=env,
                           capture_output=True, text=True)
    assert listing.returncode == shown.returncode == 0 and "in pocl's cache" in listing.stdout
    assert "in the implementation's own cache (pocl)" in shown.stdout
    third = run_layer(cache_dir, POCL_KERNEL_CACHE="0", **driver)
    assert third["ok"] and third["builds"] == len(rows) and third["driver_cache"] is None and not third["warnings"]
    assert all(r["binary"] and verify_entry(r["path"]) is None for r in entries(cache_dir))


def test_device_files_are_not_entries(tmp_path):
    """Beside a device's entries lie its identity, the vector-width probe's answer and optimizeForShape's winners:
    the CLI lists, verifies and prunes entries only, so none of them reads as a damaged entry or is removed."""
    assert run_layer(tmp_path)["ok"]
    # the device's directory, not the compiled templates' beside it (which comes first varies with their hash)
    device_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name != disk_cache.TEMPLATES)
    (device_dir / "tuning.json").write_text("{}")
    kept = {p.name for p in device_dir.iterdir()} & {"device.json", "facts.json", "tuning.json"}
    assert {"device.json", "tuning.json"} <= kept
    assert entries(tmp_path) and all("error" not in e and e["name"].startswith("dcl_") for e in entries(tmp_path))
    env = env_for(tmp_path)
    for command in (["list"], ["verify"], ["prune"]):
        done = subprocess.run([sys.executable, "-m", "deconvnd_cl", "cache", *command], env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0 and "DAMAGED" not in done.stdout, (command, done.stdout, done.stderr)
    assert kept <= {p.name for p in device_dir.iterdir()}


def test_driver_cache_switch_is_checked(tmp_path):
    result = subprocess.run([sys.executable, "-c", RUN_LAYER], env=env_for(tmp_path, DECONVND_CL_DRIVER_CACHE="yes"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "DECONVND_CL_DRIVER_CACHE='yes' is not a switch" in result.stderr


def binaries(cache_dir):
    return sorted(Path(e["binary"]) for e in entries(cache_dir))


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "flipped", "empty", "garbage-metadata",
                                    "missing-binary"])
def test_damaged_entry_is_rebuilt(seeded, tmp_path, damage):
    cache_dir = copy_of(seeded, tmp_path)
    rows = [e for e in entries(cache_dir) if "shared" not in e["name"]]  # the layer's passes, built as one
    assert len(rows) == 1
    binary, meta = Path(rows[0]["binary"]), Path(rows[0]["path"])
    data = binary.read_bytes()
    if damage == "truncated":
        binary.write_bytes(data[: len(data) // 3])
    elif damage == "zeroed":
        binary.write_bytes(bytes(len(data)))
    elif damage == "flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        binary.write_bytes(bytes(flipped))
    elif damage == "empty":
        binary.write_bytes(b"")
    elif damage == "garbage-metadata":
        meta.write_text("{not json")
    else:
        binary.unlink()
    # loaded in a subprocess, so a driver crash on a bad binary fails this test, not the test runner
    result = run_layer(cache_dir)
    assert result["ok"] and result["builds"] == 1
    assert len(result["warnings"]) == 1 and "discarding damaged kernel cache entry" in result["warnings"][0]
    assert all(verify_entry(e["path"]) is None for e in entries(cache_dir))
    again = run_layer(cache_dir, DECONVND_CL_FORBID_BUILD="1")
    assert again["ok"] and again["builds"] == 0


def test_concurrent_writers(tmp_path):
    cache_dir = tmp_path / "shared"
    layers = ["nd=2,inmaps=3,outmaps=5,size=3,stride=2,pad=1", "nd=1,inmaps=2,outmaps=2,size=4,stride=3",
              "nd=3,inmaps=2,outmaps=3,size=2,stride=2"]
    procs = [subprocess.Popen([sys.executable, "-m", "deconvnd_cl", "cache", "warm", *layers],
                              env=env_for(cache_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    rows = entries(cache_dir)
    assert rows and all(verify_entry(e["path"]) is None for e in rows)
    verify = subprocess.run([sys.executable, "-m", "deconvnd_cl", "cache", "verify"], env=env_for(cache_dir),
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout
    assert run_layer(cache_dir)["ok"]


KILLED_WRITER = """
import os, sys, time
from deconvnd_cl import disk_cache
real_write = disk_cache.atomic_write
def slow_write(path, data):
    if str(path).endswith(".bin"):
        import tempfile
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        os.write(fd, data[: len(data) // 2])
        print("WRITING", flush=True)
        time.sleep(600)   # killed here, half-way through a binary
    real_write(path, data)
disk_cache.atomic_write = slow_write
exec(open(sys.argv[1]).read())
"""


def test_writer_killed_mid_write(tmp_path):
    cache_dir = tmp_path / "killed"
    script = tmp_path / "run_layer.py"
    script.write_text(RUN_LAYER)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(script)], env=env_for(cache_dir),
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "WRITING"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    leftovers = list(cache_dir.glob("*/.tmp-*"))
    assert leftovers, "the writer should have died with a temporary file half-written"
    start = time.perf_counter()
    result = run_layer(cache_dir)
    assert result["ok"] and not result["warnings"]
    assert time.perf_counter() - start < 120  # nothing waits on the dead writer (no lock files)
    assert all(verify_entry(e["path"]) is None for e in entries(cache_dir))
    assert disk_cache.remove_orphans(cache_dir, min_age_seconds=0) >= len(leftovers)
    assert not list(cache_dir.glob("*/.tmp-*"))


@pytest.mark.parametrize("changed", ["driver_version", "library_version", "template_hash", "device"])
def test_identity_change_misses(queue, tmp_path, monkeypatch, changed):
    cache = DiskCache(tmp_path)
    key = KernelKey("shared", "common", 2, "f32", 32)
    manager = KernelManager(cache)
    source, device = manager.program(queue, key, SHARED).source, queue.device
    assert cache.load(device, key, source, "") is not None
    real_identity = disk_cache.device_identity

    def changed_identity(dev):
        identity = real_identity(dev)
        identity[changed] = identity[changed] + "-changed" if isinstance(identity[changed], str) else "x"
        return identity
    monkeypatch.setattr(disk_cache, "device_identity", changed_identity)
    assert cache.load(device, key, source, "") is None
    assert cache.load(device, key, source + "// edited template\n", "") is None


def test_unwritable_cache_dir_degrades_to_memory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_layer(blocker / "cache")
    assert result["ok"] and result["builds"] > 0
    assert len(result["warnings"]) == 1 and "cached in memory only" in result["warnings"][0]


def test_no_home_uses_the_platform_cache_directory(tmp_path):
    """Without HOME the cache directory comes from platformdirs (XDG_CACHE_HOME here, so the test does not
    write into the user's real cache), and kernels are cached there."""
    env = {k: v for k, v in env_for(tmp_path).items() if k not in ("HOME", "DECONVND_CL_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    result = subprocess.run([sys.executable, "-c", RUN_LAYER], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["ok"] and not out["warnings"]
    assert entries(tmp_path / "xdg" / "deconvnd_cl")


def test_no_home_directory_at_all_works_uncached(monkeypatch):
    """Where no home directory can be found at all, platformdirs' answer is a relative path: the cache is then
    off, with one warning, and never a directory relative to the working directory."""
    monkeypatch.delenv("DECONVND_CL_CACHE_DIR", raising=False)
    monkeypatch.setattr(disk_cache.platformdirs, "user_cache_dir", lambda *a, **k: "~/.cache/deconvnd_cl")
    with pytest.warns(RuntimeWarning, match="cached in memory only"):
        cache = DiskCache.from_environment()
    assert not cache.enabled


def test_no_cache_switch(tmp_path):
    result = run_layer(tmp_path / "off", DECONVND_CL_NO_CACHE="1")
    assert result["ok"] and not (tmp_path / "off").exists()


def test_build_failure_carries_log_options_key_and_source(queue, tmp_path, monkeypatch):
    from deconvnd_cl.errors import KernelBuildError, ModuleError
    class Broken:
        def source(self, key):
            return "__kernel void broken(__global float* a) { a[0] = ; }"

        def signatures(self, key):
            return {}
    manager = KernelManager(DiskCache(tmp_path))
    with pytest.raises(KernelBuildError) as caught:
        manager.program(queue, KernelKey("shared", "common", 1, "f32", 32), Broken())
    error = caught.value
    assert isinstance(error, ModuleError) and error.key_name == "dcl_shared1d_f32_i32"
    assert error.log.strip() and "error" in error.log.lower()
    assert Path(error.source_path).read_text().startswith("__kernel void broken")
    assert queue.device.name.strip() in str(error) and "options" in str(error)
    assert entries(tmp_path) == []  # nothing cached for a failed build
