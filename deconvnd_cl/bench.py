"""Benchmark: forward, backward data, backward weights and a training step per layer, against PyTorch.

Method: warm-up launches first, the queue finished around every timing, the median of several
repeats, PyTorch's CPU conv_transpose run alternating with ours in the same process (threads = cores), GFLOP/s
counted as 2*N*Cin*(Cout/g)*prod(in)*prod(size) per pass, and an sgemm measured in the same process as the
ceiling. Benchmarks report; they never assert.
"""

import time
from math import prod

import numpy as np
import pyopencl.array as cla

from . import functional, layer_spec, peers
from .device import default_queue, describe

# The layer families users run: GAN generators, U-Net / V-Net decoders, grouped and depthwise, 3d, audio.
SUITE = [
    ("DCGAN 512->256 8x8 k4s2p1 b16", "nd=2,inmaps=512,outmaps=256,size=4,stride=2,pad=1,batch=16,spatial=8x8"),
    ("DCGAN out 128->3 32x32 k4s2p1 b16", "nd=2,inmaps=128,outmaps=3,size=4,stride=2,pad=1,batch=16,spatial=32x32"),
    ("U-Net up 256->128 32x32 k2s2 b4", "nd=2,inmaps=256,outmaps=128,size=2,stride=2,batch=4,spatial=32x32"),
    ("same 64->64 56x56 k3s1p1 b4", "nd=2,inmaps=64,outmaps=64,size=3,pad=1,batch=4,spatial=56x56"),
    ("dilated 64->64 32x32 k3p2d2 b4", "nd=2,inmaps=64,outmaps=64,size=3,pad=2,dilation=2,batch=4,spatial=32x32"),
    ("grouped 128->128 g32 32x32 k4s2p1 b4",
     "nd=2,inmaps=128,outmaps=128,size=4,stride=2,pad=1,groups=32,batch=4,spatial=32x32"),
    ("depthwise 64->64 g64 32x32 k4s2p1 b4",
     "nd=2,inmaps=64,outmaps=64,size=4,stride=2,pad=1,groups=64,batch=4,spatial=32x32"),
    ("V-Net up 3d 64->32 16^3 k2s2 b2", "nd=3,inmaps=64,outmaps=32,size=2,stride=2,batch=2,spatial=16x16x16"),
    ("3d 32->16 16^3 k3s2p1 b2", "nd=3,inmaps=32,outmaps=16,size=3,stride=2,pad=1,batch=2,spatial=16x16x16"),
    ("audio 1d 256->128 L1024 k16s8p4 b8",
     "nd=1,inmaps=256,outmaps=128,size=16,stride=8,pad=4,batch=8,spatial=1024"),
]

PASSES = ("fwd", "bwd_data", "bwd_weights", "step")


def suite_specs():
    return [layer_spec.from_dict(dict(layer_spec.parse(text).to_dict(), name=name)) for name, text in SUITE]


def add_layer_arguments(parser):
    """The profiling tools' choice of layers (tools/): configs given, else the suite's, `--only` some of them."""
    parser.add_argument("layers", nargs="*", help="layer configs with batch= and spatial= (default: the suite)")
    parser.add_argument("--only", nargs="+", default=(), help="suite layers whose name contains one of these")


def chosen_specs(args):
    """The layer specs that add_layer_arguments' arguments choose."""
    return [layer_spec.parse(text) for text in args.layers] or [
        s for s in suite_specs() if not args.only or any(word in s.name for word in args.only)]


def flops(spec):
    shape = spec.input_shape()
    return 2 * shape[0] * spec.inmaps * (spec.outmaps // spec.groups) * prod(shape[2:]) * prod(
        spec.geometry().size)


def measure_sgemm(n=1024, repeats=3):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


