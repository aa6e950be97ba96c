#!/usr/bin/env python3
"""The inner loops of a layer's kernels as the CPU runs them. On PoCL's CPU device each kernel's work-group
function is compiled to a shared object in PoCL's kernel cache; this runs every pass of a layer in a child
process on an empty cache, disassembles those objects (objdump) and reports, per kernel, its loops that
multiply-add: instructions, FMAs, loads, and vector registers stored to or reloaded from the stack (a register
tile that does not fit the registers spills there, in the loop that should be all arithmetic). With `--perf` the
child runs under Linux perf (`perf record -e cpu-clock`, no hardware counters needed) and the loop reported for
each kernel is the innermost one that nearly all its samples, and so its time, went to (with its share of them).

    python tools/hot_loops.py                                # the benchmark suite's layers
    python tools/hot_loops.py --only DCGAN --perf            # suite layers whose name contains a word
    python tools/hot_loops.py nd=2,inmaps=128,outmaps=3,size=4,stride=2,pad=1,batch=16,spatial=32x32

With DECONVND_CL_TARGET_FEATURES set, the loops are read from the work function each kernel calls (compiled for
those features). x86-64 with PoCL's CPU device only (the default device there). Reports; never asserts.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from deconvnd_cl.bench import add_layer_arguments, chosen_specs  # noqa: E402

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import deconvnd_cl as dcl
from deconvnd_cl import layer_spec
from deconvnd_cl.bench import OurLayer
queue = dcl.default_queue()
if "portable computing language" not in queue.device.platform.name.lower():
    sys.exit(f"hot_loops reads PoCL's kernel cache; the default device is {queue.device.platform.name}")
layer = OurLayer(layer_spec.from_dict(json.loads(sys.argv[2])), queue)
for name in ("fwd", "bwd_data", "bwd_weights"):
    for _ in range(int(sys.argv[3])):
        layer.run(name)
"""

INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(\S.*)$")
BACKWARD_JUMP = re.compile(r"^j\w+\s+([0-9a-f]+)\s")
STACK = re.compile(r"\(%r[sb]p\)")
VECTOR = re.compile(r"%[xyz]mm\d+")
MEMORY = re.compile(r"(?:^|[\s,])-?(?:0x[0-9a-f]+)?\(%r\w+")


