"""Contract of the PoS-subspaces endpoints through gradio_client, on stand-in weights.

Generation uses the tiny wiring pipeline (offered only with stand-in weights); the analysis runs on the
real-size stand-in CLIP ViT-B/32. Few vocabulary words per category keep this under a minute.
"""

from __future__ import annotations

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from backends import pos_subspaces as ps
from backends.networks.text_to_image import TINY_ID
from tests.app_server import running_app

PROMPT = "a portrait of a woman in a sunlit garden, painted by Claude Monet"
DEFAULTS = ("artists", "", 0.5, 8, "tangent")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACELAB_CACHE_DIR", str(tmp_path_factory.mktemp("pos_cache")))
        mp.setenv(ps.MAX_WORDS_ENV, "16")
        mp.setenv(ps.T2I_MAX_WORDS_ENV, "16")
        ps.clear_learned()
        with running_app(standin=True) as url:
            yield Client(url, verbose=False)
        ps.clear_learned()


def _generate(client, prompt=PROMPT, preset="artists", custom="", seed=7, randomize=False):
    return client.predict(prompt, preset, custom, 0.5, 4, "tangent", seed, randomize, 2, TINY_ID,
                          api_name="/pos_generate")


def test_endpoints_are_named(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert {"/pos_generate", "/pos_diagnose"} <= set(api["named_endpoints"])


def test_generate_side_by_side_with_the_same_seed(client):
    original, removed, seed, status, details = _generate(client)
    assert Image.open(original).size == (32, 32) and Image.open(removed).size == (32, 32)
    assert Image.open(original).tobytes() != Image.open(removed).tobytes()
    assert seed == 7 and details["seed"] == 7 and details["steps"] == 2 and details["k"] == 4
    assert details["standin"] is True and "stand-in weights" in status and "seed 7" in status
    assert details["words_per_category"] == {"nouns": 16, "adjectives": 16, "verbs": 16, "adverbs": 16,
                                             "theme": 52}
    assert details["adaptation"].startswith("Adaptation: the theme subspace is learned")
    again = _generate(client)
    assert Image.open(again[0]).tobytes() == Image.open(original).tobytes()
    _, _, fresh_seed, _, fresh = _generate(client, randomize=True)
    assert isinstance(fresh_seed, int) and fresh_seed >= 0 and fresh["seed"] == fresh_seed


def test_diagnose_energy_and_nearest_words(client):
    energy, nearest, status, details = client.predict(PROMPT, *DEFAULTS, api_name="/pos_diagnose")
    rows = energy["data"]
    parts = ["nouns", "adjectives", "verbs", "adverbs", "theme"]
    assert [r[0] for r in rows] == [f"{c} · {t}" for c in parts for t in ("as written", "theme removed")]
    assert [r[2] for r in rows] == ["as written", "theme removed"] * 5
    assert rows[8][1] > 0 and rows[9][1] < 1e-6  # nothing of the text is left in the theme subspace
    assert len(nearest["data"]) == ps.NEAREST and nearest["headers"][1] == "before"
    assert details["standin"] is True and details["notices"][0] == ps.STANDIN_NOTICE
    assert not any("sub-word pieces" in n for n in details["notices"])  # said for the visitor's own lists only
    assert "Analysed" in status


def test_own_theme_with_unknown_words(client):
    *_, details = client.predict(PROMPT, "custom", "Basquiat, Hokusai\nneon", 0.5, 2, "euclidean",
                                 api_name="/pos_diagnose")
    assert details["theme"] == "your list" and details["words_per_category"]["theme"] == 3
    assert any("sub-word pieces: Basquiat." in n for n in details["notices"])


def test_long_prompt_is_truncated_and_said(client):
    *_, details = _generate(client, prompt=" ".join(["garden"] * 90))
    assert any(n.startswith("The prompt is 90 tokens long; CLIP reads only the first 75") for n in details["notices"])


@pytest.mark.parametrize(
    ("prompt", "preset", "custom", "message"),
    [
        ("  ", "artists", "", r"^Please enter a prompt: it is empty\.$"),
        (PROMPT, "custom", " , ", r"^The theme list is empty\. Paste at least 2 words"),
        (PROMPT, "custom", "Monet", r"^A theme needs at least 2 different words to have a subspace; .*'Monet'"),
        (PROMPT, "custom", "Monet, ***", r"^These theme entries hold no letters or digits, so they are not words"),
    ],
)
def test_bad_input_is_a_clear_error(client, prompt, preset, custom, message):
    with pytest.raises(AppError, match=message):
        _generate(client, prompt=prompt, preset=preset, custom=custom)


def test_empty_text_to_analyse(client):
    with pytest.raises(AppError, match=r"^Please enter a text: it is empty\.$"):
        client.predict("", *DEFAULTS, api_name="/pos_diagnose")


def test_generate_metrics_give_the_run_card(client):
    """The chained /pos_generate_metrics returns the theme presence and the pair's run card (a download)."""
    import json
    from pathlib import Path

    *_, details = _generate(client, seed=9)
    review, card_path = client.predict(api_name="/pos_generate_metrics")
    card = json.loads(Path(card_path).read_text())
    assert card["method"] == "pos_subspaces_generate" and card["settings"]["seed"] == 9
    assert card["outputs"]["original"]["file"] == "original.png"
    assert card["outputs"]["removed"]["pixels_sha256"] == details["run_card"]["outputs"]["removed"]["pixels_sha256"]
    assert review