class OurLayer:
    """The library's passes for one layer, on fixed random operands; `variants` (as optimizeForShape returns
    them) are used where they fit, as a module uses them."""

    def __init__(self, spec, queue, variants=None):
        g = spec.geometry()
        rng = np.random.default_rng(0)
        shape = spec.input_shape()
        self.spec, self.queue, self.variants = spec, queue, variants or {}
        self.conv = dict(stride=g.stride, pad=g.pad, dilation=g.dilation, groups=g.groups)
        self.postpad = g.postpad
        self.x = cla.to_device(queue, rng.standard_normal(shape).astype(np.float32))
        self.W = cla.to_device(queue, (0.1 * rng.standard_normal(spec.weight_shape())).astype(np.float32))
        self.b = cla.to_device(queue, np.zeros(spec.bias_shape(), np.float32))
        y = self.fwd()
        self.grad = cla.to_device(queue, rng.standard_normal(y.shape).astype(np.float32))
        self.wgrad, self.bgrad = cla.zeros_like(self.W), cla.zeros_like(self.b)

    def fwd(self):
        return functional.forward_call(self.x, self.W, self.b, dict(self.conv, postpad=self.postpad),
                                       variants=self.variants)

    def _backward(self, want_data, want_params):
        return functional.backward_call(self.x, self.grad, self.W, self.b, self.conv, want_data=want_data,
                                        want_params=want_params, wgrad=self.wgrad, bgrad=self.bgrad,
                                        variants=self.variants)

    def bwd_data(self):
        return self._backward(True, False)

    def bwd_weights(self):
        return self._backward(False, True)

    def step(self):
        self.fwd()
        self._backward(True, True)

    def run(self, name):
        getattr(self, name)()
        self.queue.finish()


SETTLE_SECONDS = 0.03


def _median_alternating(runners, name, repeats):
    """Median seconds per runner, alternating the runners each repeat (after one warm-up each).

    Each timed call follows a pause and then an untimed call of the same runner. The pause lets the other
    runner's threads stop: PyTorch's OpenMP threads spin for a while after a call returns, and on a 2-core
    machine that spinning would be charged to whoever comes next. The untimed call wakes the runner's own
    threads: after the pause, a call that first has to wake sleeping threads took up to 4x longer (PyTorch:
    4 vs 15 ms for the same layer, in bursts), and a training loop, which calls back to back, never pays that."""
    for r in runners:
        r.run(name)
    times = [[] for _ in runners]
    for _ in range(repeats):
        for i, r in enumerate(runners):
            time.sleep(SETTLE_SECONDS)
            r.run(name)
            start = time.perf_counter()
            r.run(name)
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


PEERS = ("torch", "onnxruntime", "openvino")


def benchmark(specs, repeats=5, peer_names=PEERS, tuned=False, out=print, torch_device="cpu"):
    """Per layer and pass, our time and each peer's (row keys "fwd", "torch_fwd", "onnxruntime_fwd", ...)."""
    queue = default_queue()
    factories = peers.available(peer_names, out, torch_device)
    ceiling = measure_sgemm()
    out(f"device: {describe(queue.device)}; sgemm ceiling measured in this process: {ceiling:.0f} GFLOP/s")
    results = []
    for spec in specs:
        variants = None
        if tuned:
            from .tuning import tune_layer
            variants = tune_layer(spec, queue)
        ours = OurLayer(spec, queue, variants)
        others = [factory(spec) for factory in factories.values()]
        row = {"layer": spec.label(), "gflop": flops(spec) / 1e9}
        for name in PASSES:
            runners = [ours] + [p for p in others if name in p.passes]
            times = _median_alternating(runners, name, repeats)
            row[name] = times[0]
            for peer, seconds in zip(runners[1:], times[1:]):
                row[f"{peer.name}_{name}"] = seconds
        results.append(row)
        out(format_row(row, ceiling))
    out(format_summary(results))
    return results, ceiling


def _speedups(row):
    """(label, speed-up) for every peer time in the row: peer's time / ours."""
    return [(key[:-len(name) - 1] + " " + name, row[key] / row[name])
            for name in PASSES for key in row if key.endswith("_" + name) and row[key]]


def _pass_flops(row, name):
    return row["gflop"] * {"fwd": 1, "bwd_data": 1, "bwd_weights": 1, "step": 3}[name]


