"""The file contract: safe .npy reading, atomic writes, images and folders."""

import io as _io
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from ddpmctl import io
from ddpmctl.errors import InputError


def test_npy_round_trip_and_mmap(tmp_path):
    a = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    p = tmp_path / "a.npy"
    io.save_npy(p, a)
    b = io.read_npy(p)
    assert isinstance(b, np.memmap) and not b.flags.writeable
    np.testing.assert_array_equal(b, a)
    assert [f for f in os.listdir(tmp_path)] == ["a.npy"]  # no temp file left


@settings(max_examples=40, deadline=None)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=5),
    )
)
def test_npy_round_trip_property(tmp_path_factory, arr):
    p = tmp_path_factory.mktemp("h") / "x.npy"
    io.save_npy(p, arr)
    np.testing.assert_array_equal(io.read_npy(p), arr)


def test_refuses_pickled_truncated_huge_and_garbage(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="objects"):
        io.read_npy(obj)
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((100, 10), np.float32))
    data = good.read_bytes()
    trunc = tmp_path / "trunc.npy"
    trunc.write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated"):
        io.read_npy(trunc)
    huge = tmp_path / "huge.npy"
    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**7)})
    huge.write_bytes(buf.getvalue() + b"\0" * 16)
    with pytest.raises(InputError, match="truncated"):
        io.read_npy(huge)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(InputError, match="not an .npy"):
        io.read_npy(junk)
    with pytest.raises(InputError, match="no such file"):
        io.read_npy(tmp_path / "missing.npy")


def test_image_interpretation():
    u8 = np.full((2, 4, 4), 255, np.uint8)
    im = io.as_float_images(u8, "x")
    assert im.shape == (2, 1, 4, 4) and im.dtype == np.float32 and im.max() == 1.0
    with pytest.raises(InputError, match="NaN"):
        io.as_float_images(np.full((1, 1, 2, 2), np.nan, np.float32), "x")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        io.as_float_images(np.full((1, 1, 2, 2), 3.0, np.float32), "x")
    with pytest.raises(InputError, match="shape"):
        io.as_float_images(np.zeros((2, 2, 2, 2, 2), np.float32), "x")
    with pytest.raises(InputError, match="N = 0"):
        io.as_float_images(np.zeros((0, 1, 2, 2), np.float32), "x")


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "out.npy"
    io.save_npy(p, np.ones(3))
    with pytest.raises(RuntimeError):
        with io.atomic_write(p) as f:
            f.write(b"partial")
            raise RuntimeError("crash")
    np.testing.assert_array_equal(io.read_npy(p), np.ones(3))
    assert os.listdir(tmp_path) == ["out.npy"]


def test_folder_and_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = (rng.random((3, 1, 6, 5)) * 255).round() / 255
    folder = tmp_path / "imgs"
    io.save_folder(folder, imgs)
    back = io.read_images(folder)
    np.testing.assert_allclose(back, imgs, atol=1e-6)
    Image.new("L", (7, 7)).save(folder / "odd.png")
    with pytest.raises(InputError, match="differs"):
        io.read_images(folder)
    (tmp_path / "fake.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="not a readable image"):
        io.read_images(tmp_path / "fake.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no PNG"):
        io.read_images(empty)
    io.save_grid(tmp_path / "g.png", imgs)
    assert Image.open(tmp_path / "g.png").size[0] > 5
