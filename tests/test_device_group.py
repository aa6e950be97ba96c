"""Several devices in one process (DeviceGroup): the batch shared by the devices' shares, forward and input
gradients bitwise those of one device, parameter gradients summed in device order (within float32 rounding of one
device, the same bits on every run); on two sub-devices of the test device (device fission) and, where a second
OpenCL platform is installed, across two platforms; bad groups are ModuleErrors."""

import numpy as np
import pyopencl as cl
import pytest

import deconvnd_cl as dcl
from deconvnd_cl import reference
from deconvnd_cl.device import all_devices, create_queue, is_simulator, keep_context_alive
from conftest import assert_close, to_device

CONV = dict(stride=2, pad=1)
X_SHAPE, W_SHAPE, B_SHAPE = (7, 6, 5, 6), (6, 4, 4, 4), (1, 4, 1, 1)


def sub_device_queues(queue):
    """Queues on two one-compute-unit sub-devices of the test device, in one context."""
    device = queue.device
    if device.max_compute_units < 2 or cl.device_partition_property.EQUALLY not in (device.partition_properties or []):
        pytest.skip(f"{device.name.strip()} cannot be split into sub-devices of one compute unit")
    subs = device.create_sub_devices([cl.device_partition_property.EQUALLY, 1])[:2]
    context = cl.Context(subs)
    return [keep_context_alive(cl.CommandQueue(context, d), context) for d in subs]


@pytest.fixture(scope="module")
def sub_queues(queue):
    return sub_device_queues(queue)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(3)
    x, W, b = rng.standard_normal(X_SHAPE), rng.standard_normal(W_SHAPE), rng.standard_normal(B_SHAPE)
    gy = rng.standard_normal(reference.forward(x, W, b, **CONV).shape)
    wgrad0, bgrad0 = rng.standard_normal(W_SHAPE), rng.standard_normal(B_SHAPE)
    return x, W, b, gy, wgrad0, bgrad0


def all_passes(home, arrays, devices):
    x, W, b, gy, wgrad0, bgrad0 = (to_device(home, a) for a in arrays)
    y = dcl.deconvNd(x, W, b, devices=devices, **CONV)
    gx = dcl.deconvNdBackwardData(gy, W, x, devices=devices, **CONV)
    wg, bg = dcl.deconvNdBackwardParams(x, gy, W, b, wgrad=wgrad0, bgrad=bgrad0, scale=0.5, momentum=2.0,
                                        devices=devices, **CONV)
    return [a.get() for a in (y, gx, wg, bg)]


def check_group(home, arrays, devices):
    """The group's results: forward and input gradient bitwise one device's, parameter gradients within float32
    rounding of the reference, the same bits on a second run."""
    single = all_passes(home, arrays, None)
    first, second = all_passes(home, arrays, devices), all_passes(home, arrays, devices)
    x, W, b, gy, wgrad0, bgrad0 = arrays
    assert_close(first[0], reference.forward(x, W, b, **CONV), what="forward")
    for name, one, group in zip(("forward", "input gradient"), single[:2], first[:2]):
        assert np.array_equal(one, group), f"{name}: the group's result differs from one device's"
    dW, db = reference.backward_params(x, gy, W.shape, **CONV)
    assert_close(first[2], 0.5 * dW + 2.0 * wgrad0, what="W grad")
    assert_close(first[3], 0.5 * db + 2.0 * bgrad0, what="b grad")
    for a, c in zip(first, second):
        assert np.array_equal(a, c), "a group's results differ from run to run"


@pytest.mark.parametrize("shares", [None, (0.25, 0.75), (1.0, 0.0)], ids=["equal", "uneven", "one-idle"])
def test_sub_devices_share_the_batch(sub_queues, arrays, shares):
    group = dcl.DeviceGroup(sub_queues, shares)
    assert sum(b1 - b0 for _, b0, b1 in group.parts(X_SHAPE[0])) == X_SHAPE[0]
    check_group(sub_queues[0], arrays, group)


def test_group_of_the_default_device_and_its_sub_devices(queue, sub_queues, arrays):
    """Queues of other contexts take their parts through the host."""
    check_group(queue, arrays, [queue] + sub_queues)


