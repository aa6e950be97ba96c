"""The kernel cache on disk: program binaries per device, checked before they reach the driver.

Layout: <root>/<device slug>-<identity hash>/<key name>-<source hash>.json  (metadata, what the CLI lists)
                                             <key name>-<source hash>.<binary sha256[:16]>.bin
                                             device.json (the identity), facts.json (the vector-width probe's
                                             answer), tuning.json (optimizeForShape's winners)
        <root>/templates/<templates' hash>/<template>.mako.py  (Mako's compiled templates: render.py)
The identity hash covers platform, device, device version, driver version, library version and the templates'
hash, so an upgrade of any of them misses. The source hash covers the rendered source and build options.
A binary's file name carries its checksum, so concurrent writers of the same entry never tear each other's
files: each writes its own binary and atomically replaces the metadata that points at it. No lock files exist.
Every read is verified (size, sha256, fields); a bad entry is discarded with one warning and rebuilt, because
PoCL segfaults on a truncated binary. An unwritable directory degrades to memory-only caching with a warning.

Where the OpenCL implementation keeps compiled programs on disk itself (`driver_cache_of`: PoCL, unless
POCL_KERNEL_CACHE=0), an entry records the program without a binary and a later process builds it from source,
which the implementation answers from its own cache. Fetching a binary from PoCL (CL_PROGRAM_BINARIES) makes it
compile a generic work-group function for every kernel, on top of the specialised ones it compiles and keeps at
the first launch: about half of a new layer's cold start (docs/cache-and-cli.md).
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import platformdirs

from . import settings
from .render import template_hash

FORMAT = 1
DRIVER_CACHED = "driver cached"  # load(): the entry's program is in the implementation's own cache
FACTS = "facts.json"  # per device directory: what its compiler was found to do (device_kind's probe)
TUNING = "tuning.json"  # per device directory: optimizeForShape's winners (tuning.py)
NOT_ENTRIES = ("device.json", FACTS, TUNING)  # the files of a device directory that are no kernel's entry


def driver_cache_of(device):
    """The name of the implementation's own on-disk program cache the library relies on for `device`, or None
    (then entries hold binaries). PoCL caches every program it builds, keyed by source, options and device,
    and each kernel's compiled work-group functions (POCL_CACHE_DIR, POCL_KERNEL_CACHE)."""
    if not settings.driver_cache() or not settings.pocl_kernel_cache():
        return None
    return "pocl" if "portable computing language" in device.platform.name.lower() else None


def library_version():
    from . import __version__
    return __version__


def default_root():
    """settings.cache_dir(), else the platform's user cache directory (platformdirs); None when that is not an
    absolute path (no home directory to be found)."""
    if settings.cache_dir():
        return Path(settings.cache_dir())
    root = Path(platformdirs.user_cache_dir("deconvnd_cl", appauthor=False))
    return root if root.is_absolute() else None


TEMPLATES = "templates"  # under the root: Mako's compiled templates, one directory per templates' hash


def template_module_dir():
    """Where Mako keeps the compiled templates of this library's templates (render.py), or None without a disk
    cache. Named by the templates' hash, so an edited template, another checkout or version never loads a module
    compiled from other text."""
    root = None if settings.cache_disabled() else default_root()
    return None if root is None else root / TEMPLATES / template_hash()


def device_identity(device):
    platform = device.platform
    return {
        "platform": platform.name.strip(), "platform_version": platform.version.strip(),
        "device": device.name.strip(), "device_version": device.version.strip(),
        "driver_version": device.driver_version.strip(), "library_version": library_version(),
        "template_hash": template_hash(), "format": FORMAT,
    }


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def device_dirname(identity):
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{identity['platform']}-{identity['device']}").strip("-")[:60]
    return f"{slug}-{_digest(json.dumps(identity, sort_keys=True))[:16]}"


