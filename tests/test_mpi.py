"""Several processes with MPI (mpiexec -n 2, mpi4py and MPICH from pip): half batches on each rank give the
single-process gradients, and the DCGAN example trains on two ranks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mpi4py", reason="pip install deconvnd_cl[mpi]")

ROOT = Path(__file__).resolve().parent.parent


def mpiexec(script, *args, ranks=2):
    launcher = Path(sys.executable).with_name("mpiexec")
    if not launcher.exists():
        pytest.skip(f"no mpiexec beside {sys.executable} (pip install mpich)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([str(launcher), "-n", str(ranks), sys.executable, str(script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


def test_two_ranks_give_the_single_process_gradients():
    result = mpiexec(ROOT / "tests" / "mpi_gradients.py")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "rank 0 OK" in result.stdout and "rank 1 OK" in result.stdout


def test_dcgan_generator_trains_on_two_ranks():
    result = mpiexec(ROOT / "docs" / "examples" / "dcgan_generator_mpi.py")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "2 ranks: loss" in result.stdout and "parameters identical on every rank: True" in result.stdout
