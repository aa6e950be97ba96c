"""Training on several processes or machines with MPI (mpi4py): each rank runs its part of the batch on its own
device, parameters start equal (broadcast from one rank) and parameter gradients are summed over the ranks.

The sum is the same on every rank and on every run for a given number of ranks: each rank receives every rank's
gradients (MPI_Allgather) and adds them in rank order in float64, where MPI_Allreduce would leave the order of
the additions to the MPI library. This costs (ranks - 1) x the gradients' bytes received per rank and step,
against about 2 x that for a ring all-reduce: the price of the fixed order, small beside a layer's compute
(docs/performance.md has the numbers for the benchmark's layers).
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


def agreed_parameters(comm, modules, root=None):
    """parameters(modules), once every rank has shown the others its parameters (labels, shapes, dtypes) and its
    root: where any rank's modules are not modules, or differ from rank 0's, or the roots differ or are not a
    rank, every rank raises the same ModuleError (none is left waiting in a collective)."""
    try:
        params, error = parameters(modules), None
        mine = [(label, tuple(var.data.shape), str(var.data.dtype), var.hasGrad) for label, var in params]
    except ModuleError as e:
        params, mine, error = None, None, str(e)
    everyone = comm.allgather((error, mine, root))
    for rank, (theirs_error, _, _) in enumerate(everyone):
        if theirs_error is not None:
            raise ModuleError(f"rank {rank}: {theirs_error}")
    roots = [r for _, _, r in everyone]
    valid = isinstance(roots[0], int) and not isinstance(roots[0], bool) and 0 <= roots[0] < comm.size
    if root is not None and (any(r != roots[0] for r in roots) or not valid):
        raise ModuleError(f"root must be the same rank on every rank, 0 .. {comm.size - 1} (given, by rank: {roots})")
    ours = everyone[0][1]
    for rank, (_, theirs, _) in enumerate(everyone):
        if len(theirs) != len(ours):
            raise ModuleError(f"rank {rank} has {len(theirs)} parameters (rank 0: {len(ours)})")
        for a, b in zip(ours, theirs):
            if a != b:
                raise ModuleError(f"rank {rank} has parameter {b[0]} with shape {b[1]}, {b[2]}, gradient {b[3]} "
                                  f"(rank 0: {a[0]} with shape {a[1]}, {a[2]}, gradient {a[3]}): the ranks must "
                                  "build the same modules")
    return params


def broadcast_parameters(modules, comm=None, root=0):
    """Every rank's parameters set to those of rank `root` (call once after building the modules)."""
    comm = _communicator(comm)
    for _, var in agreed_parameters(comm, modules, root if isinstance(root, int) else repr(root)):
        host = var.data.get()
        comm.Bcast([host, _mpi().BYTE], root=root)  # as bytes: any dtype, float16 included
        var.data.set(host)


def allreduce_gradients(modules, comm=None, average=False):
    """Every parameter gradient replaced by its sum over the ranks (its mean with `average`), added in rank order,
    identical on every rank. Returns the bytes this rank received.

    With momentum (backward(..., momentum=m) blends m x the previous gradient, which after this call is the same
    on every rank), the sum would count the previous gradient once per rank: use average=True there, with every
    rank's loss gradient scaled by its own batch (equal batches on every rank)."""
    comm = _communicator(comm)
    MPI = _mpi()
    received = 0
    for _, var in agreed_parameters(comm, modules):
        if not var.hasGrad:
            continue
        local = var.grad.get()
        gathered = np.empty((comm.size,) + local.shape, local.dtype)
        comm.Allgather([local, MPI.BYTE], [gathered, MPI.BYTE])
        total = gathered[0].astype(np.float64)
        for rank in range(1, comm.size):
            total += gathered[rank]
        if average:
            total /= comm.size
        var.grad.set(total.astype(local.dtype))
        received += (comm.size - 1) * local.nbytes
    return received
