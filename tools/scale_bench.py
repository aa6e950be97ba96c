#!/usr/bin/env python3
"""What sharing the work costs and gains: a training step (forward, input gradient, parameter gradients) of the
benchmark suite's layers on one device, on a DeviceGroup, and what data-parallel MPI training would exchange.

    python tools/scale_bench.py                  # sub-devices of the default device (device fission)
    python tools/scale_bench.py --platforms      # the default device beside a device of another platform
    python tools/scale_bench.py --split          # calls split along the batch and along rows by a scratch budget

For each layer: the step's median time on the whole device, on one sub-device (half the compute units), on a
group of the two sub-devices, and, for MPI, the parameter-gradient bytes each of 2 ranks receives per step
beside the step's FLOPs (the FLOPs per byte exchanged say how slow a link the layer tolerates). Benchmarks report;
they never assert.

With --split: the same step with DECONVND_CL_SCRATCH_LIMIT set so that the calls split along the batch (2 and 4
chunks) and, one item at a time, along the first spatial axis (2 ... 16 chunks of rows), beside the unsplit step.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import deconvnd_cl as dcl  # noqa: E402
from deconvnd_cl.bench import flops, suite_specs  # noqa: E402
from deconvnd_cl.device import all_devices, create_queue, is_simulator, keep_context_alive  # noqa: E402

LAYERS = ["DCGAN 512->256", "U-Net up", "same 64->64", "V-Net up", "audio 1d"]


def step_seconds(home, spec, devices, repeats):
    """Median seconds of one training step of `spec` with arrays on `home`, shared by `devices` (or not)."""
    rng = np.random.default_rng(0)
    shape = spec.input_shape()
    conv = dict(stride=spec.stride, pad=spec.pad, dilation=spec.dilation, groups=spec.groups)
    x = cla.to_device(home, rng.standard_normal(shape, np.float32))
    W = cla.to_device(home, rng.standard_normal((spec.inmaps, spec.outmaps // spec.groups) + spec.geometry().size,
                                               np.float32))
    gy = cla.to_device(home, rng.standard_normal(dcl.deconvNd(x, W, **conv).shape, np.float32))
    times = []
    for i in range(repeats + 1):
        home.finish()
        start = time.perf_counter()
        dcl.deconvNd(x, W, devices=devices, **conv)
        dcl.deconvNdBackwardData(gy, W, x, devices=devices, **conv)
        dcl.deconvNdBackwardParams(x, gy, W, devices=devices, **conv)
        home.finish()
        if i:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


SPLIT_LAYERS = ["DCGAN out", "U-Net up", "same 64->64", "V-Net up", "audio 1d"]  # activations larger than weights


def scratch_bytes(spec, items, rows_fraction=1.0):
    """About the largest scratch buffer of a step on `items` batch items (and a fraction of their rows): the padded
    input or output gradient, whichever is larger; never below the packed weights (which no split shrinks)."""
    shape = spec.input_shape()
    out = spec.geometry().out_spatial(shape[2:])
    per_item = max(spec.inmaps * np.prod([s + 8 for s in shape[2:]]), spec.outmaps * np.prod([o + 8 for o in out]))
    weights = spec.inmaps * spec.outmaps // spec.groups * np.prod(spec.geometry().size)
    return int(4 * max(items * per_item * rows_fraction, 1.2 * weights + 16384))


def split_table(home, specs, repeats):
    """The step unsplit, then under budgets that split it along the batch and along rows."""
    budgets = [("unsplit", None)] + [(f"batch / {k}", lambda s, k=k: scratch_bytes(s, s.batch / k)) for k in (2, 4)] \
        + [(f"rows / {k}", lambda s, k=k: scratch_bytes(s, 1, 1 / k)) for k in (2, 4, 16)]
    print("| layer | " + " | ".join(f"{name} (ms)" for name, _ in budgets) + " |")
    print("|---" * (len(budgets) + 1) + "|")
    for spec in specs:
        cells = []
        for _, budget in budgets:
            if budget is None:
                os.environ.pop("DECONVND_CL_SCRATCH_LIMIT", None)
            else:
                os.environ["DECONVND_CL_SCRATCH_LIMIT"] = str(budget(spec))
            try:
                cells.append(f"{1e3 * step_seconds(home, spec, None, repeats):.1f}")
            except dcl.ModuleError as e:
                cells.append(f"({str(e)[:40]})")
        os.environ.pop("DECONVND_CL_SCRATCH_LIMIT", None)
        print(f"| {spec.name} | " + " | ".join(cells) + " |", flush=True)


def sub_device_queues(device):
    subs = device.create_sub_devices([cl.device_partition_property.EQUALLY, device.max_compute_units // 2])[:2]
    context = cl.Context(subs)
    return [keep_context_alive(cl.CommandQueue(context, d), context) for d in subs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platforms", action="store_true", help="group the default device with another platform's")
    parser.add_argument("--split", action="store_true", help="split the calls by a scratch budget")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    home = dcl.default_queue()
    specs = [s for s in suite_specs() if any(s.name.startswith(name) for name in LAYERS)]
    if args.split:
        return split_table(home, [s for s in suite_specs() if any(s.name.startswith(n) for n in SPLIT_LAYERS)],
                           args.repeats)
    if args.platforms:
        other = next((d for d in all_devices() if not is_simulator(d)
                      and d.platform.int_ptr != home.device.platform.int_ptr), None)
        if other is None:
            raise SystemExit("one OpenCL platform here")
        other_queue = create_queue(other)
        columns = [("default", home, None), ("other", other_queue, None)]
        group = dcl.measured_group([home, other_queue])
        columns.append((f"group {group.shares}", home, group))
        print(f"default: {dcl.device.describe(home.device)}; other: {dcl.device.describe(other)}")
    else:
        subs = sub_device_queues(home.device)
        group = dcl.DeviceGroup(subs)
        columns = [("whole device", home, None), ("one sub-device", subs[0], None), ("group of two", subs[0], group)]
        print(f"{dcl.device.describe(home.device)}: {home.device.max_compute_units} compute units, "
              f"sub-devices of {subs[0].device.max_compute_units}")
    print("| layer | " + " | ".join(f"{name} (ms)" for name, _, _ in columns)
          + " | MPI: KiB received per rank and step (2 ranks) | step FLOP per byte received |")
    print("|---" * (len(columns) + 3) + "|")
    for spec in specs:
        cells = [f"{1e3 * step_seconds(q, spec, devices, args.repeats):.1f}" for _, q, devices in columns]
        weights = spec.inmaps * (spec.outmaps // spec.groups) * int(np.prod(spec.geometry().size))
        grad_bytes = 4 * (weights + spec.outmaps)
        step_flops = 3 * flops(spec)
        print(f"| {spec.name} | " + " | ".join(cells) + f" | {grad_bytes / 1024:.0f} | "
              f"{step_flops / grad_bytes:.0f} |", flush=True)


if __name__ == "__main__":
    main()
