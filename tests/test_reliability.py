"""The reliability matrix on the test device: determinism, zero sizes, views, NaN/Inf, fp16, index width,
work-group limits, and a machine with no OpenCL platform."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional, kernel_manager, reference
from deconvnd_cl.disk_cache import DiskCache
from deconvnd_cl.layouts import PackSpec
from deconvnd_cl.packing import pack
from deconvnd_cl.plans import Plans
from deconvnd_cl.problem import Problem
from conftest import assert_close, to_device

ROOT = Path(__file__).resolve().parent.parent

# (batch, cin, cout, spatial, size, stride, pad, dilation, postpad, groups): dense, grouped and depthwise
# layers whose backward passes take each of the three gy layouts
CASES = [
    (2, 12, 20, (5, 6), (4, 4), (2, 2), (1, 1), (1, 1), (0, 0), 1),
    (2, 6, 6, (4, 5), (3, 3), (2, 1), (1, 0), (1, 2), (1, 1), 6),
    (1, 4, 9, (3, 2, 4), (2, 3, 2), (2, 2, 1), (0, 1, 1), (1, 1, 2), (1, 0, 0), 1),
    (3, 5, 3, (7,), (5,), (3,), (2,), (1,), (2,), 1),
    (1, 6, 4, (2, 20), (3, 3), (1, 2), (1, 1), (1, 1), (0, 1), 1),   # rows longer than a CPU tile
    (2, 7, 10, (3, 18), (2, 2), (2, 2), (0, 0), (1, 1), (1, 0), 1),  # kernel size = stride: gy read in place
    # x packed channels-last for the weight gradient, gy read in place: tap rows with no gy row, border taps
    (2, 16, 8, (5, 6), (3, 3), (2, 2), (1, 1), (1, 1), (0, 0), 1),
]


def case_id(case):
    return f"{len(case[3])}d-c{case[1]}to{case[2]}-g{case[9]}"


def run_passes(queue, case, x, W, b, gy, dtype=np.float32):
    n, cin, cout, sp, k, s, p, d, pp, g = case
    xd, Wd, bd, gyd = (to_device(queue, a, dtype) for a in (x, W, b, gy))
    y = dcl.deconvNd(xd, Wd, bd, s, p, d, pp, g).get()
    gx = dcl.deconvNdBackwardData(gyd, Wd, xd, s, p, d, g).get()
    wg, bg = dcl.deconvNdBackwardParams(xd, gyd, Wd, bd, s, p, d, g)
    return y, gx, wg.get(), bg.get()


def reference_passes(case, x, W, b, gy):
    n, cin, cout, sp, k, s, p, d, pp, g = case
    dW, db = reference.backward_params(x, gy, W.shape, s, p, d, g)
    return (reference.forward(x, W, b, s, p, d, pp, g), reference.backward_data(gy, W, sp, s, p, d, g), dW, db)


def operands(case, seed=0, integer=False):
    n, cin, cout, sp, k, s, p, d, pp, g = case
    rng = np.random.default_rng(seed)
    out = tuple((i - 1) * ss + dd * (kk - 1) - 2 * ppad + 1 + post
                for i, kk, ss, ppad, dd, post in zip(sp, k, s, p, d, pp))
    shapes = ((n, cin) + sp, (cin, cout // g) + k, (1, cout) + (1,) * len(sp), (n, cout) + out)
    if integer:
        return [rng.integers(-2, 3, shape).astype(np.float64) for shape in shapes]
    return [rng.standard_normal(shape) for shape in shapes]


# ---------------------------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_repeated_calls_bitwise_identical(queue, case):
    ops = operands(case)
    first = run_passes(queue, case, *ops)
    for _ in range(2):
        for a, b in zip(first, run_passes(queue, case, *ops)):
            assert a.tobytes() == b.tobytes()


DETERMINISM_SCRIPT = """
import hashlib, json, sys, numpy as np
sys.path.insert(0, {tests!r})
from test_reliability import CASES, operands, run_passes
from conftest import select_test_queue
q = select_test_queue()
digest = hashlib.sha256()
for case in CASES:
    for array in run_passes(q, case, *operands(case)):
        digest.update(array.tobytes())
