#!/usr/bin/env python3
"""Where a default tile leaves time behind: per layer and pass, the default variant against every candidate the
tuner would time (Implementation.candidates), rounds taking turns call by call, and the fastest beside it.

    python tools/default_gaps.py                            # the benchmark suite (bench.SUITE)
    python tools/default_gaps.py --only DCGAN 3d            # suite layers whose name contains a word
    python tools/default_gaps.py nd=3,inmaps=32,outmaps=16,size=3,stride=2,pad=1,batch=2,spatial=16x16x16
    python tools/default_gaps.py --only 3d --rounds 20 --passes forward --vs 4,24,8,interleaved   # one candidate
    python tools/default_gaps.py --only DCGAN --passes forward --all    # every candidate's time, fastest first

Each time is the wall of one call after an untimed one (as the benchmark primes its runners), min / median over
--rounds. On a noisy machine a gap of 10-20% needs a second sitting with more rounds against that one candidate
(--vs) before a default changes. Candidates the device cannot build or run are left out. Benchmarks report;
they never assert.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import pyopencl as cl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import deconvnd_cl as dcl  # noqa: E402
from deconvnd_cl.bench import add_layer_arguments, chosen_specs  # noqa: E402
from deconvnd_cl.errors import ModuleError  # noqa: E402
from deconvnd_cl.strategies import implementation  # noqa: E402
from deconvnd_cl.tuning import pass_runs  # noqa: E402

FAMILIES = ("forward", "backward_data", "backward_weights")


def variant_key(text):
    """'4,24,8,interleaved' -> (4, 24, 8, 'interleaved')."""
    return tuple(int(part) if part.isdigit() else part for part in text.split(","))


def timed(queue, run, variant):
    run(variant)
    queue.finish()
    start = time.perf_counter()
    run(variant)
    queue.finish()
    return time.perf_counter() - start


def gaps(queue, spec, families, rounds, vs=None, every=False):
    """Rows (family, default, its times, best other, its times) for one layer; with `every`, a row per candidate
    (fastest first) in place of the best other alone."""
    rows = []
    for family, (problem, run) in pass_runs(spec, queue, spec.input_shape()).items():
        if family not in families:
            continue
        impl = implementation(family, problem)
        default = impl.default_variant(problem)
        others = [impl.variant_type.from_key(vs)] if vs else impl.candidates(problem)
        runnable = []
        for variant in [default] + [v for v in others if v != default]:
            try:
                run(variant)
                queue.finish()
                runnable.append(variant)
            except (cl.Error, ModuleError):
                pass
        times = {variant: [] for variant in runnable}
        for _ in range(rounds):
            for variant in runnable:
                times[variant].append(timed(queue, run, variant))
        others = sorted(runnable[1:], key=lambda v: statistics.median(times[v]))
        for best in (others if every else others[:1]) or [None]:
            rows.append((family, default, times[default], best, times.get(best)))
    return rows


def cell(times):
    return f"{min(times) * 1e3:.2f} / {statistics.median(times) * 1e3:.2f}" if times else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_layer_arguments(parser)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--passes", nargs="+", choices=FAMILIES, default=FAMILIES)
    parser.add_argument("--vs", type=variant_key, help="time the default against this variant only")
    parser.add_argument("--all", action="store_true", help="a row for every candidate, fastest first")
    args = parser.parse_args()
    queue = dcl.default_queue()
    print(f"device: {queue.device.platform.name} / {queue.device.name}; walls, min / median ms, "
          f"{args.rounds} rounds")
    print("| layer | pass | default | default ms | fastest other | its ms | default / fastest |")
    print("|---|---|---|---|---|---|---|")
    for spec in chosen_specs(args):
        try:
            rows = gaps(queue, spec, args.passes, args.rounds, args.vs, args.all)
        except ModuleError as e:  # a --vs that is no variant of the pass
            sys.exit(f"default_gaps.py: {e}")
        for family, default, default_times, best, best_times in rows:
            ratio = (f"{statistics.median(default_times) / statistics.median(best_times):.2f}" if best_times
                     else "")
            print(f"| {spec.label()} | {family} | {default.key()} | {cell(default_times)} | "
                  f"{best.key() if best else ''} | {cell(best_times)} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
