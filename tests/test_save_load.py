"""save/load in PuzzleLib's HDF5 layout."""

import numpy as np
import pytest

import deconvnd_cl as dcl

h5py = pytest.importorskip("h5py")


def test_round_trip(queue, tmp_path):
    layer = dcl.Deconv2D(3, 4, size=3, stride=2, name="up1")
    layer.b.set(np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1))
    path = tmp_path / "w.hdf"
    layer.save(path)
    other = dcl.Deconv2D(3, 4, size=3, stride=2, name="up1")
    other.load(path)
    np.testing.assert_array_equal(other.W.get(), layer.W.get())
    np.testing.assert_array_equal(other.b.get(), layer.b.get())
    with h5py.File(path, "r") as f:
        assert set(f["links"]) == {"up1.W", "up1.b"}
        assert f["params"][str(int(f["links"]["up1.W"][()]))].shape == (3, 4, 3, 3)


def test_load_a_file_written_by_puzzlelib_layout(queue, tmp_path):
    """A file as PuzzleLib writes it (made here with h5py directly), with another module name."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((1, 3, 1)).astype(np.float32)
    path = tmp_path / "puzzlelib.hdf"
    with h5py.File(path, "w") as f:
        f.create_group("params")
        f.create_group("links")
        f["params"].create_dataset("0", data=b)
        f["params"].create_dataset("1", data=W)
        f["links"].create_dataset("deconv.b", data=0)
        f["links"].create_dataset("deconv.W", data=1)
    layer = dcl.Deconv1D(2, 3, size=4)
    layer.load(path)
    np.testing.assert_array_equal(layer.W.get(), W)
    np.testing.assert_array_equal(layer.b.get(), b)


def test_load_mismatch_leaves_weights_untouched(queue, tmp_path):
    path = tmp_path / "w.hdf"
    dcl.Deconv1D(2, 3, size=4, name="a").save(path)
    layer = dcl.Deconv1D(2, 3, size=5, name="a")
    before = layer.W.get(), layer.b.get()
    with pytest.raises(dcl.ModuleError, match="a.W has shape \\(2, 3, 4\\) \\(expected: \\(2, 3, 5\\)\\)"):
        layer.load(path)
    np.testing.assert_array_equal(layer.W.get(), before[0])
    with pytest.raises(dcl.ModuleError, match="cannot open"):
        layer.load(tmp_path / "missing.hdf")