print(digest.hexdigest())
"""


def digest_in_subprocess(**env_extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    result = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT.format(tests=str(ROOT / "tests"))],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_bitwise_identical_across_threads_and_local_sizes():
    """Same bits with 1 or 2 PoCL threads and with work-groups of 1 or 4 work-items."""
    reference_digest = digest_in_subprocess(POCL_MAX_PTHREAD_COUNT="2")
    assert digest_in_subprocess(POCL_MAX_PTHREAD_COUNT="1") == reference_digest
    assert digest_in_subprocess(DECONVND_CL_LOCAL_SIZE="4") == reference_digest


def test_work_group_limit_256():
    """Everything passes on a device that caps work-groups at 256 (as some AMD GPUs do)."""
    env = dict(os.environ, POCL_MAX_WORK_GROUP_SIZE="256", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(ROOT / "tests" / "test_properties.py"), "-k", "adjoint or direct"],
                            env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


# ---------------------------------------------------------------------------------------------- index width

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_64bit_indexing_gives_the_same_bits(queue, case, monkeypatch):
    ops = operands(case, seed=3)
    narrow = run_passes(queue, case, *ops)
    monkeypatch.setenv("DECONVND_CL_INDEX_BITS", "64")
    wide = run_passes(queue, case, *ops)
    for a, b in zip(narrow, wide):
        assert a.tobytes() == b.tobytes()


# every backward kernel family with every gy source it reads: (family, variant) on the in-place case
GY_SOURCES = [("backward_data", (6, 8, 8, "planar")), ("backward_data", (6, 8, 8, "in_place")),
              ("backward_weights", (3, 4, 8, "planar")), ("backward_weights", (4, 8, 8, "channels_last")),
              ("backward_weights", (3, 4, 8, "in_place"))]


@pytest.mark.parametrize("family, tile", GY_SOURCES, ids=[f"{f}-{t[3]}" for f, t in GY_SOURCES])
def test_64bit_indexing_every_gy_source(queue, family, tile, monkeypatch):
    monkeypatch.setenv("DECONVND_CL_STRATEGY", "cpu")  # these are the register-tiled kernels' tiles
    n, cin, cout, sp, k, s, p, d, pp, g = CASES[5]
    x, W, _, gy = (to_device(queue, a) for a in operands(CASES[5], seed=4))

    def run():
        if family == "backward_data":
            return dcl.deconvNdBackwardData(gy, W, x, s, p, d, g, tile=tile).get()
        return dcl.deconvNdBackwardParams(x, gy, W, None, s, p, d, g, tile=tile)[0].get()
    narrow = run()
    monkeypatch.setenv("DECONVND_CL_INDEX_BITS", "64")
    assert run().tobytes() == narrow.tobytes()


@pytest.mark.parametrize("strategy", ["cpu", "gpu"])
@pytest.mark.parametrize("case", CASES[:2], ids=case_id)
def test_64bit_indexing_each_strategy(queue, case, strategy, monkeypatch):
    monkeypatch.setenv("DECONVND_CL_STRATEGY", strategy)
    ops = operands(case, seed=12)
    narrow = run_passes(queue, case, *ops)
    monkeypatch.setenv("DECONVND_CL_INDEX_BITS", "64")
    for a, b in zip(narrow, run_passes(queue, case, *ops)):
        assert a.tobytes() == b.tobytes()


def test_index_width_choice(queue):
    problem = Problem.create(queue, (1, 1, 8), (1, 1, 2), np.float32, 1, 0, 1, 0, 1)
    assert problem.index_bits(2**31 - 2000) == 32
    assert problem.index_bits(2**31 - 1000) == 64
    assert problem.index_bits(2**40) == 64


@pytest.mark.slow
def test_over_2_31_elements(queue):
    """An output of more than 2^31 elements (float16, 8 GiB; CI runs it on Intel's CPU runtime, whose allocations
    may be that large), its last elements checked: a 32-bit index would wrap and write them over the first ones.
    Size 2 and stride 2 keep the check exact: y[2i + t] = x[i] * w[t], and the input gradient of y is
    x * (w[0]^2 + w[1]^2)."""
    n_in = 2**30 + 16  # per item, batch 2: each item's output row has 2^31 + 32 elements, the batch 2^32 + 64
    if queue.device.max_mem_alloc_size < 2 * 2 * n_in * 2:
        pytest.skip(f"device max_mem_alloc_size {queue.device.max_mem_alloc_size} cannot hold 2^31 float16 elements")
    pattern = np.random.default_rng(5).integers(-3, 4, 4096).astype(np.float16)
    x = cla.to_device(queue, np.resize(pattern, (2, 1, n_in)))
    w = np.array([1, -2], np.float16)
    W = cla.to_device(queue, w.reshape(1, 1, 2))
    y = dcl.deconvNd(x, W, stride=2)
    gx = dcl.deconvNdBackwardData(y, W, x, stride=2)
    assert y.shape == (2, 1, 4 * n_in // 2) and y.size > 2**31
    flat_y, flat_gx, step = y.reshape(-1), gx.reshape(-1), 2**24
    for start in list(range(0, 2 * n_in - step, 16 * step)) + [2 * n_in - step]:  # a sample of chunks, the last
        expected_x = pattern[np.arange(start, start + step) % pattern.size]  # x's flat element f is pattern[f % 4096]
        got_y = flat_y[2 * start:2 * (start + step)].get().reshape(-1, 2)
        assert np.array_equal(got_y, expected_x[:, None] * w[None, :]), f"output wrong at input element {start}"
        assert np.array_equal(flat_gx[start:start + step].get(), expected_x * np.float16(5)), \
            f"input gradient wrong at element {start}"


@pytest.mark.slow
def test_pack_over_2_31_along_one_axis(queue):
    """The packing kernel on one axis of more than 2^31 elements (a 64-bit build; float16, 4 GiB in, 4 GiB out):
    split in two residue planes behind a zero border, each followed by a zero tail. Its per-axis extents and
    positions are 64-bit there: a 32-bit one would refuse the extent or wrap."""
    ext = 2**31 + 32
    if queue.device.max_mem_alloc_size < ext * 2:
        pytest.skip(f"device max_mem_alloc_size {queue.device.max_mem_alloc_size} cannot hold 2^31 float16 elements")
    pattern = np.random.default_rng(6).integers(-3, 4, 4096).astype(np.float16)
    src = cl.Buffer(queue.context, cl.mem_flags.READ_WRITE, ext * 2)
    cl.enqueue_copy(queue, src, pattern)
    filled = pattern.size  # src[f] = pattern[f % 4096], doubled on the device
    while filled < ext:
        count = min(filled, ext - filled)
        cl.enqueue_copy(queue, src, src, byte_count=count * 2, src_offset=0, dst_offset=filled * 2)
        filled += count
    grid = ext // 2 + 1  # grid row 0 is the zero border: dst[R, p] = src[2 (p - 1) + R]
    spec = PackSpec(grid=(grid,), lo=(-1,), split=(2,), ext=(ext,), plane=grid + 16)
    problem = Problem.create(queue, (1, 1, ext // 2), (1, 1, 2), np.float16, 2, 0, 1, 0, 1)
    dst = pack(problem, src, 1, spec, problem.index_bits(2 * spec.plane))
    assert problem.index_bits(2 * spec.plane) == 64

    def read(start, count):
        out = np.empty(count, np.float16)
        cl.enqueue_copy(queue, out, dst, src_offset=start * 2)
        return out
    step = 2**24
    for residue in range(2):
        base = residue * spec.plane
        for p0 in list(range(0, grid - step, 16 * step)) + [grid - step]:  # a sample of chunks, the last
            p = np.arange(p0, p0 + step)
            expected = np.where(p >= 1, pattern[(2 * (p - 1) + residue) % pattern.size], np.float16(0))
            assert np.array_equal(read(base + p0, step), expected), f"residue {residue} wrong at {p0}"
        assert not read(base + grid, 16).any(), f"residue {residue}: the plane's tail is not zero"


# ---------------------------------------------------------------------------------------------- sizes, views

def test_zero_batch(queue, monkeypatch):
    launched = []
    real_enqueue = cl.enqueue_nd_range_kernel
    monkeypatch.setattr(cl, "enqueue_nd_range_kernel",
                        lambda q, k, g, *a, **kw: launched.append(g) or real_enqueue(q, k, g, *a, **kw))
    layer = dcl.Deconv2D(3, 4, size=3, stride=2, pad=1)
    x = cla.empty(queue, (0, 3, 5, 5), np.float32)
    y = layer(x)
    assert y.shape == (0, 4, 9, 9)
    layer.vars["W"].grad.fill(1.0)
    layer.vars["b"].grad.fill(1.0)
    gx = layer.backward(cla.empty(queue, (0, 4, 9, 9), np.float32), momentum=0.5)
    assert gx.shape == (0, 3, 5, 5)
    assert np.all(layer.vars["W"].grad.get() == 0.5) and np.all(layer.vars["b"].grad.get() == 0.5)
    assert all(all(g) for g in launched)


def test_offset_view_is_read_correctly(queue):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)
    W = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    whole = to_device(queue, x)
    view = whole[1:]  # contiguous, but starts at an offset into the buffer
    assert view.offset > 0
    y = dcl.deconvNd(view, to_device(queue, W), stride=2).get()
    assert_close(y, reference.forward(x[1:], W, None, 2))


# ---------------------------------------------------------------------------------------------- NaN / Inf

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_nan_inf_propagate_like_the_reference(queue, case):
    x, W, b, gy = operands(case, seed=5)
    rng = np.random.default_rng(6)
    for array in (x, gy):
        flat = array.reshape(-1)
        picks = rng.choice(flat.size, size=2, replace=False)
        flat[picks[0]], flat[picks[1]] = np.nan, np.inf
    names = ("forward", "input grad", "W grad", "b grad")
    with np.errstate(invalid="ignore"):
        expected = reference_passes(case, x, W, b, gy)
    for name, got, want in zip(names, run_passes(queue, case, x, W, b, gy), expected):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: NaN mask")
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{name}: +Inf mask")
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{name}: -Inf mask")
        finite = np.isfinite(want)
        assert_close(got[finite], want[finite], what=name)


# ---------------------------------------------------------------------------------------------- float64

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float64_matches_reference(queue, fp64, case):
    """Double precision takes other vector widths (4 lanes, half vectors of 2) in every kernel family."""
    ops = operands(case, seed=11)
    got = run_passes(queue, case, *ops, dtype=np.float64)
    for name, g, want in zip(("forward", "input grad", "W grad", "b grad"), got, reference_passes(case, *ops)):
        assert g.dtype == np.float64
        assert_close(g, want, np.float64, what=name)


# ---------------------------------------------------------------------------------------------- float16

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float16_storage_exact_on_small_integers(queue, case):
    ops = operands(case, seed=7, integer=True)
    got = run_passes(queue, case, *ops, dtype=np.float16)
    for name, g, want in zip(("forward", "input grad", "W grad", "b grad"), got, reference_passes(case, *ops)):
        assert g.dtype == np.float16
        np.testing.assert_array_equal(g.astype(np.float64), want, err_msg=name)


def test_calc_mode_float16(queue):
    layer = dcl.Deconv2D(2, 3, size=2, stride=2, initscheme="uniform", wscale=2)
    layer.calcMode(np.float16)
    assert layer.W.dtype == np.float16 and layer.calctype == np.float16
    x = np.random.default_rng(8).integers(-2, 3, (1, 2, 3, 3)).astype(np.float16)
    y = layer(to_device(queue, x, np.float16))
    want = reference.forward(x, layer.W.get(), layer.b.get(), 2)
    assert_close(y.get().astype(np.float64), want, np.float16)


# ---------------------------------------------------------------------------------------------- no platform

def test_no_opencl_platform_says_how_to_get_one(tmp_path):
    env = dict(os.environ, OCL_ICD_VENDORS=str(tmp_path / "no-vendors"), OPENCL_VENDOR_PATH=str(tmp_path),
               PYTHONPATH=str(ROOT))
    env.pop("PYOPENCL_CTX", None)
    script = ("import deconvnd_cl as dcl\ntry:\n    dcl.default_queue()\nexcept dcl.ModuleError as e:\n"
              "    print('MODULE_ERROR', e)\n")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    if "MODULE_ERROR" not in result.stdout:
        pytest.skip(f"the OpenCL platforms could not be hidden here: {result.stdout or result.stderr[-300:]}")
    assert "pip install pocl-binary-distribution" in result.stdout
    cli = subprocess.run([sys.executable, "-m", "deconvnd_cl", "devices"], env=env, capture_output=True, text=True)
    assert cli.returncode == 3 and "pocl-binary-distribution" in cli.stderr


# ---------------------------------------------------------------------------------------------- thread pinning

@pytest.mark.parametrize("given, expected", [(None, "1"), ("0", "0")])
def test_pocl_worker_pinning_is_a_default_the_user_can_override(given, expected):
    """Importing the library asks PoCL to pin its worker threads (POCL_AFFINITY=1, deconvnd_cl/device.py), unless
    the environment already says otherwise; results do not depend on it (the determinism tests run with it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("POCL_AFFINITY", None)
    if given is not None:
        env["POCL_AFFINITY"] = given
    script = "import os, deconvnd_cl\nprint('POCL_AFFINITY=' + os.environ['POCL_AFFINITY'])"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert f"POCL_AFFINITY={expected}" in result.stdout, result.stderr[-500:]


# ---------------------------------------------------------------------------------------------- unwritten memory

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_internal_buffers_never_read_unwritten(queue, case, monkeypatch):
    """Every scratch buffer the library takes (padded operands, packed weights, partial sums) starts as NaN,
    whether the pool hands out a new block or one a previous call used: a kernel reading an element no kernel
    of this call wrote would turn a result NaN."""
    import pyopencl as cl

    from deconvnd_cl import memory
    real_buffer, taken = memory.buffer, []

    def nan_buffer(queue_, nbytes):
        buffer = real_buffer(queue_, nbytes)
        taken.append(nbytes)
        cl.enqueue_copy(queue_, buffer, np.full(buffer.size, 0xFF, np.uint8))  # all-ones bytes: NaN in every dtype
        return buffer
    monkeypatch.setattr(memory, "buffer", nan_buffer)
    ops = operands(case, seed=9, integer=True)
    for name, got, want in zip(("forward", "input grad", "W grad", "b grad"), run_passes(queue, case, *ops),
                               reference_passes(case, *ops)):
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert taken, "the library took no scratch buffer through deconvnd_cl.memory"


def test_kernels_loaded_from_the_disk_cache_warn_of_nothing(queue, monkeypatch, tmp_path):
    """A later process's kernels come from the disk cache without a warning: building a program from a binary
    makes some drivers log (Intel's CPU runtime always does), which pyopencl turns into a CompilerWarning."""
    monkeypatch.setenv("DECONVND_CL_DRIVER_CACHE", "0")  # binaries on disk, on PoCL too
    layer = dcl.Deconv2D(4, 3, 4, stride=2, pad=1)
    x = to_device(queue, np.ones((1, 4, 5, 5)))
    for process in ("first", "later"):  # two processes' managers on one disk cache
        manager = kernel_manager.KernelManager(DiskCache(tmp_path))
        monkeypatch.setattr(kernel_manager, "_manager", manager)
        monkeypatch.setattr(functional, "_built_ahead", Plans())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = layer(x)
            layer.backward(cla.zeros_like(y))
        assert not [str(w.message) for w in caught], process
    assert manager.builds == 0 and manager.cache.hits > 0
