#!/usr/bin/env python3
"""The DCGAN example's generator trained on several MPI ranks (data parallel).

Every rank draws the same global batch and trains on its own rows of it, on its own device; the parameters start
as rank 0's (broadcast_parameters) and each step's gradients are summed over the ranks (allreduce_gradients, in
rank order) before the update, so every rank holds the same parameters, those one process would have on the whole
batch, within float32 rounding. Rank 0 prints the loss and what the gradients cost to exchange.

    mpiexec -n 2 python docs/examples/dcgan_generator_mpi.py [steps]
"""

import sys
import time
from pathlib import Path

import numpy as np
import pyopencl.array as cla
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dcgan_generator import BATCH, STEPS, Generator, synthetic_batch  # noqa: E402

import deconvnd_cl as dcl  # noqa: E402


def main(steps):
    comm = MPI.COMM_WORLD
    queue = dcl.default_queue()
    lo, hi = BATCH * comm.rank // comm.size, BATCH * (comm.rank + 1) // comm.size
    rng = np.random.default_rng(0)  # the same stream on every rank: the global batch
    gen = Generator()
    dcl.broadcast_parameters(gen.layers, comm)
    start, losses, received = time.perf_counter(), [], 0
    for step in range(steps + 1):
        z, target = synthetic_batch(rng, BATCH)
        out = gen(cla.to_device(queue, z[lo:hi]))
        diff = cla.to_device(queue, target[lo:hi]) - out
        losses.append(comm.allreduce(float(cla.dot(diff, diff).get())) * 0.5 / (BATCH * target[0].size))
        gen.backward(diff * (1.0 / BATCH))  # each rank's share of the global batch's mean
        received += dcl.allreduce_gradients(gen.layers, comm)
        gen.update(0.01)
        if step % 50 == 0 and comm.rank == 0:
            print(f"step {step:4d}  loss {np.mean(losses[-50:]):.4f}", flush=True)
    # every rank must hold the same parameters
    params = np.concatenate([var.data.get().ravel() for layer in gen.layers for var in layer.getVarTable().values()])
    same = all(np.array_equal(params, other) for other in comm.allgather(params))
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    if comm.rank == 0:
        print(f"{comm.size} ranks: loss {first:.4f} -> {last:.4f} in {time.perf_counter() - start:.1f} s; "
              f"{received / (steps + 1) / 1024:.1f} KiB of gradients received per rank and step; "
              f"parameters identical on every rank: {same}")
    return 0 if same and last < 0.5 * first else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else STEPS))
