"""Contract tests: the app launched in-process, driven through gradio_client like an API user."""

from __future__ import annotations

import re

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.app_server import running_app

ENDPOINTS = {
    "/reenact_image", "/edit_latent_path", "/pos_generate", "/pos_diagnose", "/anonymize",
    "/expression_video", "/expression_photo", "/align_face", "/models",
}


@pytest.fixture(scope="module")
def client():
    with running_app() as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def test_every_tab_has_a_named_endpoint(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert ENDPOINTS <= set(api["named_endpoints"])


def test_align_face_on_the_astronaut(client, astronaut_png, shared_weights):
    overlay, crop, info = client.predict(handle_file(astronaut_png), "yunet", False, api_name="/align_face")
    assert Image.open(crop).size == (512, 512)
    assert Image.open(overlay).size == (512, 512)
    assert info["faces_used"] == 1 and info["score"] > 0.85


def test_not_an_image_is_a_clear_error(client, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"GIF89a but not really")
    with pytest.raises(AppError, match=re.escape("This file is not an image Face Lab can read")):
        client.predict(handle_file(bad), "auto", False, api_name="/align_face")


def test_no_face_is_a_clear_error(client, tmp_path, shared_weights):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (120, 130, 140)).save(blank)
    with pytest.raises(AppError, match=r"^No face was found in the photo\. Tips:"):
        client.predict(handle_file(blank), "yunet", False, api_name="/align_face")


def test_missing_upload(client):
    with pytest.raises(AppError, match="^Please upload a photo.$"):
        client.predict(None, "auto", False, api_name="/align_face")


def test_models_table_lists_every_checkpoint(client):
    from backends.weights import REGISTRY

    table = client.predict(api_name="/models")
    keys = [row[0] for row in table["data"]]
    assert keys == list(REGISTRY)


def test_reenactment_without_weights_names_the_missing_file(client, astronaut_png, shared_weights):
    from backends.standin import standin_enabled

    assert not standin_enabled()
    with pytest.raises(AppError) as info:
        client.predict(
            handle_file(astronaut_png), handle_file(astronaut_png), "stylemask", True, False, False,
            api_name="/reenact_image",
        )
    sentence, _, detail = str(info.value).partition("<details>")
    # The visitor reads one sentence; the host's account follows, collapsed.
    assert sentence == (
        "This Space is missing the StyleGAN2 FFHQ 1024 generator; the owner can fetch it with one command."
    )
    assert detail.startswith(
        "<summary>Details for the Space owner</summary>"
        "Missing weights: stylegan2-ffhq-config-f.pt (StyleGAN2 FFHQ 1024 generator (rosinality format, g_ema)), "
        "needed by the reenactment, latent paths and anonymization tabs. Downloads are off (HF_HUB_OFFLINE=1)."
    )
    assert "start it with --stand-in-weights (outputs are not results)." in detail and detail.endswith("</details>")


def test_align_face_reports_the_weights_mode(client, astronaut_png, shared_weights):
    *_, info = client.predict(handle_file(astronaut_png), "yunet", False, api_name="/align_face")
    assert info["standin"] is False
