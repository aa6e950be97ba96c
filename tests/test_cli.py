"""Every `deconvnd-cl` command, run as a subprocess on a seeded cache directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYER = "nd=2,inmaps=3,outmaps=4,size=3,stride=2,pad=1"


def cli(*args, cache_dir, **env_extra):
    """The command in a subprocess; entries hold binaries (DECONVND_CL_DRIVER_CACHE=0), so one can be damaged."""
    env = dict(os.environ, DECONVND_CL_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT), DECONVND_CL_DRIVER_CACHE="0")
    env.pop("DECONVND_CL_NO_CACHE", None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "deconvnd_cl", *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-cache")
    result = cli("cache", "warm", LAYER, cache_dir=path)
    assert result.returncode == 0, result.stderr
    assert "warmed 1 layer configs" in result.stdout and "1/1" in result.stderr
    return path


def test_help_for_every_command(tmp_path):
    for args in ([], ["devices"], ["demo"], ["cache"], ["cache", "list"], ["cache", "show"], ["cache", "verify"],
                 ["cache", "prune"], ["cache", "clear"], ["cache", "warm"], ["cache", "path"], ["bench"], ["tune"]):
        result = cli(*args, "--help", cache_dir=tmp_path)
        assert result.returncode == 0 and "usage: deconvnd-cl" in result.stdout, args
    assert "example" in cli("cache", "warm", "--help", cache_dir=tmp_path).stdout


def test_devices(tmp_path):
    result = cli("devices", cache_dir=tmp_path)
    assert result.returncode == 0 and "* " in result.stdout and "fp64" in result.stdout
    rows = json.loads(cli("devices", "--json", cache_dir=tmp_path).stdout)
    assert sum(r["default"] for r in rows) == 1 and not any(r["default"] and r["simulator"] for r in rows)


def test_cache_path_list_show(cache_dir):
    assert cli("cache", "path", cache_dir=cache_dir).stdout.strip() == str(cache_dir)
    listing = cli("cache", "list", cache_dir=cache_dir)
    assert listing.returncode == 0 and "dcl_cpu_fwd2d_f32_i32_t" in listing.stdout
    rows = json.loads(cli("cache", "list", "--json", cache_dir=cache_dir).stdout)
    # `cache warm` builds a layer's three passes as one program (program_sets.py): one entry, its kernels listed
    layer = next(r for r in rows if r["members"])
    assert [m.split("2d")[0] for m in layer["members"]] == ["dcl_cpu_fwd", "dcl_cpu_bwdd", "dcl_cpu_bwdw"]
    fwd = layer["members"][0]
    shown = cli("cache", "show", fwd, "--source", cache_dir=cache_dir)
    assert shown.returncode == 0 and f"__kernel void {fwd}(" in shown.stdout and "sha256" in shown.stdout
    assert fwd in shown.stdout.split("\n")[1]  # the kernel line names the entry's kernels
    assert json.loads(cli("cache", "show", layer["id"], "--json", cache_dir=cache_dir).stdout)["name"] == layer["name"]


def test_cache_show_unknown_is_one_line_error(cache_dir):
    result = cli("cache", "show", "no-such-kernel", cache_dir=cache_dir)
    assert result.returncode == 3 and result.stderr.count("\n") == 1 and "no cache entry" in result.stderr


def test_cache_verify_detects_damage_and_prune_removes_it(cache_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(cache_dir, copy)
    assert cli("cache", "verify", cache_dir=copy).returncode == 0
    rows = json.loads(cli("cache", "list", "--json", cache_dir=copy).stdout)
    Path(rows[0]["binary"]).write_bytes(b"\0" * 10)
    result = cli("cache", "verify", "--json", cache_dir=copy)
    assert result.returncode == 1 and len(json.loads(result.stdout)["damaged"]) == 1
    pruned = cli("cache", "prune", cache_dir=copy)
    assert pruned.returncode == 0 and "removed 1 entries" in pruned.stdout
    assert cli("cache", "verify", cache_dir=copy).returncode == 0
    assert "removed 0 entries" in cli("cache", "prune", "--older-than", "1", cache_dir=copy).stdout
    sized = cli("cache", "prune", "--max-size", "0", cache_dir=copy)
    assert sized.returncode == 0 and json.loads(cli("cache", "list", "--json", cache_dir=copy).stdout) == []
    cleared = cli("cache", "clear", cache_dir=copy)
    assert cleared.returncode == 0 and not copy.exists()


def test_cache_warm_from_file(tmp_path):
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps([{"nd": 1, "inmaps": 2, "outmaps": 3, "size": 4, "stride": 2},
                                  {"nd": 2, "inmaps": 2, "outmaps": 2, "size": [2, 3], "groups": 2}]))
    result = cli("cache", "warm", "--file", str(layers), cache_dir=tmp_path / "c")
    assert result.returncode == 0 and "warmed 2 layer configs" in result.stdout
    again = cli("cache", "warm", "--file", str(layers), cache_dir=tmp_path / "c")
    assert "0 programs compiled" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["cache", "warm", "nd=2,inmaps=3"], "bad layer config"),
    (["cache", "warm", "nd=2,inmaps=3,outmaps=4,size=3,groups=2"], "groups (2) must divide inmaps (3)"),
    (["cache", "warm", "--file", "/no/such/file.json"], "cannot read layer file"),
    (["cache", "warm", LAYER, "--device", "no-such-device"], "no OpenCL device matches"),
])
def test_errors_are_one_line(tmp_path, args, message):
    result = cli(*args, cache_dir=tmp_path)
    assert result.returncode == 3 and message in result.stderr and result.stderr.count("\n") == 1


def test_disabled_cache_commands(tmp_path):
    result = cli("cache", "list", cache_dir=tmp_path, DECONVND_CL_NO_CACHE="1")
    assert result.returncode == 3 and "disabled" in result.stderr


def test_usage_error_exit_code(tmp_path):
    assert cli("cache", "bogus", cache_dir=tmp_path).returncode == 2


def test_demo(tmp_path):
    result = cli("demo", cache_dir=tmp_path)
    assert result.returncode == 0 and "OK: all passes match the reference" in result.stdout


def test_bench_runs_and_reports(tmp_path):
    table = tmp_path / "table.md"
    result = cli("bench", "nd=1,inmaps=4,outmaps=4,size=4,stride=2,pad=1,batch=2,spatial=16", "--repeats", "1",
                 "--no-torch", "--markdown", str(table), cache_dir=tmp_path / "c")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "GF/s" in result.stdout and "| layer |" in table.read_text()
