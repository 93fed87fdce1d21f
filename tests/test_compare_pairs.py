"""``python -m backends.reenactment compare --pairs LIST.csv --csv OUT.csv``: one row per pair and engine."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from backends import metrics
from backends.reenactment import common, pairs
from backends.reenactment.engine import EngineStatus
from backends.standin import enable_standin

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"


@pytest.fixture()
def pairs_list(tmp_path: Path) -> Path:
    """Two tiny pairs: two faces, and a wall (no face) as the source."""
    wall = tmp_path / "wall.png"
    Image.new("RGB", (160, 120), (120, 130, 140)).save(wall)
    listing = tmp_path / "pairs.csv"
    listing.write_text(f"source,driving\n{ASSETS / 'astronaut.png'},{ASSETS / 'camera.png'}\n"
                       f"# a comment line\nwall.png,{ASSETS / 'camera.png'}\n")
    return listing


def test_csv_has_one_row_per_pair_and_engine_with_metrics_or_a_reason(pairs_list, tmp_path, monkeypatch, capsys):
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    real_status = common.engine_status
    monkeypatch.setattr(common, "engine_status", lambda key: EngineStatus(key, False, f"{key} weights are missing")
                        if key != "gan_directions" else real_status(key))
    out = tmp_path / "out" / "compare.csv"
    try:
        code = pairs.compare_main(["--pairs", str(pairs_list), "--csv", str(out), "--stand-in-weights"])
        single = common.reenact_images(str(ASSETS / "astronaut.png"), str(ASSETS / "camera.png"),
                                       engine="gan_directions")
        net, _ = metrics.arcface()
        identity = metrics.identity_cosine(single.source_aligned, single.result, net=net)
    finally:
        enable_standin(False)
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["pair"], r["engine"]) for r in rows] == [(str(p), e) for p in (1, 2) for e in common.ENGINES]
    by = {(r["pair"], r["engine"]): r for r in rows}
    assert by["1", "stylemask"]["status"] == "unavailable"
    assert by["1", "stylemask"]["reason"] == "stylemask weights are missing"
    ran = by["1", "gan_directions"]
    assert ran["status"] == "ok" and float(ran["result_seconds"]) > 0 and float(ran["metrics_seconds"]) > 0
    assert float(ran["identity_cosine"]) == pytest.approx(identity, abs=1e-4)  # the same pair through the photo flow
    assert ran["pose_error"] and ran["expression_error"] and ran["jaw_error"] and ran["meaningful"] == "False"
    assert ran["psnr"] == "" and ran["lpips"] == ""  # not a self-reenactment
    failed = by["2", "gan_directions"]
    assert failed["status"] == "no_face" and failed["reason"].startswith("No face was found in the source")
    assert failed["source"].endswith("wall.png") and failed["identity_cosine"] == ""
    assert by["2", "hyperreenact"]["status"] == "unavailable"
    printed = capsys.readouterr().out
    assert f"wrote {out}: 6 rows (1 no_face, 1 ok, 4 unavailable)" in printed


def test_cli_routes_compare_pairs_and_checks_its_arguments(pairs_list, tmp_path):
    """``--pairs`` after ``compare`` is the compare list, not the reenactment list mode; it needs ``--csv``."""
    done = subprocess.run([sys.executable, "-m", "backends.reenactment", "compare", "--pairs", str(pairs_list)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "the following arguments are required: --csv" in done.stderr
    assert "compare --pairs" in done.stderr  # the list form's own usage line, not the one-pair command's


def test_driving_videos_are_failed_rows(tmp_path):
    rows = pairs.compare_rows(3, tmp_path / "a.png", tmp_path / "b.mp4", engines=("gan_directions",))
    assert rows == [{"pair": 3, "source": str(tmp_path / "a.png"),
                                             "driving": str(tmp_path / "b.mp4"), "engine": "gan_directions",
                                             "status": "failed",
                                             "reason": "compare reads driving photos; this is a video"}]
