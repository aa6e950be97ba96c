"""Run by tests/test_mpi.py under `mpiexec -n 2`: each rank takes half a batch; after broadcast_parameters and
allreduce_gradients, every rank holds the single-process gradients of the whole batch (within float32 rounding),
the same bits on every rank; ranks that build different modules get a ModuleError on every rank.
Prints 'rank R OK' on success; any failed check raises (non-zero exit)."""

import sys
from pathlib import Path

import numpy as np
import pyopencl.array as cla
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import select_test_queue  # noqa: E402

import deconvnd_cl as dcl  # noqa: E402
from deconvnd_cl.reference import rel_l2  # noqa: E402

comm = MPI.COMM_WORLD
queue = select_test_queue()
BATCH = 6


def layers(seed):
    """Two layers with weights that differ per seed (so the broadcast has something to do)."""
    rng = np.random.default_rng(seed)
    built = [dcl.Deconv2D(8, 6, 4, stride=2, pad=1, name="up"), dcl.Deconv2D(6, 3, 3, pad=1, name="out")]
    for layer in built:
        for var in layer.getVarTable().values():
            var.data.set(rng.standard_normal(var.data.shape).astype(np.float32))
    return built


def step(modules, x, gy):
    """One forward and backward through both layers; gy is the last layer's output gradient."""
    h = modules[0](x)
    modules[1](h)
    modules[0].backward(modules[1].backward(gy))


rng = np.random.default_rng(42)  # the whole batch, the same on every rank
x_all = rng.standard_normal((BATCH, 8, 5, 5)).astype(np.float32)
gy_all = rng.standard_normal((BATCH, 3, 10, 10)).astype(np.float32)
lo, hi = BATCH * comm.rank // comm.size, BATCH * (comm.rank + 1) // comm.size

mine = layers(seed=comm.rank)
dcl.broadcast_parameters(mine, comm)
step(mine, cla.to_device(queue, x_all[lo:hi]), cla.to_device(queue, gy_all[lo:hi]))
received = dcl.allreduce_gradients(mine, comm)
assert received == (comm.size - 1) * sum(v.grad.nbytes for m in mine for v in m.getVarTable().values())

whole = layers(seed=0)  # rank 0's weights: what the broadcast gave every rank
step(whole, cla.to_device(queue, x_all), cla.to_device(queue, gy_all))
for layer_mine, layer_whole in zip(mine, whole):
    for name, var in layer_mine.getVarTable().items():
        ours, expected = var.grad.get(), layer_whole.vars[name].grad.get()
        err = rel_l2(ours, expected)
        assert err < 1e-6, f"rank {comm.rank}: {layer_mine.name}.{name} gradient off by {err:.3g}"
        everyone = comm.allgather(ours)
        assert all(np.array_equal(everyone[0], other) for other in everyone), f"{name}: ranks differ"
        assert np.array_equal(var.data.get(), layer_whole.vars[name].data.get()), f"{name}: broadcast failed"

# ranks that disagree on a parameter's shape: a ModuleError on every rank, no hang
odd = [dcl.Deconv2D(8, 6 + comm.rank, 4, stride=2, pad=1)]
for call in (dcl.broadcast_parameters, dcl.allreduce_gradients):
    try:
        call(odd, comm)
    except dcl.ModuleError as e:
        assert "rank 1" in str(e) and "shape" in str(e), e
    else:
        raise AssertionError(f"{call.__name__} accepted modules of different shapes")
# one rank passing something that is not a module, or the ranks naming different roots: the same on every rank
for call, words in ((lambda: dcl.allreduce_gradients(mine if comm.rank == 0 else ["W"], comm), "rank 1: modules[0]"),
                    (lambda: dcl.broadcast_parameters(mine, comm, root=comm.rank), "root must be the same rank"),
                    (lambda: dcl.broadcast_parameters(mine, comm, root=5), "root must be the same rank")):
    try:
        call()
    except dcl.ModuleError as e:
        assert words in str(e), e
    else:
        raise AssertionError(f"no ModuleError naming {words!r}")
print(f"rank {comm.rank} OK", flush=True)
