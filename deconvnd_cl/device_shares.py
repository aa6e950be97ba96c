"""Measuring how a batch should be shared among devices: each device times one probe layer, and takes a share of
the batch in proportion to its speed. Measured once, the shares are then fixed, so the group's results are the
same on every run (give the shares explicitly to have them the same in every process)."""

import time

import numpy as np
import pyopencl.array as cl_array

from .device_group import DeviceGroup
from .functional import deconvNd

# A small typical layer: a stride-2 upsampling of 32 maps, batch 4 of 16x16.
PROBE_SHAPE, PROBE_WEIGHTS = (4, 32, 16, 16), (32, 32, 4, 4)


def probe_seconds(queue, repeats=3):
    """The median time of the probe layer's forward on `queue` (after one call that builds its kernels)."""
    rng = np.random.default_rng(0)
    x = cl_array.to_device(queue, rng.standard_normal(PROBE_SHAPE, np.float32))
    W = cl_array.to_device(queue, rng.standard_normal(PROBE_WEIGHTS, np.float32))
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        deconvNd(x, W, stride=2, pad=1)
        queue.finish()
        if i:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_shares(queues, repeats=3):
    """Shares in proportion to each device's speed on the probe layer, rounded to thousandths, the rounding's
    remainder given to the largest share (so they sum to 1 and none is negative)."""
    DeviceGroup(queues)  # the queues checked first
    speeds = [1.0 / probe_seconds(queue, repeats) for queue in queues]
    shares = [round(s / sum(speeds), 3) for s in speeds]
    largest = shares.index(max(shares))
    shares[largest] = round(shares[largest] + 1.0 - sum(shares), 3)
    return tuple(shares)


def measured_group(queues, repeats=3):
    """A DeviceGroup of `queues` with measured shares."""
    return DeviceGroup(queues, measure_shares(queues, repeats))
