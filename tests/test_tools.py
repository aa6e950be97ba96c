"""The profiling tools run: every pass of a layer with its kernels, and a layer's cold start (tools/ print
tables; they are run here so they do not rot, never timed)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_profile_passes_reports_each_pass_and_its_kernels(tmp_path):
    env = dict(os.environ, DECONVND_CL_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "profile_passes.py"),
                             "nd=2,inmaps=3,outmaps=5,size=4,stride=2,pad=1,batch=2,spatial=5x6", "--repeats", "1"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert [line.split(" wall ")[0].split()[-1] for line in lines] == ["fwd", "bwd_data", "bwd_weights"], lines
    assert all(" kernels " in line and (" cpu_" in line or " gpu_" in line) for line in lines), lines


def test_cold_start_reports_a_row_per_layer():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "cold_start.py"), "--only", "4d"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 4d")]
    assert len(rows) == 1, result.stdout
    times = [float(cell) for cell in rows[0].strip("| ").split(" | ")[1:]]
    assert len(times) == 5 and all(t > 0 for t in times), rows
