#!/usr/bin/env python3
"""Global-memory traffic of each pass, counted on Oclgrind's simulated GPU: useful FLOPs per byte loaded.

    python tools/count_traffic.py                 # the default layers, both strategies, a Markdown table
    python tools/count_traffic.py --strategy gpu

Each pass runs in a subprocess on Oclgrind with OCLGRIND_INST_COUNTS=1, which prints every kernel's executed
instructions and the bytes its `load global` instructions read; every kernel of the call is counted (packing,
weight repacking, the reduction's finalize). Useful FLOPs = 2 * N * Cin * (Cout / groups) * prod(in) * prod(size)
per pass, whatever the kernels compute on padding. A GPU does 20-45 FLOPs in the time it reads a byte from
DRAM; caches make the real traffic lower than this count, which charges every load.
"""

import argparse
import os
import re
import subprocess
import sys
from math import prod

LAYERS = {
    "64->64 8x8 k4s2p1": dict(nd=2, cin=64, cout=64, spatial=(8, 8), size=4, stride=2, pad=1),
    "64->32 16x16 k2s2": dict(nd=2, cin=64, cout=32, spatial=(16, 16), size=2, stride=2, pad=0),
    "DCGAN 512->256 / 4, 8x8 k4s2p1": dict(nd=2, cin=128, cout=64, spatial=(8, 8), size=4, stride=2, pad=1),
}
PASSES = ("forward", "backward_data", "backward_weights")

SCRIPT = r"""
import numpy as np, pyopencl.array as cla, deconvnd_cl as dcl
from deconvnd_cl.device import find_device, create_queue
q = create_queue(find_device("Oclgrind")); dcl.set_default_queue(q)
L = {layer!r}
rng = np.random.default_rng(0)
x = cla.to_device(q, rng.standard_normal((1, L["cin"]) + L["spatial"]).astype(np.float32))
W = cla.to_device(q, rng.standard_normal((L["cin"], L["cout"]) + (L["size"],) * L["nd"]).astype(np.float32))
conv = dict(stride=L["stride"], pad=L["pad"])
y = dcl.deconvNd(x, W, **conv)
gy = cla.to_device(q, rng.standard_normal(y.shape).astype(np.float32))
q.finish()
print("=== measured pass", flush=True)
if {pass_name!r} == "forward":
    dcl.deconvNd(x, W, **conv)
elif {pass_name!r} == "backward_data":
    dcl.deconvNdBackwardData(gy, W, x, **conv)
else:
    dcl.deconvNdBackwardParams(x, gy, W, **conv)
q.finish()
"""


def flops(layer):
    return 2 * layer["cin"] * layer["cout"] * prod(layer["spatial"]) * layer["size"] ** layer["nd"]


def count(layer, pass_name, strategy):
    env = dict(os.environ, OCLGRIND_INST_COUNTS="1", DECONVND_CL_NO_CACHE="1", DECONVND_CL_STRATEGY=strategy)
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(layer=layer, pass_name=pass_name)], env=env,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    text = out.stdout + out.stderr
    measured = text[text.index("=== measured pass"):]
    kernels = re.findall(r"Instructions executed for kernel '([^']+)':(.*?)(?=Instructions executed|\Z)", measured,
                         re.S)
    loaded = {}
    for name, body in kernels:
        found = re.search(r"load global \((\d+) bytes\)", body)
        loaded[name] = loaded.get(name, 0) + (int(found.group(1)) if found else 0)
    return loaded


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=("cpu", "gpu"), action="append")
    parser.add_argument("--verbose", action="store_true", help="bytes per kernel")
    args = parser.parse_args()
    strategies = args.strategy or ["cpu", "gpu"]
    print("| layer (batch 1) | strategy | " + " | ".join(f"{p} FLOP/byte" for p in PASSES) + " |")
    print("|---|---|" + "---|" * len(PASSES))
    for label, layer in LAYERS.items():
        for strategy in strategies:
            cells = []
            for pass_name in PASSES:
                loaded = count(layer, pass_name, strategy)
                cells.append(f"{flops(layer) / sum(loaded.values()):.1f}")
                if args.verbose:
                    print(f"  {label} {strategy} {pass_name}: " +
                          ", ".join(f"{k} {v}" for k, v in loaded.items()), file=sys.stderr)
            print(f"| {label} | {strategy} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
