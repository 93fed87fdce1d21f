"""Contract of the reenactment endpoints, driven through gradio_client on stand-in weights."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from backends.media import read_video, write_video
from tests.app_server import running_app

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    with running_app(standin=True) as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reenact")
    astronaut = skimage_data.astronaut()
    source, driving = folder / "source.png", folder / "driving.png"
    Image.fromarray(astronaut).save(source)
    Image.fromarray(np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])).save(driving)
    frames = [np.ascontiguousarray(astronaut[d : d + 448, d : d + 448]) for d in (0, 32)]
    video = write_video(frames, folder / "driving.mp4", fps=8)
    wall = folder / "wall.png"
    Image.new("RGB", (320, 240), (120, 130, 140)).save(wall)
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    wall_video = write_video([np.asarray(Image.open(wall))] * 4, folder / "wall.mp4", fps=8)
    return {
        "source": source, "driving": driving, "video": video, "wall": wall, "broken": broken, "wall_video": wall_video,
    }


def test_endpoints_are_named(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert {"/reenact_image", "/reenact_video"} <= set(api["named_endpoints"])


def test_reenact_image(client, files):
    result, slider, stages, png, details = client.predict(
        handle_file(files["source"]),
        handle_file(files["driving"]),
        "stylemask",
        True,
        False,
        api_name="/reenact_image",
    )
    assert Image.open(result).size == (1024, 1024)
    assert Image.open(result).format == "WEBP"  # a compact preview; the download below stays lossless
    before, after = slider
    assert Image.open(before).size == (1024, 1024) and Image.open(after).size == (1024, 1024)
    assert len(stages) == 5
    assert Image.open(png).format == "PNG" and Image.open(png).size == (1024, 1024)
    assert details["mode"] == "image" and details["standin"] is True
    assert details["truncation_psi"] == 0.7
    assert any("Stand-in weights" in n for n in details["notices"])


def test_reenact_video(client, files):
    comparison, result, downloads, stages, details = client.predict(
        handle_file(files["source"]),
        handle_file(files["video"]),
        "stylemask",
        False,
        False,
        api_name="/reenact_video",
    )
    comparison_path = comparison["video"] if isinstance(comparison, dict) else comparison
    result_path = result["video"] if isinstance(result, dict) else result
    assert len(read_video(result_path)) == 2
    assert len(read_video(comparison_path, max_side=4096)) == 2
    assert len(downloads) == 2 and all(str(p).endswith(".mp4") for p in downloads)
    assert len(stages) == 3
    assert details["mode"] == "video" and details["standin"] is True
    assert details["frames"] == 2 and details["frames_without_face"] == 0 and details["truncation_psi"] == 1.0


def test_no_face_is_a_clear_error(client, files):
    with pytest.raises(AppError, match=r"^No face was found in the source photo\. "):
        client.predict(
            handle_file(files["wall"]),
            handle_file(files["driving"]),
            "stylemask",
            True,
            False,
            api_name="/reenact_image",
        )


def test_corrupt_video_is_a_clear_error(client, files):
    with pytest.raises(AppError, match=r"(not a video Face Lab can read|damaged|no frames)"):
        client.predict(
            handle_file(files["source"]),
            handle_file(files["broken"]),
            "stylemask",
            True,
            False,
            api_name="/reenact_video",
        )


def test_video_endpoint_refuses_still_images(client, files):
    from backends.media import STILL_IMAGE_MESSAGE

    with pytest.raises(AppError) as raised:
        client.predict(
            handle_file(files["source"]), handle_file(files["driving"]), "stylemask", True, False,
            api_name="/reenact_video",
        )
    assert raised.value.message == STILL_IMAGE_MESSAGE


def test_failed_requests_leave_no_results_folder(client, files, tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_RESULTS_DIR", str(tmp_path / "results"))
    for driving, api in ((files["broken"], "/reenact_video"), (files["wall"], "/reenact_image")):
        with pytest.raises(AppError):
            client.predict(handle_file(files["source"]), handle_file(driving), "stylemask", True, False, api_name=api)
    with pytest.raises(AppError):  # a video without a face fails after decoding, before any result
        client.predict(
            handle_file(files["source"]), handle_file(files["wall_video"]), "stylemask", True, False,
            api_name="/reenact_video",
        )
    made = list((tmp_path / "results").glob("*")) if (tmp_path / "results").exists() else []
    assert made == []


def test_missing_driving(client, files):
    # The other engines' contracts (stand-in HyperReenact and GAN directions) are in
    # tests/test_reenactment_engines_contract.py.
    with pytest.raises(AppError, match="^Please upload a driving photo"):
        client.predict(handle_file(files["source"]), None, "stylemask", True, False, api_name="/reenact_image")
