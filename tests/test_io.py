import numpy as np
import pytest
from PIL import Image

from hrcam.io import ImageLoadError, decode_side, find_images, load_image, resize_for_network


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("L", lambda: Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), "L")),
        ("P", lambda: Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).convert("P")),
        ("RGBA", lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 0))),
        ("I;16", lambda: Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)),
        ("CMYK", lambda: Image.new("CMYK", (8, 8), (0, 0, 0, 0))),
        ("1", lambda: Image.new("1", (8, 8), 1)),
    ],
)
def test_any_mode_becomes_rgb(tmp_path, mode, make):
    image = make()
    path = tmp_path / f"img_{mode.replace(';', '')}.{'tif' if mode in ('I;16', 'CMYK') else 'png'}"
    image.save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (8, 8)


def test_transparent_pixels_go_white_and_16bit_keeps_its_range(tmp_path):
    rgb = np.asarray(load_image(Image.new("RGBA", (4, 4), (255, 0, 0, 0))))
    assert (rgb == 255).all()  # fully transparent red over white is white
    sixteen = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    gray = np.asarray(load_image(sixteen))[..., 0]
    assert gray.tolist() == [[0, 255]]  # stretched, not clipped at 255


def test_bad_files_are_named(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a picture")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg: not a recognised image"):
        load_image(tmp_path / "notes.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "ok.jpg"
    )
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.jpg: truncated or corrupt"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)


def test_resize_for_network_keeps_pixels_at_its_size_and_stretches_to_others():
    pixels = np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    same = resize_for_network(Image.fromarray(pixels), (30, 50))
    assert same.dtype == np.uint8 and np.array_equal(same, pixels)
    assert resize_for_network(pixels, (20, 40)).shape == (20, 40, 3)
    assert resize_for_network(pixels[..., 0], (8, 8)).shape == (8, 8, 3)  # gray to RGB
    floats = resize_for_network(pixels / 255.0, (30, 50))  # floats in [0, 1]
    assert np.abs(floats.astype(int) - pixels).max() <= 1
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        resize_for_network(np.zeros((2, 3, 4, 5)), (8, 8))


def test_decode_side_covers_the_display_and_the_network():
    assert decode_side(224) == 448 and decode_side((600, 300)) == 600


def test_find_images_walks_folders_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b" / "c.JPG").write_bytes(b"")
    (tmp_path / "b" / "notes.txt").write_text("")
    (tmp_path / ".hidden.png").write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images([tmp_path])]
    assert found == ["a.png", "b/c.JPG"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(find_images([tmp_path / "nowhere"]))


def test_a_decompression_bomb_is_refused_saying_why(tmp_path):
    """A PNG whose header claims 20,000 × 20,000 pixels is refused before any decoding."""
    import struct
    import zlib

    Image.new("RGB", (1, 1)).save(tmp_path / "small.png")
    data = bytearray((tmp_path / "small.png").read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 20_000, 20_000)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match=r"bomb\.png: refused.*decompression bomb.*downscale"):
        load_image(tmp_path / "bomb.png")