def disassemble(shared_object, symbol):
    """[(address, instruction)] of `symbol` in the shared object."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--disassemble={symbol}", str(shared_object)],
                         capture_output=True, text=True, check=True).stdout
    return [(int(m.group(1), 16), m.group(2).split("#")[0].strip()) for m in map(INSTRUCTION.match, out.splitlines())
            if m]


def loop_ranges(code):
    """(first, last) address of each loop: a backward jump's range, ranges that overlap without one holding the
    other merged. Loops nest or are disjoint; overlapping ranges are one loop whose blocks the compiler laid out
    with several jumps back (a loop body of `if`s, as backward data's tap rows, had a ladder of them), and each
    alone would report a fragment of it."""
    ranges = {(int(jump.group(1), 16), address) for address, jump in
              ((a, BACKWARD_JUMP.match(t)) for a, t in code) if jump and int(jump.group(1), 16) <= address}
    while True:
        overlap = next(((a, b) for a in ranges for b in ranges if a[0] < b[0] <= a[1] < b[1]), None)
        if overlap is None:
            return sorted(ranges)
        ranges -= set(overlap)
        ranges.add((overlap[0][0], overlap[1][1]))


def loops(code):
    """Each loop's instructions (loop_ranges), of the loops that hold an FMA."""
    found = []
    for first, last in loop_ranges(code):
        body = [(a, t) for a, t in code if first <= a <= last]
        if any(t.startswith("vfmadd") for _, t in body):
            found.append(body)
    return found


def describe(body, samples):
    """A loop's counts: instructions, FMAs, memory loads, vector stack traffic, share of the samples."""
    texts = [t for _, t in body]
    operands = [t.split(None, 1)[1] if " " in t else "" for t in texts]
    loads = sum(bool(MEMORY.search(o.rsplit(",", 1)[0])) for o in operands if "," in o)
    stack = sum(bool(STACK.search(o)) and bool(VECTOR.search(o)) for o in operands)
    return dict(start=body[0][0], end=body[-1][0], insns=len(texts), fma=sum(t.startswith("vfmadd") for t in texts),
                loads=loads, stack=stack, share=sum(samples.get(a, 0.0) for a, _ in body))


def _hottest(found, use_perf):
    """The loops that matter, of which the shortest is reported: with samples, those with at least 90% of the
    busiest's share (an outer loop holds its inner loops' samples too, so this is the innermost loop that holds
    nearly all of them; where two inner loops share the time, the loop around both); without, of the innermost
    loops (holding no other) those with the most FMAs."""
    if use_perf:
        top = max(loop["share"] for loop in found)
        return [loop for loop in found if loop["share"] >= 0.9 * top]
    inner = [loop for loop in found if not any(other is not loop and loop["start"] <= other["start"]
                                                and other["end"] <= loop["end"] for other in found)]
    most = max(loop["fma"] for loop in inner)
    return [loop for loop in inner if loop["fma"] == most]


def perf_samples(data, symbol):
    """{address: percent of the symbol's samples} from `perf annotate`."""
    out = subprocess.run(["perf", "annotate", "-i", str(data), "--stdio", "-s", symbol], capture_output=True,
                         text=True).stdout
    samples = {}
    for line in out.splitlines():
        m = re.match(r"\s*([0-9.]+)\s*:\s*([0-9a-f]+):", line)
        if m:
            samples[int(m.group(2), 16)] = float(m.group(1))
    return samples


def report(spec, repeats, use_perf, out=print):
    with tempfile.TemporaryDirectory() as directory:
        cache = Path(directory)
        env = dict(os.environ, POCL_CACHE_DIR=str(cache / "pocl"), DECONVND_CL_CACHE_DIR=str(cache / "library"),
                   POCL_KERNEL_CACHE="1")
        command = [sys.executable, "-c", CHILD, str(ROOT), json.dumps(spec.to_dict()), str(repeats)]
        if use_perf:
            command = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o", str(cache / "perf.data"),
                       "--"] + command
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode:
            raise SystemExit(f"the layer's process failed:\n{done.stderr[-3000:]}")
        objects = sorted((cache / "pocl").rglob("*.so"), key=lambda p: p.stem)
        for shared_object in objects:
            name = shared_object.stem
            # compiled for target features of its own (DECONVND_CL_TARGET_FEATURES), a kernel's loops are in the
            # work function it calls; else in the work-group function PoCL inlined it into
            symbol = f"{name}_work"
            code = disassemble(shared_object, symbol)
            if not code:
                symbol = f"_pocl_kernel_{name}_workgroup"
                code = disassemble(shared_object, symbol)
            samples = perf_samples(cache / "perf.data", symbol) if use_perf else {}
            found = [describe(body, samples) for body in loops(code)]
            if not found:
                continue
            hot = min(_hottest(found, use_perf), key=lambda loop: loop["insns"])
            share = f" {hot['share']:.1f} |" if use_perf else ""
            out(f"| {spec.label()} | {name.removeprefix('dcl_')} | {hot['insns']} | {hot['fma']} | {hot['loads']} | "
                f"{hot['stack']} |{share}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_layer_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="calls of each pass (more samples with --perf)")
    parser.add_argument("--perf", action="store_true", help="rank each kernel's loops by perf's samples")
    args = parser.parse_args(argv)
    for tool in ("objdump",) + (("perf",) if args.perf else ()):
        if shutil.which(tool) is None:
            raise SystemExit(f"hot_loops needs {tool} (Debian: apt-get install "
                             f"{'binutils' if tool == 'objdump' else 'linux-perf'})")
    print("| layer | kernel | its loop's instructions | FMAs | loads | vector stack accesses |"
          + (" % of the kernel's samples |" if args.perf else ""))
    print("|---|---|---|---|---|---|" + ("---|" if args.perf else ""))
    for spec in chosen_specs(args):
        report(spec, args.repeats, args.perf)


if __name__ == "__main__":
    main()
