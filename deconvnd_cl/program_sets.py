"""Several programs built as one: a layer's pass kernels in one compile.

An OpenCL compiler pays a fixed cost per program on top of the code it compiles: PoCL here parses the OpenCL
C headers and its kernel library again for every build, 0.10-0.17 s, whether the program holds one kernel or ten.
A training layer needs three programs of its own (forward, backward data, weight gradient); built as one, a
new layer pays that cost once (kernel_manager.KernelManager.prepare).

Every rendered source is a head (the prelude of types and macros: everything before its first `__kernel` or
`DCL_WORK` function, blank lines aside) and a body of kernels, and their work functions, whose names are unique
per key. Sources with identical heads combine as the head once and their bodies one after another; a source whose
head differs (another dtype, index width, vector width or target features) is left to be built alone.
"""

import hashlib
import re
from dataclasses import dataclass

# where a source's body starts: its first kernel, or the work function a kernel compiled for target features of
# its own calls (common.mako's kernel_head), at a line's start (the prelude's `#define DCL_WORK` is not one)
BODY_START = re.compile(r"^(?:__kernel|DCL_WORK)\b", re.MULTILINE)


@dataclass(frozen=True)
class ProgramSet:
    """The key of a combined program: its members' keys, in order. Named like a kernel key (the disk cache's
    file names and the CLI's listing), by a digest of its members' names."""

    members: tuple

    @property
    def name(self):
        digest = hashlib.sha256("\0".join(k.name for k in self.members).encode()).hexdigest()[:16]
        return f"dcl_set{len(self.members)}_{digest}"

    def to_json(self):
        return {"set": [dict(k.to_json(), name=k.name) for k in self.members]}


def split_head(source):
    """(head, body) of a rendered source: the text before its first kernel or work function without its blank
    lines, and the rest; None without a kernel."""
    found = BODY_START.search(source)
    if found is None:
        return None
    start = found.start()
    head = "".join(line + "\n" for line in source[:start].splitlines() if line.strip())
    return head, source[start:]


def combinable(sources):
    """The groups of keys whose sources can be built as one, from {key: source}: keys in the given order, each
    group of two or more with one head."""
    by_head = {}
    for key, source in sources.items():
        parts = split_head(source)
        if parts is not None:
            by_head.setdefault(parts[0], []).append(key)
    return [keys for keys in by_head.values() if len(keys) > 1]


class CombinedSource:
    """The KernelSource (kernel_manager) of a ProgramSet: the members' head once, then their bodies; the
    members' kernel signatures, by full kernel name, are their own programs' business."""

    def __init__(self, sources):
        self._sources = sources

    def source(self, key):
        head = split_head(self._sources[key.members[0]])[0]
        return head + "\n".join(split_head(self._sources[k])[1] for k in key.members)

    def signatures(self, key):
        return {}
