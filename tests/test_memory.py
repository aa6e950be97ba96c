"""The per-queue memory pool (deconvnd_cl.memory): blocks come back to later calls, results stay right, and
release_held gives the held blocks back."""

import numpy as np

import deconvnd_cl as dcl
from deconvnd_cl import memory, reference
from conftest import assert_close, to_device


def _layer(queue, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, 9, 10))
    W = rng.standard_normal((6, 5, 4, 4))
    gy = rng.standard_normal((2, 5, 18, 20))
    return x, W, gy, (to_device(queue, x), to_device(queue, W), to_device(queue, gy))


def _run(xd, Wd, gyd):
    y = dcl.deconvNd(xd, Wd, stride=2, pad=1)
    gx = dcl.deconvNdBackwardData(gyd, Wd, xd, stride=2, pad=1)
    wg, _ = dcl.deconvNdBackwardParams(xd, gyd, Wd, stride=2, pad=1)
    return y, gx, wg


def test_repeated_calls_reuse_the_pool_and_stay_correct(queue):
    x, W, gy, dev = _layer(queue, 1)
    want = (reference.forward(x, W, None, stride=2, pad=1), reference.backward_data(gy, W, x.shape[2:], 2, 1),
            reference.backward_params(x, gy, W.shape, 2, 1)[0])
    for name, got, expected in zip(("forward", "input grad", "W grad"), _run(*dev), want):
        assert_close(got.get(), expected, what=name)
    del got
    pool, managed = memory._pool(queue), []
    for _ in range(6):  # results dropped each time: their blocks and the scratch go back to the pool
        outs = _run(*dev)
        queue.finish()
        del outs
        managed.append(pool.managed_bytes)
    assert managed[0] > 0, "the library took no memory from the queue's pool"
    assert len(set(managed)) == 1, f"the pool grew although every call asked for the same sizes: {managed}"
    for name, got, expected in zip(("forward", "input grad", "W grad"), _run(*dev), want):
        assert_close(got.get(), expected, what=name)


def test_release_held_returns_blocks_and_later_calls_work(queue):
    x, W, gy, dev = _layer(queue, 2)
    _run(*dev)
    queue.finish()
    pool = memory._pool(queue)
    assert pool.held_blocks > 0
    freed = memory.release_held()
    assert freed > 0 and pool.held_blocks == 0
    assert memory._pool(queue) is not pool, "the pools were not forgotten"
    y = dcl.deconvNd(dev[0], dev[1], stride=2, pad=1)
    assert_close(y.get(), reference.forward(x, W, None, stride=2, pad=1), what="forward after release")
