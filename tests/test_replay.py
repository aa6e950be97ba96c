"""A call of a shape seen before replays the first one's recorded enqueues (replay.py): its results are the
reference's and bit for bit those of the call worked out anew, on new arrays each time, and whatever a replay
could not repeat (an array with an offset, another switch, another kernel manager) is worked out again."""

from decimal import Decimal

import numpy as np
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import functional, kernel_manager, memory, reference, replay, settings
from deconvnd_cl.disk_cache import DiskCache
from deconvnd_cl.functional import deconvNd, deconvNdBackwardData, deconvNdBackwardParams
from deconvnd_cl.problem import Problem
from conftest import assert_close, to_device
from configs import sweep
from test_device_group import sub_device_queues
from test_scale import ROW_LAYERS, all_passes, random_operands


@pytest.fixture
def replays(monkeypatch):
    """A kernel manager of this test alone: its replays are this test's."""
    fresh = kernel_manager.KernelManager(DiskCache(None))
    monkeypatch.setattr(kernel_manager, "_manager", fresh)
    return fresh.replays


@pytest.fixture
def replayed(monkeypatch):
    """How many calls were replays."""
    count = [0]
    real = replay.Replay.__call__

    def counting(self, queue, inputs):
        count[0] += 1
        return real(self, queue, inputs)
    monkeypatch.setattr(replay.Replay, "__call__", counting)
    return count


def recorded(replays):
    return [r for r in replays.values() if r is not None]


