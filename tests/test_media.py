"""The input policy: every bad input gets a clear InputError, every odd format becomes 8-bit RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backends.errors import InputError, VideoError, scrub_paths
from backends.media import MAX_SIDE, STILL_IMAGE_MESSAGE, load_image, read_video, side_by_side, write_video
from tests.media_factories import (
    audio_only,
    corrupt_video,
    pixel_bomb,
    still_image,
    truncated_jpeg,
    upload_path,
    zero_frame_video,
)


def _png_bytes(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_not_an_image(tmp_path: Path):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not pixels")
    with pytest.raises(InputError, match=r"^This file is not an image Face Lab can read"):
        load_image(path)


def test_empty_and_missing_files(tmp_path: Path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="^The image file is empty.$"):
        load_image(empty)
    with pytest.raises(InputError, match="^The image file could not be found.$"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="^Please upload a photo.$"):
        load_image(None, what="photo")


def test_truncated_jpeg(tmp_path: Path):
    data = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path):
    path = pixel_bomb(tmp_path / "bomb.png", 9000, 5000)  # 45 Mpx but a tiny file
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value) == "The image is 9000×5000 px, too large to process safely (limit 40 megapixels)."


def test_bomb_messages_give_size_and_limit_past_pils_own_limits(tmp_path: Path):
    # 100 Mpx is past PIL's warning (89 Mpx); 200 Mpx is past its hard refusal (179 Mpx).
    with pytest.raises(InputError) as info:
        load_image(pixel_bomb(tmp_path / "warn.png", 10_000, 10_000), what="photo")
    assert str(info.value) == "The photo is 10000×10000 px, too large to process safely (limit 40 megapixels)."
    with pytest.raises(InputError) as info:
        load_image(pixel_bomb(tmp_path / "refuse.png", 20_000, 10_000), what="photo")
    assert str(info.value) == "The photo has 200 megapixels, too large to process safely (limit 40 megapixels)."
    with pytest.raises(InputError) as info:
        load_image(np.zeros((8000, 6000), np.uint8))
    assert str(info.value) == "The image is 6000×8000 px, too large to process safely (limit 40 megapixels)."


@pytest.mark.parametrize(
    "mode,value",
    [("RGBA", (10, 20, 30, 255)), ("LA", (90, 255)), ("L", 77), ("CMYK", (0, 128, 0, 0)), ("P", 5), ("1", 1)],
)
def test_modes_become_rgb(mode, value):
    loaded = load_image(Image.new(mode, (40, 30), value))
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == (40, 30)


def test_transparent_pixels_composite_on_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(img).array[0, 0].tolist() == [255, 255, 255]


def test_16_bit_grayscale_keeps_its_range(tmp_path: Path):
    arr = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    rgb = load_image(path).array
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    assert rgb.min() == 0 and rgb.max() == 255


def test_float_array_in_unit_range():
    rgb = load_image(np.full((8, 8, 3), 0.5, np.float32)).array
    assert rgb.dtype == np.uint8 and int(rgb[0, 0, 0]) == 128


def test_exif_orientation_is_applied(tmp_path: Path):
    img = Image.new("RGB", (60, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes())
    assert load_image(path).image.size == (20, 60)


def test_long_side_is_capped_with_a_notice():
    loaded = load_image(Image.new("RGB", (2560, 1000)))
    assert loaded.image.size == (MAX_SIDE, 500)
    assert loaded.notices == [f"The image was 2560×1000 px; it was scaled down to {MAX_SIDE}×500 px."]


def test_wrong_channel_count():
    with pytest.raises(InputError, match="has 2 channels"):
        load_image(np.zeros((8, 8, 2), np.uint8))


# --- videos -----------------------------------------------------------------


def _frames(n: int, size=(64, 48)) -> list[np.ndarray]:
    w, h = size
    return [np.full((h, w, 3), (i * 7) % 255, np.uint8) for i in range(n)]


def test_video_round_trip(tmp_path: Path):
    path = write_video(_frames(12), tmp_path / "clip.mp4", fps=12)
    video = read_video(path)
    assert len(video) == 12
    assert video.frames[0].shape == (48, 64, 3)
    assert video.fps == pytest.approx(12.0)
    assert video.notices == []


def test_video_is_capped_with_a_notice(tmp_path: Path):
    path = write_video(_frames(40), tmp_path / "long.mp4", fps=10)
    video = read_video(path, max_seconds=2.0)
    assert len(video) == 20
    assert video.notices == ["Only the first 20 frames (2.0 s) were used; the limit is 2 s or 250 frames."]


def test_audio_only_file(tmp_path: Path):
    with pytest.raises(VideoError, match="^This file is an audio-only file: it has no video track.$"):
        read_video(audio_only(tmp_path / "voice.m4a"))


def test_zero_frame_video(tmp_path: Path):
    with pytest.raises(VideoError, match="^The video has no frames.$"):
        read_video(zero_frame_video(tmp_path / "empty.mp4"))


def test_corrupt_video(tmp_path: Path):
    with pytest.raises(VideoError):
        read_video(corrupt_video(tmp_path / "broken.mp4"))


def test_media_errors_never_show_server_paths(tmp_path: Path):
    """PyAV's message carries the upload's full server path; the user's message must not."""
    path = corrupt_video(upload_path(tmp_path, "clip.mp4"))
    with pytest.raises(VideoError) as info:
        read_video(path)
    assert str(info.value) == "This file is not a video Face Lab can read (Invalid data found when processing input)."
    with pytest.raises(InputError) as info:
        load_image(truncated_jpeg(upload_path(tmp_path, "cut.jpg")))
    assert "gradio" not in str(info.value) and str(tmp_path) not in str(info.value)


def test_scrub_paths_keeps_fractions_and_urls():
    text = "Invalid data: '/tmp/gradio/ab12/clip.mp4' (10 s / 250 frames, 2/255) see https://hf.co/a/b"
    assert scrub_paths(text) == "Invalid data: '<file>' (10 s / 250 frames, 2/255) see https://hf.co/a/b"
    assert scrub_paths("cannot open /root/.cache/facelab/x.pt, retry") == "cannot open <file>, retry"


def test_side_by_side_common_height():
    out = side_by_side([np.zeros((100, 50, 3), np.uint8), np.zeros((200, 200, 3), np.uint8)], height=100)
    assert out.shape == (100, 150, 3)


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "photo.webp", "photo.gif", "cut.jpg"])
def test_still_images_are_not_videos(tmp_path: Path, name: str):
    path = truncated_jpeg(tmp_path / name) if name == "cut.jpg" else still_image(tmp_path / name)
    with pytest.raises(VideoError) as info:
        read_video(path)
    assert str(info.value) == STILL_IMAGE_MESSAGE
