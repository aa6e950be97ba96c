"""Rendering OpenCL C from the Mako templates (`templates/`, shipped inside the installed package).

Mako compiles each template to a Python module before rendering it: about 0.3 s of a process's first kernel
source on this project's machine, paid again by every process even when all its kernels come from the disk cache
(whose keys are the rendered sources). So the compiled modules are kept on disk too, beside the kernel cache
(`disk_cache.template_module_dir`); a later process imports them instead. Without a disk cache, or where that
directory cannot be written or read, templates compile in memory (logged at INFO level).
"""

import hashlib
import logging
from functools import lru_cache
from pathlib import Path

from mako.lookup import TemplateLookup

log = logging.getLogger(__name__)

# What a compiled module that cannot be written or loaded raises (not a template's own error, a MakoException)
MODULE_FAILURES = (OSError, SyntaxError, ImportError, ValueError, EOFError)


def template_dir():
    """Installed: deconvnd_cl/templates (package data). From a source checkout: the repository's templates/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "common.mako").is_file():
            return candidate
    raise FileNotFoundError(f"deconvnd_cl templates not found next to {here}")


def _write_module(source, path):
    from .disk_cache import atomic_write  # not at import: disk_cache imports this module
    atomic_write(Path(path), source)


@lru_cache(maxsize=None)
def _lookup(module_dir):
    """The template lookup compiling to `module_dir` (a str), or in memory where it is None."""
    return TemplateLookup(directories=[str(template_dir())], strict_undefined=True, module_directory=module_dir,
                          module_writer=_write_module if module_dir else None)


@lru_cache(maxsize=None)
def template_hash():
    """Hash of every template's text: part of the disk cache's identity, so an edited template misses."""
    digest = hashlib.sha256()
    for path in sorted(template_dir().glob("*.mako")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


_unusable_module_dirs = set()


def render(template, **args):
    """The OpenCL C source of `template` (a file name in templates/) with these arguments; a missing argument
    is a NameError here, never wrong code."""
    from .disk_cache import template_module_dir
    module_dir = template_module_dir()
    if module_dir is not None and str(module_dir) not in _unusable_module_dirs:
        try:  # templates a template imports (common.mako) are loaded as it renders
            return _lookup(str(module_dir)).get_template(template).render(**args)
        except MODULE_FAILURES as e:  # a template's own error raises again below, in memory
            _unusable_module_dirs.add(str(module_dir))
            # no warning: the kernel cache warns of an unwritable root, and this costs a fraction of a second
            log.info("compiled templates at %s unusable (%s: %s); templates compile in memory", module_dir,
                     type(e).__name__, e)
    return _lookup(None).get_template(template).render(**args)
