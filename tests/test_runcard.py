"""Run cards and replay: what a card records, and that replaying it reproduces (or measures) the output."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from backends import replay, runcard
from backends.errors import InputError

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"


# --------------------------------------------------------------------------- the card and the comparison, small


def _picture(offset: int = 0) -> Image.Image:
    arr = (np.arange(16 * 16 * 3, dtype=np.int64).reshape(16, 16, 3) % 200 + offset).astype(np.uint8)
    return Image.fromarray(arr)


def _fake_method(source: str, *, offset: int = 0, bump: int = 0) -> SimpleNamespace:
    """A stand-in for a tab's photo function: a picture made from the settings (``bump`` changes one pixel)."""
    img = np.asarray(_picture(offset)).copy()
    img[3, 4, 1] += bump
    return SimpleNamespace(final=Image.fromarray(img))


@pytest.fixture()
def fake_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    import backends.reenactment.common as common

    monkeypatch.setattr(common, "fake_method_for_test", _fake_method, raising=False)
    source = tmp_path / "in.png"
    _picture(7).save(source)
    out = _fake_method(str(source), offset=5).final
    card = runcard.make_card(
        method="test", engine="none", replay="backends.reenactment.common:fake_method_for_test",
        inputs={"source": str(source)}, settings={"offset": 5}, seeds={}, weights=["ir_se50"], standin=True,
        timings={"seconds": 0.5}, outputs={"final": out}, output_attr={"final": "final"},
    )
    folder = tmp_path / "result"
    folder.mkdir()
    out.save(folder / "out.png")
    return runcard.write_card(card, folder, {"final": "out.png"}), source


def test_card_records_inputs_weights_versions_and_output_pixels(fake_card: tuple[Path, Path]) -> None:
    path, source = fake_card
    card = json.loads(path.read_text())
    assert card["inputs"]["source"] == {"kind": "file", "name": "in.png",
                                        "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    assert card["weights"]["ir_se50"] == "stand-in" and card["standin"] is True
    assert card["weights"]["yunet"]["sha256"]  # the detector always runs on its real weights
    import torch

    assert card["packages"]["torch"] == torch.__version__
    assert card["device"] and card["dtype"] == "float32" and card["threads"] >= 1
    arr = np.asarray(_fake_method("", offset=5).final)
    expected = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode() + arr.tobytes()).hexdigest()
    assert card["outputs"]["final"] == {"size": [16, 16], "pixels_sha256": expected, "file": "out.png"}


def test_replay_of_an_unchanged_run_is_identical(fake_card: tuple[Path, Path]) -> None:
    path, source = fake_card
    report = replay.replay(path, [source])
    assert report.identical and report.input_mismatches == []
    assert report.outputs[0].max_pixel_diff == 0 and "bit-identical" in report.text()


def test_replay_measures_the_largest_pixel_difference(fake_card: tuple[Path, Path]) -> None:
    path, source = fake_card
    card = json.loads(path.read_text())
    card["settings"]["bump"] = 9  # one channel of one pixel moves by 9 levels
    path.write_text(json.dumps(card))
    report = replay.replay(path, [source])
    check = report.outputs[0]
    assert not report.identical and check.max_pixel_diff == 9
    assert check.psnr == pytest.approx(10 * math.log10(255**2 / (81 / (16 * 16 * 3))), abs=1e-9)
    (path.parent / "out.png").unlink()  # without the file only the digest can be compared
    gone = replay.replay(path, [source]).outputs[0]
    assert not gone.identical and gone.max_pixel_diff is None and "not beside it" in gone.text()


def test_replay_names_a_changed_input_and_a_wrong_count(fake_card: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = fake_card
    other = tmp_path / "other.png"
    _picture(8).save(other)
    report = replay.replay(path, [other])
    assert report.input_mismatches and report.input_mismatches[0].startswith("source (other.png")
    assert replay.main([str(path)]) == 2  # the card needs one input


def test_read_card_refuses_other_json(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(InputError, match="run card"):
        runcard.read_card(bad)


def test_weight_record_of_a_real_file_uses_the_known_sha256() -> None:
    from backends.weights import find_local, get_entry, sha256_of

    path = find_local("yunet")
    if path is None:
        pytest.skip("YuNet weights not found")
    record = runcard.weight_record("yunet", standin=False)
    assert record["file"] == get_entry("yunet").filename and record["sha256"] == sha256_of(path)
    assert record["from"] == "registry"


# --------------------------------------------------------------------------- a real photo result, replayed


def test_reenactment_photo_api_gives_metrics_and_a_card_that_replays_bit_identically(tmp_path: Path) -> None:
    """Through the app's API on stand-in weights (GAN directions: the smallest engine, 256 px): the result's
    details carry the run card, the chained /reenact_image_metrics gives the metrics and the card file, and
    that card re-runs (``python -m backends.replay``) bit for bit."""
    from gradio_client import Client, handle_file

    from tests.app_server import running_app
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    source, driving = ASSETS / "astronaut.png", ASSETS / "camera.png"
    with running_app(standin=True) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        *_, png, details = client.predict(handle_file(source), handle_file(driving), "gan_directions", True, False,
                                          api_name="/reenact_image")
        review, card_path = client.predict(api_name="/reenact_image_metrics")  # same session: the last result
    card = json.loads(Path(card_path).read_text())
    assert details["run_card"]["outputs"]["final"]["pixels_sha256"] == card["outputs"]["final"]["pixels_sha256"]
    assert card["settings"] == {"engine": "gan_directions", "truncate": True, "paste_back": False,
                                "already_aligned": False}
    from backends.reenactment.engine import get_engine

    assert set(card["weights"]) == {*get_engine("gan_directions").weights, "yunet"}  # the detector is recorded too
    assert {"stylegan2_vox256", "e4e_voxceleb", "deca_model", "gan_directions_vox"} <= set(card["weights"])
    assert {card["weights"][k] for k in card["weights"] if k != "yunet"} == {"stand-in"}
    assert len(card["weights"]["yunet"]["sha256"]) == 64
    assert card["inputs"]["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    result = review["result"]
    assert {"identity_cosine", "pose_error", "expression_error", "jaw_error"} <= set(result)
    assert all(v["meaningful"] is False for v in result.values())
    assert -1 <= result["identity_cosine"]["value"] <= 1 and "psnr" in review["unavailable"]
    assert "Identity (CSIM)" in review["about"]

    # Replayed here with the models kept but every cached crop and inversion dropped, so the whole request
    # (detection, alignment, e4e, rendering) runs again. (A fresh process gives the same: `python -m
    # backends.replay` on this card was checked by hand; loading the stand-ins again costs half a minute.)
    from backends.reenactment.common import clear_caches

    clear_caches()
    folder = tmp_path / "result"
    folder.mkdir()
    Path(folder / "run_card.json").write_text(Path(card_path).read_text())
    Image.open(png).save(folder / "reenacted.png")
    code = replay.main([str(folder / "run_card.json"), str(source), str(driving), "--json",
                        str(tmp_path / "report.json")])
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0 and report["identical"] and report["outputs"][0]["max_pixel_diff"] == 0
    assert report["input_mismatches"] == []
