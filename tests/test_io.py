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


# --------------------------------------------------------------------------------------------
# the one image reader (io.read_image), as folder import and fid sources use it

GREY_FILES = [("1", "png"), ("L", "png"), ("LA", "png"), ("I;16", "png"), ("I;16B", "tif"), ("I", "tif"), ("F", "tif")]
COLOUR_FILES = [("RGB", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "jpg")]


def _three_readers(folder, size: int) -> list[np.ndarray]:
    """The images of ``folder`` as io.read_array, make-data folder and fid's folder source read them."""
    from ddpmctl import datasets
    from ddpmctl.fid import open_source

    source = open_source(folder)
    return [
        io.read_array(folder),
        datasets.import_folder(folder, size)[0],
        np.concatenate(list(source.batches(100))),
    ]


@pytest.mark.parametrize("mode, ext", GREY_FILES + COLOUR_FILES)
def test_grey_modes_are_one_channel_everywhere(tmp_path, mode, ext):
    Image.new(mode, (6, 6)).save(tmp_path / f"a.{ext}")
    channels = 1 if (mode, ext) in GREY_FILES else 3
    assert io.is_grey_mode(Image.open(tmp_path / f"a.{ext}").mode) == (channels == 1)
    assert io.image_channels([tmp_path / f"a.{ext}"]) == channels
    for x in _three_readers(tmp_path, 6):
        assert x.shape == (1, channels, 6, 6) and x.dtype == np.float32


def test_16_bit_keeps_its_precision_in_every_reader(tmp_path):
    """A 16-bit PNG and a big-endian 16-bit TIFF: values / 65535, not clipped to 8 bits (io's old
    reader turned every value above 255 into 1.0, and read I;16B as colour)."""
    values = np.array([[0, 1000, 40000, 65535]] * 4, np.uint16)
    Image.fromarray(values).save(tmp_path / "a.png")
    Image.frombytes("I;16B", (4, 4), values.astype(">u2").tobytes()).save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I;16B"
    for x in _three_readers(tmp_path, 4):
        assert x.shape == (2, 1, 4, 4)
        np.testing.assert_allclose(x[:, 0], np.stack([values, values]) / 65535.0, rtol=1e-6)
    assert np.allclose(io.read_image(tmp_path / "a.png", channels=3), values / 65535.0, rtol=1e-6)  # grey repeated


def test_float_images_keep_their_values_clipped_to_0_1(tmp_path):
    values = np.array([[-0.5, 0.25, 0.7, 3.0]] * 4, np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(io.read_image(tmp_path / "f.tif")[0], np.clip(values, 0, 1))


def test_palette_images_are_read_through_their_palette(tmp_path):
    im = Image.new("P", (4, 2))
    im.putpalette([0, 0, 0, 200, 100, 50] + [0] * (256 * 3 - 6))
    im.putdata([0, 1, 1, 0, 1, 1, 1, 1])
    im.save(tmp_path / "p.png")
    rgb = io.read_image(tmp_path / "p.png")
    assert rgb.shape == (3, 2, 4)
    np.testing.assert_array_equal(rgb[:, 0, 1], np.array([200, 100, 50], np.float32) / 255)
    np.testing.assert_array_equal(rgb[:, 0, 0], 0)
    grey = io.read_image(tmp_path / "p.png", channels=1)  # ITU-R 601 luma of the palette colour
    assert grey[0, 0, 1] == pytest.approx(round(0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, abs=1 / 255)
    x = io.read_array(tmp_path)
    np.testing.assert_array_equal(x[0], rgb)


def test_exif_orientation_is_applied_by_every_reader(tmp_path):
    a = np.arange(32, dtype=np.uint8).reshape(4, 8) * 8
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90 degrees clockwise
    Image.fromarray(a).save(tmp_path / "o.png", exif=exif)
    turned = np.rot90(a, -1) / np.float32(255)  # (8, 4)
    read_array, imported, fid_read = _three_readers(tmp_path, 4)
    np.testing.assert_array_equal(read_array[0, 0], turned)
    np.testing.assert_array_equal(fid_read[0, 0], turned)
    np.testing.assert_array_equal(imported[0, 0], turned[2:6])  # the centre square of the turned image


def test_folder_import_and_fid_read_the_same_pixels(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "b.png")
    read_array, imported, fid_read = _three_readers(tmp_path, 8)
    assert imported.shape == (2, 3, 8, 8)  # one colour image: the grey one is repeated to 3 channels
    np.testing.assert_array_equal(imported[0], read_array[0])
    np.testing.assert_array_equal(imported, fid_read)