def format_row(row, ceiling):
    gf = _pass_flops(row, "fwd") / row["fwd"]
    parts = [f"{row['layer']:<40} fwd {1e3 * row['fwd']:8.2f} ms {gf:6.1f} GF/s ({100 * gf / ceiling:3.0f}%)"]
    parts += [f"{label} x{ratio:.2f}" for label, ratio in _speedups(row)]
    return "  ".join(parts)


def geomean(values):
    values = [v for v in values if v]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def format_summary(results):
    labels = [label for label, _ in _speedups(results[0])] if results else []
    if not labels:
        return ""
    lines = ["geometric mean speed-up (peer time / ours):"]
    for label in labels:
        lines.append(f"  {label:<24} x{geomean([dict(_speedups(r))[label] for r in results]):.2f}")
    return "\n".join(lines)


def markdown_table(results, ceiling):
    """Our times, PyTorch's and the speed-ups against it; a second table of the forward against every peer."""
    has_torch = results and results[0].get("torch_fwd") is not None
    head = "| layer | fwd ms | fwd GF/s | % sgemm | bwd-data ms | bwd-weights ms | step ms |"
    sep = "|---|---|---|---|---|---|---|"
    if has_torch:
        head += " torch fwd ms | torch step ms | fwd speed-up | bwd-data speed-up | bwd-weights speed-up | step speed-up |"
        sep += "---|---|---|---|---|---|"
    lines = [head, sep]
    for r in results:
        gf = r["gflop"] / r["fwd"]
        line = (f"| {r['layer']} | {1e3 * r['fwd']:.2f} | {gf:.1f} | {100 * gf / ceiling:.0f}% | "
                f"{1e3 * r['bwd_data']:.2f} | {1e3 * r['bwd_weights']:.2f} | {1e3 * r['step']:.2f} |")
        if has_torch:
            line += (f" {1e3 * r['torch_fwd']:.2f} | {1e3 * r['torch_step']:.2f} | "
                     + " | ".join(f"{r[f'torch_{n}'] / r[n]:.2f}x" for n in PASSES) + " |")
        lines.append(line)
    if has_torch:
        lines.append("| **geometric mean** | | | | | | | | | "
                     + " | ".join(f"**{geomean([r[f'torch_{n}'] / r[n] for r in results]):.2f}x**"
                                  for n in PASSES) + " |")
    forward_peers = [p for p in PEERS if results and results[0].get(f"{p}_fwd")]
    if forward_peers:
        lines += ["", "| layer | ours fwd ms | " + " | ".join(f"{p} fwd ms | vs {p}" for p in forward_peers) + " |",
                  "|---|---|" + "---|---|" * len(forward_peers)]
        for r in results:
            lines.append(f"| {r['layer']} | {1e3 * r['fwd']:.2f} | " + " | ".join(
                f"{1e3 * r[f'{p}_fwd']:.2f} | {r[f'{p}_fwd'] / r['fwd']:.2f}x" for p in forward_peers) + " |")
        lines.append("| **geometric mean** | | " + " | ".join(
            f"| **{geomean([r[f'{p}_fwd'] / r['fwd'] for r in results]):.2f}x**" for p in forward_peers) + " |")
    return "\n".join(lines)


def plot(results, ceiling, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [r["layer"] for r in results]
    ours = [r["gflop"] / r["fwd"] for r in results]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.4 if results[0].get("torch_fwd") else 0.8
    ax.bar(x - (width / 2 if width < 0.8 else 0), ours, width, label="deconvnd_cl (PoCL)")
    if results[0].get("torch_fwd"):
        ax.bar(x + width / 2, [r["gflop"] / r["torch_fwd"] for r in results], width, label="PyTorch CPU")
    ax.axhline(ceiling, color="gray", linestyle="--", label=f"sgemm ceiling ({ceiling:.0f})")
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("forward GFLOP/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_cli(args, specs):
    if args.suite or not specs:
        specs = suite_specs() + specs
    names = [p for p in (args.peers.split(",") if args.peers else PEERS) if p and not (p == "torch" and args.no_torch)]
    results, ceiling = benchmark(specs, repeats=args.repeats, peer_names=names, tuned=args.tuned,
                                 torch_device=args.torch_device)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown_table(results, ceiling) + "\n")
    if args.plot:
        plot(results, ceiling, args.plot)
    return 0