class DiskCache:
    def __init__(self, root):
        self.root = Path(root) if root is not None else None
        self._warned = False
        self.hits = self.misses = 0

    @classmethod
    def from_environment(cls):
        if settings.cache_disabled():
            return cls(None)
        root = default_root()
        if root is None:
            warnings.warn("deconvnd_cl: no home directory and no DECONVND_CL_CACHE_DIR; kernels are cached in "
                          "memory only",
                          RuntimeWarning, stacklevel=2)
        return cls(root)

    @property
    def enabled(self):
        return self.root is not None

    def _disable(self, why):
        if not self._warned:
            warnings.warn(f"deconvnd_cl: kernel disk cache at {self.root} disabled ({why}); "
                          "kernels are cached in memory only", RuntimeWarning, stacklevel=3)
            self._warned = True
        self.root = None

    def device_dir(self, device):
        return self.root / device_dirname(device_identity(device))

    def _meta_path(self, device, key, source, options):
        return self.device_dir(device) / f"{key.name}-{_digest(source, options)[:16]}.json"

    # -- reading
    def load(self, device, key, source, options):
        """The verified binary for this entry, DRIVER_CACHED for an entry whose program the implementation's own
        cache holds, or None (a miss, or a damaged entry discarded with a warning)."""
        if not self.enabled:
            return None
        meta_path = self._meta_path(device, key, source, options)
        try:
            meta_text = meta_path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            self.misses += 1
            return None
        except OSError as e:
            self._disable(f"cannot read {meta_path}: {e}")
            return None
        try:
            meta = json.loads(meta_text)
            problems = _problems(meta, meta_path) + (
                [] if meta.get("source_sha256") == _digest(source, options) else ["source hash"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems = [f"unreadable ({type(e).__name__}: {e})"]
        if problems:
            self._discard_path(meta_path, f"{', '.join(problems)} check failed")
            self.misses += 1
            return None
        if meta.get("driver_cache") and meta["driver_cache"] != driver_cache_of(device):
            self.misses += 1  # stored beside a cache that is off now (POCL_KERNEL_CACHE=0): rebuilt with a binary
            return None
        try:
            os.utime(meta_path)  # last used = mtime of the metadata (cheaper than rewriting it)
        except OSError:
            pass
        self.hits += 1
        return DRIVER_CACHED if meta.get("driver_cache") else meta["_binary"]

    def holds(self, device, key, source, options):
        """Whether an entry for this program is on disk (unverified: load() checks it when it is used)."""
        return self.enabled and self._meta_path(device, key, source, options).exists()

    def discard(self, device, key, why, source=None, options=None):
        if self.enabled and source is not None:
            self._discard_path(self._meta_path(device, key, source, options), why)

    def _discard_path(self, meta_path, why):
        warnings.warn(f"deconvnd_cl: discarding damaged kernel cache entry {meta_path.name} ({why}); rebuilding",
                      RuntimeWarning, stacklevel=4)
        try:
            meta_path.unlink()
        except OSError:
            pass

    # -- what a device's compiler was found to do (the vector-width probe), beside its entries
    def load_fact(self, device, name):
        """The value record_fact stored under `name` for a device of this identity, or None."""
        if not self.enabled:
            return None
        try:
            return json.loads((self.device_dir(device) / FACTS).read_text()).get(name)
        except (OSError, ValueError, AttributeError):  # none yet, or unreadable: the caller finds out again
            return None

    def record_fact(self, device, name, value):
        if not self.enabled:
            return
        try:
            directory = self.device_dir(device)
            directory.mkdir(parents=True, exist_ok=True)
            facts = {}
            try:
                facts = json.loads((directory / FACTS).read_text())
            except (OSError, ValueError):
                pass
            facts = facts if isinstance(facts, dict) else {}
            facts[name] = value
            atomic_write(directory / FACTS, json.dumps(facts, indent=1).encode())
        except OSError as e:
            self._disable(f"cannot write: {e}")

    # -- writing
    def store(self, device, key, source, options, binary, build_log, build_seconds, driver_cache=None):
        """Record a built program: its binary, or with `driver_cache` (driver_cache_of's name) none."""
        if not self.enabled or not (binary or driver_cache):
            return
        try:
            directory = self.device_dir(device)
            directory.mkdir(parents=True, exist_ok=True)
            identity_file = directory / "device.json"
            if not identity_file.exists():
                atomic_write(identity_file, json.dumps(device_identity(device), indent=1).encode())
            meta_path = self._meta_path(device, key, source, options)
            binary_name = binary_sha = None
            if driver_cache is None:
                binary_sha = hashlib.sha256(binary).hexdigest()
                binary_name = f"{meta_path.stem}.{binary_sha[:16]}.bin"
                atomic_write(directory / binary_name, binary)
            meta = {
                "format": FORMAT, "key": key.to_json(), "name": key.name, "binary": binary_name,
                "binary_size": len(binary) if binary_name else 0, "binary_sha256": binary_sha,
                "driver_cache": driver_cache, "source_sha256": _digest(source, options),
                "options": options, "build_log": build_log, "build_seconds": round(build_seconds, 4),
                "created": time.time(), "device": device_identity(device),
            }
            atomic_write(meta_path, json.dumps(meta, indent=1).encode())
            atomic_write(directory / (meta_path.stem + ".cl"), source.encode())  # for `cache show`
        except OSError as e:
            self._disable(f"cannot write: {e}")


def atomic_write(path, data):
    """Write to a temporary file in the same directory, then os.replace: readers see all or nothing."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- inspection and maintenance (the `deconvnd-cl cache` commands)

def entries(root):
    """One dict per metadata file under root: its fields plus path, device directory, size and last use, and
    `members`: the kernel names of an entry that holds several programs built as one (program_sets.py)."""
    root = Path(root)
    found = []
    for meta_path in sorted(root.glob("*/*.json")):
        if meta_path.name in NOT_ENTRIES:
            continue
        entry = {"path": str(meta_path), "device_dir": meta_path.parent.name, "id": meta_path.stem}
        try:
            meta = json.loads(meta_path.read_text())
            binary = meta_path.parent / meta["binary"] if meta["binary"] else None
            entry.update(name=meta["name"], device=meta["device"]["device"],
                         binary=str(binary) if binary else None, driver_cache=meta.get("driver_cache"),
                         size=binary.stat().st_size if binary and binary.exists() else 0, created=meta.get("created"),
                         build_seconds=meta.get("build_seconds"), key=meta.get("key"),
                         members=[m["name"] for m in meta["key"].get("set", ())] if isinstance(meta.get("key"), dict)
                         else [])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            entry.update(name="?", device="?", size=0, error=f"{type(e).__name__}: {e}")
        entry["last_used"] = meta_path.stat().st_mtime
        found.append(entry)
    return found


def _problems(meta, meta_path):
    """What is wrong with an entry's metadata and binary (format, size, checksum), as a list; reads the binary
    into meta["_binary"]. An entry of the implementation's own cache has no binary to check."""
    problems = [] if meta.get("format") == FORMAT else ["format"]
    if meta.get("driver_cache"):
        return problems + ([] if meta.get("binary") is None else ["binary"])
    binary = meta["_binary"] = (meta_path.parent / meta["binary"]).read_bytes()
    if not meta.get("binary_size") == len(binary) > 0:
        problems.append(f"size ({len(binary)} bytes, recorded {meta.get('binary_size')})")
    if meta.get("binary_sha256") != hashlib.sha256(binary).hexdigest():
        problems.append("checksum")
    return problems


def verify_entry(meta_path):
    """None if the entry's binary matches its recorded size and checksum (an entry of the implementation's
    own cache: if its metadata is whole), else what is wrong."""
    meta_path = Path(meta_path)
    try:
        problems = _problems(json.loads(meta_path.read_text()), meta_path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    return f"{', '.join(problems)} check failed" if problems else None


def remove_entry(meta_path):
    """Delete an entry's metadata, binary and source."""
    meta_path = Path(meta_path)
    stem = meta_path.stem
    for path in meta_path.parent.glob(f"{stem}.*"):
        try:
            path.unlink()
        except OSError:
            pass


def remove_orphans(root, min_age_seconds=3600):
    """Binaries no metadata points to, temporary files older than an hour (left by killed writers), and the compiled
    templates of another templates' text (another version or checkout) last written over an hour ago; a process
    still using them compiles them again."""
    root = Path(root)
    removed = 0
    now = time.time()
    compiled = root / TEMPLATES
    for directory in (p for p in compiled.iterdir() if p.is_dir()) if compiled.is_dir() else ():
        try:
            stale = directory.name != template_hash() and now - directory.stat().st_mtime > min_age_seconds
            if stale:
                removed += sum(1 for p in directory.rglob("*") if p.is_file())
                shutil.rmtree(directory, ignore_errors=True)
        except OSError:  # removed by another pruner meanwhile
            pass
    for directory in (p for p in root.iterdir() if p.is_dir() and p != compiled) if root.is_dir() else ():
        referenced = set()
        for meta_path in directory.glob("*.json"):
            try:
                referenced.add(json.loads(meta_path.read_text()).get("binary"))
            except (OSError, ValueError, AttributeError):
                pass
        for path in directory.iterdir():
            old = now - path.stat().st_mtime > min_age_seconds  # young ones may belong to a writer at work
            if old and (path.name.startswith(".tmp-") or path.suffix == ".bin" and path.name not in referenced):
                try:
                    path.unlink()
                    removed += 1
                except OSError:
                    pass
    return removed
