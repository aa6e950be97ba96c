"""The scripts in docs/examples run on the default device and reach their goals (each exits 0 only then)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


def run(script, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600)


def test_dcgan_generator_learns_and_saves_a_grid(tmp_path):
    png = tmp_path / "grid.png"
    result = run("dcgan_generator.py", png)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert png.read_bytes().startswith(b"\x89PNG") and "loss" in result.stdout


@pytest.mark.parametrize("script", ["unet_decoder_block.py", "vnet_upsampling_3d.py"])
def test_blocks_match_the_reference(script):
    result = run(script)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "relative L2 error" in result.stdout
