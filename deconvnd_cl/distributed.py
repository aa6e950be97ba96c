"""Training on several processes or machines with MPI (mpi4py): each rank runs its part of the batch on its own
device, parameters start equal (broadcast from one rank) and parameter gradients are summed over the ranks.

The sum is the same on every rank and on every run for a given number of ranks: each rank receives every rank's
gradients (MPI_Allgather) and adds them in rank order in float64, where MPI_Allreduce would leave the order of
the additions to the MPI library. This costs (ranks - 1) x the gradients' bytes received per rank and step,
against about 2 x that for a ring all-reduce: the price of the fixed order, small beside a layer's compute
(docs/guide.md has the numbers for the example layers).
"""

import numpy as np

from .errors import ModuleError
from .module import Module


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ModuleError("MPI training needs mpi4py and an MPI library: pip install deconvnd_cl[mpi] "
                          "(mpi4py and mpich)") from None
    return MPI


def _communicator(comm):
    return _mpi().COMM_WORLD if comm is None else comm


def parameters(modules):
    """(label, Variable) for every parameter of `modules` (a Module or a list of them), in a fixed order."""
    modules = [modules] if isinstance(modules, Module) else list(modules)
    found = []
    for i, module in enumerate(modules):
        if not isinstance(module, Module):
            raise ModuleError(f"modules[{i}] is a {type(module).__name__} (expected: a deconvnd_cl Module)")
        for name, var in sorted(module.getVarTable().items()):
            found.append((f"modules[{i}].{name}", var))
    return found


def check_ranks_agree(comm, params):
    """ModuleError on every rank unless every rank has the same parameters (labels, shapes, dtypes)."""
    mine = [(label, tuple(var.data.shape), str(var.data.dtype), var.hasGrad) for label, var in params]
    everyone = comm.allgather(mine)
    for rank, theirs in enumerate(everyone):
        if theirs == everyone[0]:
            continue
        if len(theirs) != len(everyone[0]):
            raise ModuleError(f"rank {rank} has {len(theirs)} parameters (rank 0: {len(everyone[0])})")
        for ours, other in zip(everyone[0], theirs):
            if ours != other:
                raise ModuleError(f"rank {rank} has parameter {other[0]} with shape {other[1]}, {other[2]}, "
                                  f"gradient {other[3]} (rank 0: {ours[0]} with shape {ours[1]}, {ours[2]}, "
                                  f"gradient {ours[3]}): the ranks must build the same modules")


def broadcast_parameters(modules, comm=None, root=0):
    """Every rank's parameters set to those of rank `root` (call once after building the modules)."""
    comm = _communicator(comm)
    params = parameters(modules)
    check_ranks_agree(comm, params)
    if not 0 <= root < comm.size:
        raise ModuleError(f"root is {root!r} (expected: a rank, 0 .. {comm.size - 1})")
    for _, var in params:
        host = var.data.get()
        comm.Bcast(host, root=root)
        var.data.set(host)


def allreduce_gradients(modules, comm=None, average=False):
    """Every parameter gradient replaced by its sum over the ranks (its mean with `average`), added in rank order,
    identical on every rank. Returns the bytes this rank received."""
    comm = _communicator(comm)
    params = [(label, var) for label, var in parameters(modules) if var.hasGrad]
    check_ranks_agree(comm, params)
    received = 0
    for _, var in params:
        local = var.grad.get()
        gathered = np.empty((comm.size,) + local.shape, local.dtype)
        comm.Allgather(local, gathered)
        total = gathered[0].astype(np.float64)
        for rank in range(1, comm.size):
            total += gathered[rank]
        if average:
            total /= comm.size
        var.grad.set(total.astype(local.dtype))
        received += (comm.size - 1) * local.nbytes
    return received
