#!/usr/bin/env python3
"""Where a pass's time goes: per layer and pass, the wall time of a call and each kernel's time from OpenCL
profiling events (packing, weight repack and reductions included), so the gap between the two (host work and
launch latency) shows beside the kernels.

    python tools/profile_passes.py                          # the benchmark suite (bench.SUITE)
    python tools/profile_passes.py --only depthwise DCGAN   # suite layers whose name contains a word
    python tools/profile_passes.py nd=2,inmaps=64,outmaps=64,size=3,pad=1,batch=4,spatial=56x56

Medians over --repeats calls, each after one untimed call (as the benchmark primes its runners). Kernels of one
name in a call are summed. Benchmarks report; they never assert.
"""

import argparse
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyopencl as cl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import deconvnd_cl as dcl  # noqa: E402
from deconvnd_cl.bench import OurLayer, add_layer_arguments, chosen_specs  # noqa: E402

PASSES = ("fwd", "bwd_data", "bwd_weights")


class KernelEvents:
    """Records (kernel name, event) of every kernel enqueued while it is installed: the library enqueues through
    pyopencl.enqueue_nd_range_kernel (deconvnd_cl/launch.py)."""

    def __init__(self):
        self.events = []
        self._enqueue = cl.enqueue_nd_range_kernel

    def __enter__(self):
        def recording(queue, kernel, *args, **kwargs):
            event = self._enqueue(queue, kernel, *args, **kwargs)
            self.events.append((kernel.function_name, event))
            return event
        cl.enqueue_nd_range_kernel = recording
        return self

    def __exit__(self, *exc):
        cl.enqueue_nd_range_kernel = self._enqueue

    def take(self):
        """Milliseconds per kernel name of the events recorded since the last take."""
        times = Counter()
        for name, event in self.events:
            times[name] += (event.profile.end - event.profile.start) * 1e-6
        self.events.clear()
        return times


def profile(spec, queue, repeats, out=print):
    layer = OurLayer(spec, queue)
    with KernelEvents() as recorder:
        for name in PASSES:
            layer.run(name)
            walls, kernels = [], defaultdict(list)
            for _ in range(repeats):
                layer.run(name)
                recorder.take()
                start = time.perf_counter()
                layer.run(name)
                walls.append((time.perf_counter() - start) * 1e3)
                for kernel, ms in recorder.take().items():
                    kernels[kernel].append(ms)
            medians = {k: statistics.median(v) for k, v in kernels.items()}
            parts = "  ".join(f"{k.removeprefix('dcl_')} {v:.2f}" for k, v in medians.items())
            out(f"{spec.label():40s} {name:12s} wall {statistics.median(walls):8.2f} ms  "
                f"kernels {sum(medians.values()):8.2f} ms  | {parts}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_layer_arguments(parser)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    specs = chosen_specs(args)
    home = dcl.default_queue()
    queue = cl.CommandQueue(home.context, home.device, properties=cl.command_queue_properties.PROFILING_ENABLE)
    dcl.set_default_queue(queue)
    try:
        for spec in specs:
            profile(spec, queue, args.repeats)
    finally:
        dcl.set_default_queue(home)


if __name__ == "__main__":
    main()
