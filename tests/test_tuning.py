"""optimizeForShape / `deconvnd-cl tune`: the winners are valid variants, results stay correct, and the
choice is reused from the cache without timing again."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import deconvnd_cl as dcl
from deconvnd_cl import reference, tuning
from conftest import assert_close, to_device

ROOT = Path(__file__).resolve().parent.parent


def test_optimize_for_shape_then_reuse(queue, monkeypatch):
    layer = dcl.Deconv2D(8, 12, size=3, stride=2, pad=1)
    shape = (2, 8, 5, 6)
    tuning._memory.clear()
    winners = layer.optimizeForShape(shape)
    assert set(winners) == {"forward", "backward_data", "backward_weights"}
    x = np.random.default_rng(0).standard_normal(shape)
    y = layer(to_device(queue, x))
    assert_close(y.get(), reference.forward(x, layer.W.get(), layer.b.get(), 2, 1))
    grad = np.random.default_rng(1).standard_normal(y.shape)
    layer.backward(to_device(queue, grad))
    dW, db = reference.backward_params(x, grad, layer.W.shape, 2, 1)
    assert_close(layer.vars["W"].grad.get(), dW)

    # a second layer of the same kind finds the stored choice: timing anything now fails the test
    tuning._memory.clear()
    monkeypatch.setattr(tuning, "_time", lambda *a, **k: (_ for _ in ()).throw(AssertionError("timed again")))
    again = dcl.Deconv2D(8, 12, size=3, stride=2, pad=1)
    assert again.optimizeForShape(shape) == winners


def test_tune_cli(tmp_path):
    env = dict(os.environ, DECONVND_CL_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "deconvnd_cl", "tune",
                             "nd=1,inmaps=4,outmaps=8,size=4,stride=2,pad=1,batch=2,spatial=16"],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "forward" in result.stdout and "backward_weights" in result.stdout
    assert list(tmp_path.glob("*/tuning.json"))
