"""Run cards of latent paths (edit, strip) and PoS subspaces (a generated pair): round trip and replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backends import replay, runcard
from backends.standin import enable_standin

skimage_data = pytest.importorskip("skimage.data")


def _write(card: dict, folder: Path, outputs: dict[str, Image.Image]) -> Path:
    """The outputs as PNGs beside the card (as the demos save them) and the card; the card's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in outputs.items():
        image.save(folder / f"{name}.png")
    path = runcard.write_card(card, folder, {name: f"{name}.png" for name in outputs})
    assert runcard.read_card(path) == json.loads(json.dumps(card)) | {
        "outputs": {k: v | {"file": f"{k}.png"} for k, v in card["outputs"].items() if k in outputs}
        | {k: v for k, v in card["outputs"].items() if k not in outputs}}
    return path


# --------------------------------------------------------------------------- latent paths


@pytest.fixture(scope="module")
def latent_runs(tmp_path_factory):
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    from backends import inversion
    from backends import latent_paths as cc

    enable_standin(True)
    inversion.clear_caches()
    cc.clear_caches()
    photo = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    try:
        edit = cc.edit(str(photo), corpus="attributes", path=1, strength=0.3)
        strip = cc.strip(None, seed=5, corpus="attributes", path="Older ↔ younger", max_strength=0.3, frames=2,
                         margin=False, out_dir=tmp_path_factory.mktemp("strip"))
        yield photo, edit, strip
    finally:
        enable_standin(False)
        cc.clear_caches()


def test_edit_card_records_the_walk_and_replays_bit_identically(latent_runs, tmp_path):
    from backends import inversion

    photo, edit, _ = latent_runs
    card = edit.run_card
    assert card["method"] == "latent_paths_edit"
    assert card["replay"]["function"] == "backends.latent_paths.traversal:edit"
    assert card["settings"] == {"seed": None, "corpus": "attributes", "path": 1, "strength": 0.3, "eps": edit.eps,
                                "render_mode": "stored", "paste_back": False}
    assert card["replay"]["inputs"] == ["photo"] and card["inputs"]["photo"]["name"] == "astronaut.png"
    assert {"stylegan2_ffhq1024", "e4e_ffhq_encode", "contraclip_support_sets", "yunet"} == set(card["weights"])
    assert card["standin"] is True and card["outputs"]["final"]["pixels_sha256"] == runcard.pixels_sha256(edit.final)
    assert edit.to_dict()["run_card"] is card
    path = _write(card, tmp_path / "edit", {"final": edit.final})
    inversion.clear_caches()  # the inversion runs again
    report = replay.replay(path, [photo])
    assert report.identical, report.text()


def test_strip_card_from_a_seed_replays_the_strip_and_the_animation(latent_runs, tmp_path):
    _, _, strip = latent_runs
    card = strip.run_card
    assert card["replay"] == {"function": "backends.latent_paths.traversal:strip", "inputs": [],
                              "outputs": {"strip": "strip", "animation": "mp4"}}
    assert card["settings"]["seed"] == 5 and card["settings"]["frames"] == 2 and card["settings"]["path"] == 1
    assert card["seeds"]["start_seed"] == 5
    assert card["outputs"]["animation"]["kind"] == "video" and card["outputs"]["animation"]["frames"] == 2
    assert strip.to_dict()["run_card"] is card
    folder = tmp_path / "strip"
    path = _write(card, folder, {"strip": strip.strip})
    (folder / "latent_path.mp4").write_bytes(strip.mp4.read_bytes())
    data = json.loads(path.read_text())
    data["outputs"]["animation"]["file"] = "latent_path.mp4"
    path.write_text(json.dumps(data))
    report = replay.replay(path, [])
    assert report.identical and [o.name for o in report.outputs] == ["strip", "animation"], report.text()


def test_a_changed_setting_shows_as_a_pixel_difference(latent_runs, tmp_path):
    _, _, strip = latent_runs
    data = json.loads(json.dumps(strip.run_card))
    data["settings"]["seed"] = 6  # another face: the stored strip beside the card differs
    path = _write(data, tmp_path / "other", {"strip": strip.strip})
    report = replay.replay(path, [])
    check = report.outputs[0]
    assert not report.identical and check.max_pixel_diff > 0 and np.isfinite(check.psnr)
    assert "largest pixel difference" in check.text()


# --------------------------------------------------------------------------- PoS subspaces


def test_pos_card_round_trip_and_replay(tmp_path, monkeypatch):
    from backends import pos_subspaces as ps
    from backends.networks.text_to_image import TINY_ID

    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    theme = ps.parse_theme("custom", "neon, cyberpunk, synthwave")
    result = ps.generate("a night street in the rain", theme, k=2, seed=11, steps=2, model_id=TINY_ID, max_words=24)
    card = result.run_card
    assert card["method"] == "pos_subspaces_generate" and card["replay"]["inputs"] == []
    assert card["settings"] == {"prompt": "a night street in the rain", "theme": "your list",
                                "theme_words": ["neon", "cyberpunk", "synthwave"], "lam": ps.DEFAULT_LAM, "k": 2,
                                "geometry": "tangent", "seed": 11, "steps": 2, "model_id": TINY_ID, "max_words": 24}
    assert card["seeds"]["seed"] == 11 and result.to_dict()["run_card"] is card
    assert card["outputs"]["original"]["pixels_sha256"] == runcard.pixels_sha256(result.original)
    assert card["outputs"]["removed"]["pixels_sha256"] == runcard.pixels_sha256(result.removed)
    path = _write(card, tmp_path / "pos", {"original": result.original, "removed": result.removed})
    report = replay.replay(path, [])
    assert report.identical and len(report.outputs) == 2, report.text()