def operands(queue, config, rng):
    x = rng.standard_normal((config.batch, config.cin) + config.spatial).astype(np.float32)
    W = rng.standard_normal((config.cin, config.cout // config.groups) + config.size).astype(np.float32)
    b = rng.standard_normal((1, config.cout) + (1,) * config.nd).astype(np.float32)
    gy = rng.standard_normal((config.batch, config.cout) + config.out_spatial).astype(np.float32)
    return x, W, b, gy


def run_passes(queue, config, x, W, b, gy, wgrad0):
    """Forward, backward data, and the parameter gradients blended into copies of wgrad0 (scale 0.5, momentum
    2): the results on the host."""
    conv = config.conv
    y = deconvNd(to_device(queue, x), to_device(queue, W), to_device(queue, b), postpad=config.postpad, **conv)
    gx = deconvNdBackwardData(to_device(queue, gy), to_device(queue, W), to_device(queue, x), **conv)
    wgrad = to_device(queue, wgrad0)
    wgrad_out, bgrad = deconvNdBackwardParams(to_device(queue, x), to_device(queue, gy), to_device(queue, W),
                                              to_device(queue, b), wgrad=wgrad, scale=0.5, momentum=2.0, **conv)
    assert wgrad_out is wgrad  # the caller's array, written in place, on a replay too
    return y.get(), gx.get(), wgrad.get(), bgrad.get()


@pytest.mark.parametrize("config", sweep(10, seed=1406), ids=lambda c: c.id)
def test_a_replay_gives_the_reference_and_the_worked_out_calls_bits(queue, replays, replayed, monkeypatch, config):
    rng = np.random.default_rng(14)
    wgrad0 = rng.standard_normal((config.cin, config.cout // config.groups) + config.size).astype(np.float32)
    run_passes(queue, config, *operands(queue, config, rng), wgrad0)  # recorded
    assert len(recorded(replays)) == 3 and replayed[0] == 0
    x, W, b, gy = operands(queue, config, rng)  # new values of the same shapes
    y, gx, wgrad, bgrad = run_passes(queue, config, x, W, b, gy, wgrad0)
    assert replayed[0] == 3 and len(replays) == 3
    assert_close(y, reference.forward(x, W, b, postpad=config.postpad, **config.conv), what="y")
    assert_close(gx, reference.backward_data(gy, W, config.spatial, postpad=config.postpad, **config.conv),
                 what="gx")
    dW, db = reference.backward_params(x, gy, W.shape, **config.conv)
    assert_close(wgrad, 0.5 * dW + 2.0 * wgrad0, what="wgrad")
    assert_close(bgrad, 0.5 * db, what="bgrad")  # bgrad made by the call: no momentum
    monkeypatch.setenv("DECONVND_CL_REPLAY", "0")
    worked_out = run_passes(queue, config, x, W, b, gy, wgrad0)
    for name, a, e in zip(("y", "gx", "wgrad", "bgrad"), (y, gx, wgrad, bgrad), worked_out):
        assert np.array_equal(a, e), f"{name}: the replay's bits differ from the call worked out anew"


def test_a_training_module_replays_its_steps(queue, replays, replayed, monkeypatch):
    """Forward, then both gradients from one backward (gy packed once for both), blended with scale and
    momentum into the module's gradients: three steps replayed, each bit for bit a step worked out anew."""
    rng = np.random.default_rng(12)
    xs = [to_device(queue, rng.standard_normal((2, 6, 5, 7)).astype(np.float32)) for _ in range(4)]
    layer = dcl.Deconv2D(6, 4, 4, stride=2, pad=1)
    gys = [to_device(queue, rng.standard_normal((2, 4, 10, 14)).astype(np.float32)) for _ in range(4)]

    def steps(mode):
        monkeypatch.setenv("DECONVND_CL_REPLAY", mode)
        for var in layer.vars.values():
            var.grad.fill(0)
        outputs = []
        for x, gy in zip(xs, gys):
            y = layer(x)
            gx = layer.backward(gy, scale=0.5, momentum=0.9)
            outputs += [y.get(), gx.get(), layer.vars["W"].grad.get(), layer.vars["b"].grad.get()]
        return outputs
    replaying = steps("1")
    assert replayed[0] == 6  # the first step recorded, the three after it replayed
    for a, e in zip(replaying, steps("0")):
        assert np.array_equal(a, e)


def test_a_replay_that_fails_leaves_later_calls_right(queue, replays, replayed, monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    W = rng.standard_normal((3, 5, 3, 3)).astype(np.float32)
    x_dev, W_dev = to_device(queue, x), to_device(queue, W)
    deconvNd(x_dev, W_dev, stride=2)

    def broken(*args, **kwargs):
        raise RuntimeError("enqueue failed")
    with monkeypatch.context() as patch:
        patch.setattr(functional.cl, "enqueue_nd_range_kernel", broken)
        with pytest.raises(RuntimeError, match="enqueue failed"):
            deconvNd(x_dev, W_dev, stride=2)
    assert_close(deconvNd(x_dev, W_dev, stride=2).get(), reference.forward(x, W, stride=2))
    assert replayed[0] == 2


def test_each_replay_returns_new_arrays(queue, replays):
    rng = np.random.default_rng(3)
    x1, x2 = (rng.standard_normal((2, 4, 5, 6)).astype(np.float32) for _ in range(2))
    W = rng.standard_normal((4, 3, 4, 4)).astype(np.float32)
    W_dev = to_device(queue, W)
    outputs = [deconvNd(to_device(queue, x), W_dev, stride=2, pad=1) for x in (x1, x2, x1)]
    assert len(recorded(replays)) == 1
    assert len({id(y.base_data) for y in outputs}) == 3  # none handed out twice while held
    for y, x in zip(outputs, (x1, x2, x1)):
        assert_close(y.get(), reference.forward(x, W, stride=2, pad=1))


def test_an_array_with_an_offset_is_worked_out_each_time(queue, replays):
    """A view with an offset is copied before its kernels (an enqueue a replay would not repeat)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x_dev, W_dev = to_device(queue, x), to_device(queue, W)
    for _ in range(2):
        y = deconvNd(x_dev[1:], W_dev, stride=2)
        assert_close(y.get(), reference.forward(x[1:], W, stride=2))
    assert list(replays.values()) == [None]  # refused when recorded, not recorded again


def test_a_switch_or_a_manager_changed_between_calls_records_anew(queue, replays, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 7, 9)).astype(np.float32)
    W = rng.standard_normal((4, 6, 3, 2)).astype(np.float32)
    x_dev, W_dev = to_device(queue, x), to_device(queue, W)
    expected = reference.forward(x, W, stride=(2, 1), pad=(1, 0))
    assert_close(deconvNd(x_dev, W_dev, stride=(2, 1), pad=(1, 0)).get(), expected)
    monkeypatch.setenv("DECONVND_CL_INDEX_BITS", "64")  # other kernels, other arguments
    for _ in range(2):
        assert_close(deconvNd(x_dev, W_dev, stride=(2, 1), pad=(1, 0)).get(), expected)
    assert len(recorded(replays)) == 2
    other = kernel_manager.KernelManager(DiskCache(None))
    monkeypatch.setattr(kernel_manager, "_manager", other)
    assert_close(deconvNd(x_dev, W_dev, stride=(2, 1), pad=(1, 0)).get(), expected)
    assert other.builds > 0 and len(recorded(other.replays)) == 1  # its own kernels, its own recording


def test_replays_off_records_nothing(queue, replays, monkeypatch):
    monkeypatch.setenv("DECONVND_CL_REPLAY", "0")
    rng = np.random.default_rng(9)
    x = to_device(queue, rng.standard_normal((1, 2, 4)).astype(np.float32))
    W = to_device(queue, rng.standard_normal((2, 2, 3)).astype(np.float32))
    for _ in range(2):
        deconvNd(x, W, stride=2)
    assert not replays


def test_a_call_that_fails_while_recorded_leaves_no_replay(queue, replays, monkeypatch):
    rng = np.random.default_rng(11)
    x = to_device(queue, rng.standard_normal((1, 3, 6, 6)).astype(np.float32))
    W = to_device(queue, rng.standard_normal((3, 2, 4, 4)).astype(np.float32))

    def broken(*args, **kwargs):
        raise RuntimeError("enqueue failed")
    with monkeypatch.context() as patch:
        patch.setattr(functional.cl, "enqueue_nd_range_kernel", broken)
        with pytest.raises(RuntimeError, match="enqueue failed"):
            deconvNd(x, W, stride=2, pad=1)
    assert not replays and replay.recording() is None
    y = deconvNd(x, W, stride=2, pad=1)
    assert_close(y.get(), reference.forward(x.get(), W.get(), stride=2, pad=1))


def test_blend_factors_of_any_real_type_and_sign(queue, replays, monkeypatch):
    """A NumPy scalar, a 0-d array, and -0.0 after 0.0 (equal, but not the same bits in a gradient's zeros):
    each replay gives the bits of the call worked out anew."""
    rng = np.random.default_rng(8)
    x = to_device(queue, rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    gy = to_device(queue, rng.standard_normal((2, 2, 9, 9)).astype(np.float32))
    W = to_device(queue, rng.standard_normal((3, 2, 3, 3)).astype(np.float32))

    def gradients(scale, momentum):
        wgrad = to_device(queue, np.full((3, 2, 3, 3), 0.25, np.float32)) if momentum else None
        return deconvNdBackwardParams(x, gy, W, wgrad=wgrad, scale=scale, momentum=momentum, stride=2)[0].get()
    for scale, momentum in ((0.0, 0), (-0.0, np.int64(0)), (np.float32(0.5), np.array(0.75)), (0.5, 0.75),
                            (Decimal("0.5"), 0.75)):
        replaying = gradients(scale, momentum)
        monkeypatch.setenv("DECONVND_CL_REPLAY", "0")
        worked_out = gradients(scale, momentum)
        monkeypatch.delenv("DECONVND_CL_REPLAY")
        assert np.array_equal(replaying, worked_out) and np.array_equal(np.signbit(replaying), np.signbit(worked_out))


def test_recording_and_replay_hold_no_more_memory_than_the_call(queue, replays, monkeypatch):
    """Blocks go back to the pool where the call lets them go (backward data's packed weights before the weight
    gradient's scratch, say): the pool's peak is the same worked out anew, recorded and replayed."""
    rng = np.random.default_rng(2)
    layer = dcl.Deconv2D(16, 16, 4, stride=2, pad=1)
    x = to_device(queue, rng.standard_normal((2, 16, 8, 8)).astype(np.float32))
    gy = to_device(queue, rng.standard_normal((2, 16, 16, 16)).astype(np.float32))
    pool = memory._pool(queue)
    real, peak = memory.buffer, [0]

    def measured(queue_, nbytes):
        block = real(queue_, nbytes)
        peak[0] = max(peak[0], pool.active_bytes)
        return block
    monkeypatch.setattr(memory, "buffer", measured)

    def backward_peak(mode):
        monkeypatch.setenv("DECONVND_CL_REPLAY", mode)
        layer(x)
        queue.finish()
        base, peak[0] = pool.active_bytes, 0
        layer.backward(gy, scale=0.5, momentum=0.9)
        queue.finish()
        return peak[0] - base
    worked_out = backward_peak("0")
    assert [backward_peak("1"), backward_peak("1")] == [worked_out, worked_out]  # recorded, then replayed


def assert_same_bits(runs):
    for results in zip(*runs):
        for other in results[1:]:
            assert np.array_equal(results[0], other), "a replayed call's bits differ from the call worked out anew"


@pytest.mark.parametrize("layer", ROW_LAYERS[:3], ids=["k4s2p1", "dilated-postpad", "gaps"])
def test_calls_split_along_rows_replay_their_chunks(queue, replays, replayed, monkeypatch, layer):
    """Chunks of rows go through the functional layer as calls of their own: recorded, then replayed."""
    conv, x_shape, w_shape, per_strategy = layer
    problem = Problem.create(queue, x_shape, w_shape, np.dtype(np.float32),
                             **dict(dict(stride=1, pad=0, dilation=1, postpad=0, groups=1), **conv))
    monkeypatch.setenv("DECONVND_CL_SCRATCH_LIMIT",
                       per_strategy[settings.forced_strategy() or ("cpu" if problem.on_cpu else "gpu")][0])
    operands = random_operands(conv, x_shape, w_shape, seed=7)
    runs = [all_passes(queue, conv, *operands) for _ in range(2)]
    assert replayed[0] > 0
    monkeypatch.setenv("DECONVND_CL_REPLAY", "0")
    assert_same_bits(runs + [all_passes(queue, conv, *operands)])


def test_a_device_group_replays_each_part(queue, replays, replayed, monkeypatch):
    parts = sub_device_queues(queue)
    x, W, b, gy, _, _ = random_operands(dict(stride=2, pad=1), (7, 6, 5, 6), (6, 4, 4, 4), seed=3)

    def passes():
        xd, Wd, bd, gyd = (to_device(parts[0], a) for a in (x, W, b, gy))
        y = deconvNd(xd, Wd, bd, stride=2, pad=1, devices=parts)
        gx = deconvNdBackwardData(gyd, Wd, xd, stride=2, pad=1, devices=parts)
        wgrad, bgrad = deconvNdBackwardParams(xd, gyd, Wd, bd, stride=2, pad=1, devices=parts)
        return y.get(), gx.get(), wgrad.get(), bgrad.get()
    runs = [passes() for _ in range(2)]
    assert replayed[0] > 0
    monkeypatch.setenv("DECONVND_CL_REPLAY", "0")
    runs.append(passes())
    assert_close(runs[0][0], reference.forward(x, W, b, stride=2, pad=1))
    assert_same_bits(runs)
