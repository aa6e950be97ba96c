"""Kernel signatures, declared once.

A `Signature` lists a kernel's arguments by name and kind. The templates print the C parameter list from it
(`common.mako`'s `params`), and launches bind their arguments by name through it (`launch.launch`), with the
scalar types it declares: an `int` argument is a 32-bit int on both sides, an `idx` argument the index width of
the build (32 or 64 bits) on both sides, an `acc` scalar the accumulator type. A mismatch of order, name or
width between the Python side and the C side cannot be written.
"""

from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from .errors import ModuleError

C_ELEMENT = {"t": "dcl_t", "acc": "dcl_acc", "idx": "dcl_idx", "int": "int"}
INT32_RANGE = (-2**31, 2**31 - 1)


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str               # "buffer", "local" (work-group memory, sized in bytes at launch), "int", "idx", "acc"
    element: str = "t"      # buffers: "t" (storage type), "acc" (accumulator), "idx" (index type) or "int"
    writes: bool = False    # buffers the kernel writes
    count: int = -1         # per-axis scalars: name0 .. name{count-1} (count may be 0); -1: one argument

    def expanded(self):
        """(C name, kind) of each argument this entry stands for."""
        if self.count < 0:
            return [self.name]
        return [f"{self.name}{a}" for a in range(self.count)]

    def c_decl(self, name):
        if self.kind == "buffer":
            const = "" if self.writes else "const "
            return f"__global {const}{C_ELEMENT[self.element]}* restrict {name}"
        if self.kind == "local":
            return f"__local {C_ELEMENT[self.element]}* restrict {name}"
        return f"const {dict(int='int', idx='dcl_idx', acc='dcl_acc')[self.kind]} {name}"


def In(name, element="t"):
    return Arg(name, "buffer", element)


def Out(name, element="t"):
    return Arg(name, "buffer", element, writes=True)


def Local(name, element="acc"):
    """Work-group memory whose size in bytes the launch gives."""
    return Arg(name, "local", element)


def Int(name, count=-1):
    return Arg(name, "int", count=count)


def Idx(name, count=-1):
    return Arg(name, "idx", count=count)


def Acc(name):
    return Arg(name, "acc")


@dataclass(frozen=True)
class Signature:
    args: tuple

    def __init__(self, *args):
        object.__setattr__(self, "args", tuple(args))
        names = [n for a in args for n in a.expanded()]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate argument names in {names}")
        object.__setattr__(self, "_names", frozenset(a.name for a in args))

    def c_params(self):
        """The C parameter list, one argument a line."""
        return ",\n    ".join(a.c_decl(n) for a in self.args for n in a.expanded())

    def c_args(self):
        """The arguments' names in declared order, as a call passes them on."""
        return ", ".join(n for a in self.args for n in a.expanded())

    def scalar_dtypes(self, index_bits, acc_dtype):
        """pyopencl's set_scalar_arg_dtypes list: None for buffers, the declared type for scalars."""
        kinds = {"int": np.int32, "idx": np.int64 if index_bits == 64 else np.int32, "acc": acc_dtype}
        return [None if a.kind in ("buffer", "local") else kinds[a.kind] for a in self.args for _ in a.expanded()]

    def bind(self, values, index_bits):
        """The argument list in declared order from `values` (name -> value; a per-axis entry takes a sequence
        of `count` values; a "local" entry its size in bytes). Every declared name must be given, and nothing
        else."""
        if len(values) != len(self._names) or not self._names.issuperset(values):
            unknown = set(values) - self._names
            if unknown:
                raise TypeError(f"arguments not in the kernel's signature: {sorted(unknown)}")
        bound = []
        for arg in self.args:
            if arg.name not in values:
                raise TypeError(f"argument {arg.name!r} of the kernel's signature not given")
            value = values[arg.name]
            items = [value] if arg.count < 0 else list(value)
            if arg.count >= 0 and len(items) != arg.count:
                raise TypeError(f"argument {arg.name!r} takes {arg.count} values (given {len(items)})")
            if arg.kind == "buffer":
                if not isinstance(value, cl.MemoryObjectHolder):
                    raise TypeError(f"argument {arg.name!r} must be a buffer (given {type(value).__name__})")
            elif arg.kind == "local":
                items = [cl.LocalMemory(max(4, int(value)))]  # OpenCL refuses a local argument of size 0
            elif arg.kind == "int" or arg.kind == "idx" and index_bits == 32:
                for v in items:
                    if not INT32_RANGE[0] <= v <= INT32_RANGE[1]:
                        raise ModuleError(f"kernel argument {arg.name} = {v} does not fit a 32-bit int: the tensor "
                                          "is too large for this kernel's index arithmetic")
            bound.extend(items)
        return bound
