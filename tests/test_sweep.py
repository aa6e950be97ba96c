"""The seeded random sweep over every parameter: all passes against the float64 reference.

Every fresh output the library allocates is pre-filled with NaN here, so an element a kernel forgot to write
fails the comparison instead of passing on a lucky zero.
"""

import zlib

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import reference
from configs import Config, sweep
from conftest import assert_close, to_device

# non-overlapping up-sampling (kernel size = stride) with enough maps that its default weight-gradient tile
# differs from the other layers' (cpu_tiles.weights_tile); all but the last stride 3 read gy in place
# (Geometry.direct), on rows long enough for backward data's in-place tile too
NON_OVERLAPPING = [
    Config(2, 16, 12, (5, 20), (2, 2), (2, 2), (0, 0), (1, 1), (0, 0), 1),
    Config(1, 12, 10, (3, 3, 18), (2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), (1, 0, 1), 1),
    Config(2, 9, 20, (30,), (3,), (3,), (0,), (1,), (2,), 1),
    Config(1, 16, 32, (4, 17), (2, 2), (2, 2), (0, 0), (1, 1), (0, 0), 2),
    Config(2, 5, 7, (3, 21), (2, 1), (2, 1), (0, 0), (1, 1), (1, 0), 1),
    # enough x that the in-place weight gradient sums it in cache-sized chunks (cpu_tiles.weight_chunks): 4 of them
    Config(2, 64, 4, (8, 16, 16), (2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1), (0, 0, 0), 1),
]
# layers whose register-tiled forward and backward data tile positions in row vectors (layouts.row_tiling), with a
# tile's tail past the last vector, a row's last vector moved back, phases of both tilings in one launch, and
# layers whose rows are too short for them (test_row_vector_configs checks that they cover all of it)
ROW_VECTORS = [
    Config(2, 20, 14, (7, 8), (4, 4), (2, 2), (1, 1), (1, 1), (0, 0), 1),
    Config(1, 9, 7, (5, 12), (7, 7), (1, 1), (3, 3), (1, 1), (0, 0), 1),
    Config(1, 6, 8, (3, 4, 8), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), (0, 0, 0), 1),
    Config(2, 12, 6, (9,), (4,), (2,), (1,), (1,), (1,), 2),
    Config(1, 7, 7, (6, 20), (3, 3), (1, 1), (1, 1), (2, 2), (0, 1), 1),
    Config(1, 6, 6, (3, 32), (3, 3), (1, 1), (1, 1), (1, 1), (0, 0), 1),
]
pytestmark = pytest.mark.usefixtures("nan_filled_outputs")
CONFIGS = sweep(220, seed=20261125) + sweep(30, seed=20261126, long_rows=True) + NON_OVERLAPPING + ROW_VECTORS


def test_row_vector_configs():
    """With the CPU tiles of 16 positions in vectors of 8, ROW_VECTORS cover: forward phases in row vectors and
    in virtual tiles (within one launch too), a tile's tail past the last row vector, a row's last vector moved
    back (row length not a multiple of 8); backward data in row vectors (a last one moved back too), in tiles
    within rows and in virtual tiles."""
    from math import prod
    from deconvnd_cl.geometry import Geometry
    from deconvnd_cl.layouts import backward_grid, forward_layout, input_tiling
    seen = set()
    for c in ROW_VECTORS:
        geo = Geometry.create(c.nd, c.size, c.stride, c.pad, c.dilation, c.postpad, c.groups)
        phases = forward_layout(geo, c.spatial, c.out_spatial, 16, 4, vw=8).phases
        modes = {bool(p.vpr) for p in phases}
        seen |= {("forward rows" if mode else "forward virtual") for mode in modes}
        seen |= {"forward mixed"} if len(modes) == 2 else set()
        seen |= {"forward tail" for p in phases if p.vpr and prod(p.extents[:-1]) * p.vpr % 2}
        seen |= {"forward moved back" for p in phases if p.vpr and p.extents[-1] % 8}
        tiles_per_row, vpr, _ = input_tiling(c.spatial, backward_grid(geo, c.spatial, c.out_spatial)[2], 16, 8)
        seen |= {"backward row tiles" if tiles_per_row else "backward rows" if vpr else "backward virtual"}
        seen |= {"backward moved back" for _ in [vpr] if vpr and c.spatial[-1] % 8}
    assert seen == {"forward rows", "forward virtual", "forward mixed", "forward tail", "forward moved back",
                    "backward rows", "backward row tiles", "backward virtual", "backward moved back"}


def run_all_passes(queue, config, x, W, b, gy):
    c = config
    xd, Wd, bd, gyd = (to_device(queue, a) for a in (x, W, b, gy))
    y = dcl.deconvNd(xd, Wd, bd, postpad=c.postpad, **c.conv).get()
    gx = dcl.deconvNdBackwardData(gyd, Wd, xd, **c.conv).get()
    wgrad, bgrad = dcl.deconvNdBackwardParams(xd, gyd, Wd, bd, **c.conv)
    return y, gx, wgrad.get(), bgrad.get()


def reference_passes(config, x, W, b, gy):
    c = config
    y = reference.forward(x, W, b, postpad=c.postpad, **c.conv)
    gx = reference.backward_data(gy, W, c.spatial, **c.conv)
    wgrad, bgrad = reference.backward_params(x, gy, W.shape, **c.conv)
    return y, gx, wgrad, bgrad


def operands(config, rng, integer):
    c = config
    shapes = ((c.batch, c.cin) + c.spatial, (c.cin, c.cout // c.groups) + c.size, (1, c.cout) + (1,) * c.nd,
              (c.batch, c.cout) + c.out_spatial)
    if integer:
        return [rng.integers(-2, 3, shape).astype(np.float32) for shape in shapes]
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_all_passes_match_reference(queue, config):
    assert_all_passes_match_reference(queue, config)


def assert_all_passes_match_reference(queue, config):
    """Every pass of the layer: exact on integer-valued operands, within float32 rounding on random ones."""
    rng = np.random.default_rng(zlib.crc32(config.id.encode()))
    names = ("forward", "input grad", "W grad", "b grad")

    ints = operands(config, rng, integer=True)
    for name, got, want in zip(names, run_all_passes(queue, config, *ints), reference_passes(config, *ints)):
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        np.testing.assert_array_equal(got, want, err_msg=f"{name} differs on integer-valued data")

    reals = operands(config, rng, integer=False)
    for name, got, want in zip(names, run_all_passes(queue, config, *reals), reference_passes(config, *reals)):
        assert_close(got, want, what=name)
