#!/usr/bin/env python3
"""Cold start: what a first-time user waits for. Each layer runs in a fresh process with empty caches (the library's
and PoCL's, in a temporary directory): a DeconvND module in training mode, its forward, then its backward (input and
parameter gradients), batch 1, the time of each from the call to its result; then a second new layer in the same
process (the process's start is paid by then), and a second process on the filled caches (warm).

    python tools/cold_start.py                       # the standard geometries (LAYERS)
    python tools/cold_start.py --only 2d 3d          # those whose name contains a word
    python tools/cold_start.py --library ../other    # another checkout's library, to compare in one sitting
    python tools/cold_start.py --rounds 2            # each layer twice, rounds alternating

Benchmarks report; they never assert.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name: (nd, in maps, out maps, size, stride, pad, input spatial)
LAYERS = {
    "2d 64->32 k4 s2 p1, 8x8": (2, 64, 32, 4, 2, 1, (8, 8)),
    "2d 64->32 k2 s2, 8x8": (2, 64, 32, 2, 2, 0, (8, 8)),
    "2d 64->64 k3 s1 p1, 16x16": (2, 64, 64, 3, 1, 1, (16, 16)),
    "3d 32->16 k3 s2 p1, 4^3": (3, 32, 16, 3, 2, 1, (4, 4, 4)),
    "4d 4->4 k2 s2, 2^4": (4, 4, 4, 2, 2, 0, (2, 2, 2, 2)),
    "1d 256->128 k16 s8 p4, L16": (1, 256, 128, 16, 8, 4, (16,)),
    "2d 8->3 k16 s16 (patch un-embedding), 4x4": (2, 8, 3, 16, 16, 0, (4, 4)),
    "3d 4->2 k8 s8, 2^3": (3, 4, 2, 8, 8, 0, (2, 2, 2)),
}
SECOND = (2, 48, 24, 3, 2, 1, (8, 8))  # a second new layer in the same process: 2d k3 s2 p1

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np, pyopencl.array as cla
import deconvnd_cl as dcl
q = dcl.default_queue()
rng = np.random.default_rng(0)

def passes(nd, cin, cout, k, s, p, sp):
    layer = dcl.DeconvND(nd, cin, cout, k, stride=s, pad=p)  # in training mode, as PuzzleLib's modules start
    x = cla.to_device(q, rng.standard_normal((1, cin) + tuple(sp)).astype(np.float32))
    t0 = time.perf_counter()
    y = layer(x); q.finish()
    t1 = time.perf_counter()
    layer.backward(y); q.finish()
    return t1 - t0, time.perf_counter() - t1

layer, second = json.loads(sys.argv[1]), json.loads(sys.argv[2])
fwd, bwd = passes(*layer)
out = {"forward": fwd, "backward": bwd, "process": time.perf_counter() - start}
if second:
    out["second"] = sum(passes(*second))
print(json.dumps(out))
"""


def run_child(library, cache, layer, second):
    env = dict(os.environ, DECONVND_CL_CACHE_DIR=str(cache / "library"), POCL_CACHE_DIR=str(cache / "pocl"),
               PYTHONPATH=str(library))
    env.pop("DECONVND_CL_NO_CACHE", None)
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(layer), json.dumps(second)], env=env,
                              capture_output=True, text=True, cwd=cache, timeout=1200)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"the layer {layer} did not finish in 1200 s")
    if done.returncode:
        raise SystemExit(f"the layer's process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=(), help="layers whose name contains one of these words")
    parser.add_argument("--library", default=str(ROOT), help="the checkout whose deconvnd_cl runs (PYTHONPATH)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    chosen = {n: v for n, v in LAYERS.items() if not args.only or any(w in n for w in args.only)}
    print(f"library: {Path(args.library).resolve()}")
    print("| layer | forward s | backward s | whole process s | a second new layer s | warm process: forward + "
          "backward s |")
    print("|---|---|---|---|---|---|")
    for _ in range(args.rounds):
        for name, layer in chosen.items():
            with tempfile.TemporaryDirectory() as directory:
                cache = Path(directory)
                cold = run_child(args.library, cache, layer, SECOND)
                warm = run_child(args.library, cache, layer, None)
            print(f"| {name} | {cold['forward']:.2f} | {cold['backward']:.2f} | {cold['process']:.2f} | "
                  f"{cold['second']:.2f} | {warm['forward'] + warm['backward']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
