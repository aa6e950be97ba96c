#!/usr/bin/env python3
"""Compile the rendered kernels to AMD GPU code without a GPU, and report registers, scratch, spills and
occupancy per kernel (what a GPU's compiler makes of them).

    apt-get install clang-15 rocm-device-libs
    python tools/amd_compile_report.py                 # gfx906, gfx90a, gfx1030; a Markdown table

The GPU strategy's kernels are rendered with the default variants of an AMD GPU (strategies/gpu_tiles.py), the
register-tiled (CPU) strategy's with the tiles a GPU gets when it falls back to them, for a 2d k4 s2 p1 layer.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from deconvnd_cl.kernel_key import KernelKey
from deconvnd_cl.strategies.cpu_backward_data import RegisterTiledBackwardData
from deconvnd_cl.strategies.cpu_backward_weights import RegisterTiledBackwardWeights
from deconvnd_cl.strategies.cpu_forward import RegisterTiledForward
from deconvnd_cl.strategies.gpu_backward_data import WorkgroupTiledBackwardData
from deconvnd_cl.strategies.gpu_backward_weights import WorkgroupTiledBackwardWeights
from deconvnd_cl.strategies.gpu_forward import WorkgroupTiledForward
from deconvnd_cl.strategies.gpu_tiles import DEFAULTS

BITCODE = "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode"
TARGETS = ("gfx906", "gfx90a", "gfx1030")


def kernels():
    """(label, implementation, key) for each kernel to compile."""
    gpu = DEFAULTS["amd-gpu"]
    return [
        ("gpu forward (window)", WorkgroupTiledForward(), KernelKey("forward", "gpu", 2, "f32", 32, gpu + (1,))),
        ("gpu forward (per tap)", WorkgroupTiledForward(), KernelKey("forward", "gpu", 2, "f32", 32, gpu + (0,))),
        ("gpu backward data (window)", WorkgroupTiledBackwardData(),
         KernelKey("backward_data", "gpu", 2, "f32", 32, gpu + (1,))),
        ("gpu backward weights", WorkgroupTiledBackwardWeights(),
         KernelKey("backward_weights", "gpu", 2, "f32", 32, gpu)),
        ("cpu forward, GPU tiles", RegisterTiledForward(), KernelKey("forward", "cpu", 2, "f32", 32, (4, 4, 4), (4,))),
        ("cpu backward data, GPU tiles", RegisterTiledBackwardData(),
         KernelKey("backward_data", "cpu", 2, "f32", 32, (4, 4, 4, "planar"), (16,))),
        ("cpu backward weights, GPU tiles", RegisterTiledBackwardWeights(),
         KernelKey("backward_weights", "cpu", 2, "f32", 32, (4, 4, 4, "channels_last"))),
    ]


FIELDS = {"NumVgprs": "VGPRs", "NumSgprs": "SGPRs", "ScratchSize": "scratch bytes", "Occupancy": "occupancy"}


def compile_report(source, target, workdir):
    path = Path(workdir) / "kernel.cl"
    path.write_text(source)
    out = subprocess.run(["clang-15", "-x", "cl", "-cl-std=CL1.2", "-target", "amdgcn-amd-amdhsa", f"-mcpu={target}",
                          f"--rocm-device-lib-path={BITCODE}", "-O3", "-S", str(path), "-o", "-"],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"clang-15 failed for {target}:\n{out.stderr[-3000:]}")
    per_kernel = {}
    # each function is followed by its assembler comments (; NumVgprs: ...); its metadata entry names it and
    # holds its spill counts
    for name, body in re.findall(r"^(\w+):\s*; @\1\n(.*?)(?=^\w+:\s*; @|\Z)", out.stdout, re.S | re.M):
        found = {label: re.search(rf"; {field}: (\d+)", body) for field, label in FIELDS.items()}
        per_kernel[name] = {label: int(m.group(1)) for label, m in found.items() if m}
    for entry in re.split(r"\n\s*- \.", out.stdout):
        name = re.search(r"\.name:\s+(\w+)", entry)
        if name and name.group(1) in per_kernel:
            per_kernel[name.group(1)]["spills"] = sum(
                int(v) for v in re.findall(r"\.[sv]gpr_spill_count:\s+(\d+)", entry))
    return per_kernel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="*", default=TARGETS)
    args = parser.parse_args()
    print("| kernel | target | VGPRs | SGPRs | scratch bytes | spills | occupancy (waves per SIMD) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        for label, impl, key in kernels():
            source = impl.source(key)
            for target in args.targets:
                report = compile_report(source, target, workdir)
                main_kernel = report.get(key.name) or {}
                cells = [main_kernel.get(f, "?") for f in ("VGPRs", "SGPRs", "scratch bytes", "spills", "occupancy")]
                print(f"| {label} | {target} | " + " | ".join(str(c) for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
