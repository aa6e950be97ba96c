"""The profiling tools run: every pass of a layer with its kernels, a layer's cold start, and its kernels' inner
loops (tools/ print tables; they are run here so they do not rot, never timed)."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


SMALL_LAYER = "nd=2,inmaps=3,outmaps=5,size=4,stride=2,pad=1,batch=2,spatial=5x6"


def run_tool(name, tmp_path, *args):
    """tools/`name` with `args` on an empty kernel cache of its own: its standard output, after it exits 0."""
    env = dict(os.environ, DECONVND_CL_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_profile_passes_reports_each_pass_and_its_kernels(tmp_path):
    lines = run_tool("profile_passes.py", tmp_path, SMALL_LAYER, "--repeats", "1").splitlines()
    assert [line.split(" wall ")[0].split()[-1] for line in lines] == ["fwd", "bwd_data", "bwd_weights"], lines
    assert all(" kernels " in line and (" cpu_" in line or " gpu_" in line) for line in lines), lines


def test_default_gaps_reports_each_pass_against_its_fastest_candidate(tmp_path):
    out = run_tool("default_gaps.py", tmp_path, SMALL_LAYER, "--rounds", "1")
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| 2d")]
    assert [row[1] for row in rows] == ["forward", "backward_data", "backward_weights"], out
    for row in rows:
        default_min, default_median = map(float, row[3].split(" / "))
        assert 0 < default_min <= default_median and row[4].startswith("("), row


def test_cold_start_reports_a_row_per_layer():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "cold_start.py"), "--only", "4d"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 4d")]
    assert len(rows) == 1, result.stdout
    times = [float(cell) for cell in rows[0].strip("| ").split(" | ")[1:]]
    assert len(times) == 5 and all(t > 0 for t in times), rows


def test_hot_loops_reports_each_register_tiled_kernels_inner_loop(queue):
    cpu_flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "portable computing language" not in queue.device.platform.name.lower() or platform.machine() != "x86_64" \
            or " fma " not in cpu_flags or shutil.which("objdump") is None:
        pytest.skip("hot_loops disassembles PoCL's x86-64 kernels (with FMA) with objdump")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "hot_loops.py"),
                             "nd=2,inmaps=8,outmaps=3,size=4,stride=2,pad=1,batch=2,spatial=16x16", "--repeats", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.strip("| ").split(" | ") for line in result.stdout.splitlines()[2:]]
    for prefix in ("cpu_fwd2d", "cpu_bwdd2d", "cpu_bwdw2d"):
        row = next((cells for cells in rows if cells[1].startswith(prefix)), None)
        assert row is not None, result.stdout
        instructions, fmas, loads, _stack = map(int, row[2:6])
        assert instructions >= fmas > 0 and loads > 0, row


def test_hot_loops_merges_a_loop_laid_out_with_several_jumps_back():
    """A loop of ifs the compiler lays out with several jumps back into it is one loop, not overlapping pieces;
    a loop inside another stays a loop of its own."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import hot_loops
    finally:
        sys.path.remove(str(ROOT / "tools"))
    code = [(0x10, "mov %rax,%rbx"), (0x20, "vfmadd231ps %ymm0,%ymm1,%ymm2"), (0x30, "jne 20 <k+0x20>"),
            (0x40, "vfmadd231ps %ymm3,%ymm1,%ymm4"), (0x50, "jne 10 <k>"), (0x60, "vfmadd231ps %ymm5,%ymm1,%ymm6"),
            (0x70, "jne 40 <k+0x40>"), (0x80, "jmp 90 <k+0x90>"), (0x90, "ret")]
    # 0x20-0x30 lies inside 0x10-0x50 (nested); 0x40-0x70 overlaps 0x10-0x50 without either holding the other
    assert hot_loops.loop_ranges(code) == [(0x10, 0x70), (0x20, 0x30)]
    assert [len(body) for body in hot_loops.loops(code)] == [7, 2]
