"""Contract of the latent-path endpoints, driven through gradio_client on stand-in weights (seed starts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from tests.app_server import running_app


@pytest.fixture(scope="module")
def client():
    with running_app(standin=True) as url:
        yield Client(url, verbose=False)


def test_endpoints_are_named(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert {"/edit_latent_path", "/latent_path_strip"} <= set(api["named_endpoints"])


def test_edit_from_a_seed(client):
    image, pair, stages, png, details, card = client.predict(
        "seed", None, 11, "attributes", "Older ↔ younger", -0.45, 0.15, "stored", False, api_name="/edit_latent_path"
    )
    saved = json.loads(Path(card).read_text())
    assert saved["method"] == "latent_paths_edit" and saved["settings"] == details["run_card"]["settings"]
    assert saved["settings"]["seed"] == 11 and saved["outputs"]["final"]["file"] == Path(png).name
    assert Image.open(image).size == (1024, 1024) and Image.open(png).size == (1024, 1024)
    before, after = pair
    assert Image.open(before).size == (1024, 1024) and Image.open(after).size == (1024, 1024)
    assert [item["caption"] for item in stages] == ["Start (seed 11)", "Strength -0.45"]
    assert details["seed"] == 11 and details["start"] == "seed" and details["standin"] is True
    assert details["steps"] == -3 and details["strength"] == pytest.approx(-0.45)
    assert details["sentence_b"] == "a picture of a young person."
    assert details["notices"][-1] == "Stand-in weights are in use: the images are not results of ContraCLIP."


def test_strip_from_a_seed(client):
    strip, gif, files, plot, details = client.predict(
        "seed", None, 11, "expressions", "Joy ↔ calm", 0.3, 2, 0.15, "official", False, False,
        api_name="/latent_path_strip",
    )
    assert Image.open(strip).size == (512, 256)
    assert sorted(f.rsplit(".", 1)[1] for f in files) == ["gif", "mp4"]
    assert details["strengths"] == pytest.approx([-0.3, 0.3]) and details["render_mode"] == "official"
    assert details["sentence_a"] == "a picture of a person with happy face." and details["clip_margins"] is None
    assert Image.open(plot).size[0] > 100


def test_photo_start_without_a_photo(client):
    with pytest.raises(AppError, match=r"^Please upload a photo, or choose Seed to start from a sampled face\.$"):
        client.predict("photo", None, 0, "attributes", "Older ↔ younger", 1.0, 0.15, "stored", False,
                       api_name="/edit_latent_path")


def test_unknown_path_and_bad_step(client):
    with pytest.raises(AppError, match=r"^Unknown path 'wings' in the attributes corpus\. Paths: Feminine"):
        client.predict("seed", None, 0, "attributes", "wings", 1.0, 0.15, "stored", False,
                       api_name="/edit_latent_path")
    with pytest.raises(AppError, match=r"^Step size must be a number from 0\.01 to 1, got 5\.0\.$"):
        client.predict("seed", None, 0, "attributes", "Older ↔ younger", 1.0, 5.0, "stored", False,
                       api_name="/edit_latent_path")


def test_strip_metrics_give_the_run_card(client):
    """The chained /latent_path_strip_metrics returns the identity curve and the strip's run card (a download)."""
    import json
    from pathlib import Path

    *_, details = client.predict("seed", None, 3, "attributes", "Older ↔ younger", 0.3, 2, 0.15, "stored", False,
                                 False, api_name="/latent_path_strip")
    _plot, review, card_path = client.predict(api_name="/latent_path_strip_metrics")
    card = json.loads(Path(card_path).read_text())
    assert card["method"] == "latent_paths_strip" and card["settings"]["seed"] == 3
    assert card["outputs"]["strip"]["file"] == "latent_path_strip.png"
    assert card["outputs"]["strip"]["pixels_sha256"] == details["run_card"]["outputs"]["strip"]["pixels_sha256"]
    assert len(review["result"]["identity_cosine_to_start"]["value"]) == 2
