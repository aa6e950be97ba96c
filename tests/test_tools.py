"""The profiling tool runs and reports every pass of a layer with its kernels (tools/ print tables; they are run
here so they do not rot, never timed)."""

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
