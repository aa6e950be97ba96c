"""Rendering OpenCL C from the Mako templates (`templates/`, shipped inside the installed package)."""

import hashlib
from functools import lru_cache
from pathlib import Path

from mako.lookup import TemplateLookup


def template_dir():
    """Installed: deconvnd_cl/templates (package data). From a source checkout: the repository's templates/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "common.mako").is_file():
            return candidate
    raise FileNotFoundError(f"deconvnd_cl templates not found next to {here}")


@lru_cache(maxsize=None)
def _lookup():
    return TemplateLookup(directories=[str(template_dir())], strict_undefined=True)


@lru_cache(maxsize=None)
def template_hash():
    """Hash of every template's text: part of the disk cache's identity, so an edited template misses."""
    digest = hashlib.sha256()
    for path in sorted(template_dir().glob("*.mako")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def render(template, **args):
    """The OpenCL C source of `template` (a file name in templates/) with these arguments; a missing argument
    is a NameError here, never wrong code."""
    return _lookup().get_template(template).render(**args)
