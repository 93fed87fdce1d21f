"""Contract of the anonymization endpoints, driven through gradio_client on stand-in weights.

Real-size stand-in networks on CPU: one photo with 1 optimisation step and a pool of 1 fake is
the whole budget (about a minute); everything else here fails before any network runs.
"""

from __future__ import annotations

import os
import stat
import zipfile

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.app_server import running_app

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    saved = {k: os.environ.get(k) for k in ("FACELAB_FALCO_POOL_SIZE", "FACELAB_CACHE_DIR")}
    os.environ["FACELAB_FALCO_POOL_SIZE"] = "1"
    os.environ["FACELAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("falco_cache"))
    try:
        with running_app(standin=True) as url:
            yield Client(url, verbose=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("falco")
    photo = folder / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    wall = folder / "wall.png"
    Image.new("RGB", (320, 240), (120, 130, 140)).save(wall)
    failing_zip = folder / "failing.zip"
    with zipfile.ZipFile(failing_zip, "w") as zf:
        zf.write(wall, "wall.png")
        zf.writestr("broken.jpg", b"not a jpeg")
    big_zip = folder / "many.zip"
    with zipfile.ZipFile(big_zip, "w") as zf:
        for i in range(21):
            zf.write(wall, f"wall_{i}.png")
    return {"photo": photo, "wall": wall, "failing_zip": failing_zip, "big_zip": big_zip}


OPTIONS = (0.0, 1, 0, 1, "official", False)  # margin, steps, seed, candidates, variant, already aligned


def test_endpoints_are_named(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert {"/anonymize", "/anonymize_zip"} <= set(api["named_endpoints"])


def test_anonymize_photo(client, files):
    pasted, slider, stages, identity, attributes, summary, downloads, details = client.predict(
        handle_file(files["photo"]), *OPTIONS, api_name="/anonymize"
    )
    assert Image.open(pasted).size == (512, 512)  # pasted back into the 512x512 photo
    before, after = slider
    assert Image.open(before).size == (1024, 1024) and Image.open(after).size == (1024, 1024)
    assert [caption for _, caption in ((s["image"], s["caption"]) for s in stages)] == [
        "Aligned original", "Inversion (e4e)", "Start: nearest fake in layers 3–7", "Anonymised"]
    assert len(identity["data"]) == 2 and len(attributes["data"]) == 1  # one step: two identity curves
    assert "Identity cosine" in summary and "stand-in weights" in summary
    assert len(downloads) == 2 and all(str(p).endswith(".png") for p in downloads)
    assert details["method"] == "FALCO" and details["standin"] is True
    assert details["steps"] == 1 and details["variant"] == "official" and details["seed"] == 0
    assert details["neighbour"]["pool_size"] == 1 and details["neighbour"]["pool_seed"] == 0
    assert set(details["identity_cosine"]) == {"inversion", "start", "anonymized", "target_margin"}
    assert -1.0 <= details["identity_cosine"]["anonymized"] <= 1.0
    assert details["result_size"] == [1024, 1024]
    assert "Stand-in weights are in use: the images are not results of FALCO." in details["notices"]


def test_bad_inputs_are_clear_errors(client, files, tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_RESULTS_DIR", str(tmp_path / "results"))
    with pytest.raises(AppError, match=r"^Please upload a photo\.$"):
        client.predict(None, *OPTIONS, api_name="/anonymize")
    with pytest.raises(AppError, match=r"^No face was found in the photo\. "):
        client.predict(handle_file(files["wall"]), *OPTIONS, api_name="/anonymize")
    with pytest.raises(AppError, match=r"^Optimisation steps must be a whole number from 1 to 200, got 500\.$"):
        client.predict(handle_file(files["photo"]), 0.0, 500, 0, 1, "official", False, api_name="/anonymize")
    with pytest.raises(AppError, match=r"^Variant must be one of 'official', 'corrected'; got the text 'fast'\.$"):
        client.predict(handle_file(files["photo"]), 0.0, 1, 0, 1, "fast", False, api_name="/anonymize")
    with pytest.raises(AppError, match=r"^Please upload a zip of photos\.$"):
        client.predict(None, *OPTIONS, api_name="/anonymize_zip")
    with pytest.raises(AppError, match=r"^The zip holds 21 images; at most 20 are processed per upload\.$"):
        client.predict(handle_file(files["big_zip"]), *OPTIONS, api_name="/anonymize_zip")
    results = tmp_path / "results"
    assert not results.exists() or list(results.iterdir()) == []  # refused requests leave no folder


def test_zip_failures_are_reported(client, files, tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_RESULTS_DIR", str(tmp_path / "results"))
    bundle, table, summary = client.predict(handle_file(files["failing_zip"]), *OPTIONS, api_name="/anonymize_zip")
    (folder,) = (tmp_path / "results").iterdir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()} == {0o600}
    assert summary["anonymised"] == 0 and summary["failed"] == 2
    statuses = {row[0]: row[1] for row in table["data"]}
    assert statuses == {"000_wall.png": "no_face", "001_broken.jpg": "failed"}
    with zipfile.ZipFile(bundle) as zf:
        assert zf.namelist() == ["report.csv"]