def test_more_devices_than_batch_items(sub_queues):
    x, W = np.ones((1, 2, 3, 3)), np.ones((2, 3, 2, 2))
    y = dcl.deconvNd(to_device(sub_queues[0], x), to_device(sub_queues[0], W), stride=2, devices=sub_queues)
    assert_close(y.get(), reference.forward(x, W, stride=2))


def test_module_on_a_group(queue, sub_queues, arrays):
    x, W, b, gy, _, _ = arrays
    home = sub_queues[0]
    dcl.set_default_queue(home)  # the module's parameters are made on the default queue
    try:
        layer = dcl.Deconv2D(W_SHAPE[0], W_SHAPE[1], 4, **CONV)
    finally:
        dcl.set_default_queue(queue)
    layer.W.set(W.astype(np.float32))
    layer.b.set(b.astype(np.float32))
    layer.setDevices(dcl.DeviceGroup(sub_queues, (0.5, 0.5)))
    layer.optimizeForShape(X_SHAPE, memlimit=4096)  # small enough to split each device's part along the batch too
    assert_close(layer(to_device(home, x)).get(), reference.forward(x, W, b, **CONV), what="forward")
    gx = layer.backward(to_device(home, gy)).get()
    assert_close(gx, reference.backward_data(gy, W, X_SHAPE[2:], **CONV), what="input grad")
    dW, db = reference.backward_params(x, gy, W.shape, **CONV)
    assert_close(layer.vars["W"].grad.get(), dW, what="W grad")
    assert_close(layer.vars["b"].grad.get(), db, what="b grad")


def test_measured_shares(sub_queues):
    """Measured shares are valid shares (their values depend on the machine's load: none is asserted)."""
    shares = dcl.measure_shares(sub_queues, repeats=1)
    assert len(shares) == 2 and all(s >= 0 for s in shares) and abs(sum(shares) - 1) < 1e-9
    group = dcl.measured_group(sub_queues, repeats=1)
    assert sum(b1 - b0 for _, b0, b1 in group.parts(9)) == 9


def other_platform_queue(queue):
    for device in all_devices():
        if not is_simulator(device) and device.platform.int_ptr != queue.device.platform.int_ptr:
            return create_queue(device)
    pytest.skip("one OpenCL platform here (CI runs this test beside Intel's CPU runtime)")


def test_two_platforms(queue, arrays):
    check_group(queue, arrays, dcl.DeviceGroup([queue, other_platform_queue(queue)], (0.5, 0.5)))


def test_bad_groups(queue, sub_queues):
    x = to_device(queue, np.ones((2, 2, 3, 3)))
    W = to_device(queue, np.ones((2, 2, 2, 2)))
    bad = [
        (lambda: dcl.DeviceGroup([]), "non-empty list"),
        (lambda: dcl.DeviceGroup(queue), "non-empty list"),
        (lambda: dcl.DeviceGroup([queue, "gpu"]), "queues[1]"),
        (lambda: dcl.DeviceGroup([queue, queue]), "twice"),
        (lambda: dcl.DeviceGroup(sub_queues, (0.5,)), "one fraction per queue"),
        (lambda: dcl.DeviceGroup(sub_queues, (0.5, 0.6)), "sum to 1.1"),
        (lambda: dcl.DeviceGroup(sub_queues, (-0.5, 1.5)), "shares[0]"),
        (lambda: dcl.DeviceGroup(sub_queues, (float("nan"), 1.0)), "shares[0]"),
        (lambda: dcl.DeviceGroup(sub_queues, (True, 0)), "shares[0]"),
        (lambda: dcl.deconvNd(x, W, stride=2, devices=sub_queues), "another OpenCL context"),
        (lambda: dcl.deconvNdBackwardData(x, W, stride=2, devices=sub_queues), "another OpenCL context"),
        (lambda: dcl.Deconv2D(2, 2, 2, stride=2).setDevices(sub_queues), "another OpenCL context"),
    ]
    for call, words in bad:
        with pytest.raises(dcl.ModuleError, match=words.replace("[", r"\[").replace("]", r"\]")):
            call()

