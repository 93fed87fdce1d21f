"""The jobs on the runner, in this process: the reenactment pairs list and the resumable DFER evaluate CLI.

The per-item flows are replaced by fakes (the real ones are covered by each tab's tests, and the Ray
equivalence of FALCO and DFER by tests/test_runner.py).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from backends import expression as expr
from backends.errors import InputError, NoFaceError
from backends.expression.evaluation import EvaluationJob
from backends.jobs import MANIFEST_NAME
from backends.reenactment import common as reenact_common
from backends.reenactment import pairs as pairs_mod


def test_pairs_list_parsing_and_output_names(tmp_path) -> None:
    listing = tmp_path / "pairs.csv"
    listing.write_text("source,driving\n# a comment\nme.jpg, clips/smile.mp4\n/abs/you.png,clips/smile.mp4\n"
                       "me.jpg,frown.png\n")
    pairs = pairs_mod.read_pairs(listing)
    assert pairs == [(tmp_path / "me.jpg", tmp_path / "clips/smile.mp4"),
                     (Path("/abs/you.png"), tmp_path / "clips/smile.mp4"),
                     (tmp_path / "me.jpg", tmp_path / "frown.png")]
    items = pairs_mod.pair_items(pairs + [(tmp_path / "other" / "me.jpg", tmp_path / "x" / "smile.mp4")])
    assert [item.payload[2] for item in items] == ["me__smile.mp4", "you__smile.mp4", "me__frown.png",
                                                   "me__smile_2.mp4"]
    assert items[0].key == f"{tmp_path / 'me.jpg'} -> {tmp_path / 'clips/smile.mp4'}"
    listing.write_text("me.jpg\n")
    with pytest.raises(InputError) as err:
        pairs_mod.read_pairs(listing)
    assert str(err.value) == "pairs.csv, row 1: expected 'source,driving', got 'me.jpg'."
    listing.write_text("# nothing\n")
    with pytest.raises(InputError, match="pairs.csv lists no pairs."):
        pairs_mod.read_pairs(listing)


def _fake_video_flow(calls: list[str]):
    def reenact_video(source, driving, *, out_dir, progress=None, **opts):
        calls.append(Path(driving).name)
        if "noface" in str(driving):
            raise NoFaceError("No face was found in any frame of the driving video.")
        out = Path(out_dir)
        (out / "r.mp4").write_bytes(b"result " + Path(driving).name.encode())
        (out / "s.mp4").write_bytes(b"side " + Path(source).name.encode())
        return SimpleNamespace(result_video=out / "r.mp4", comparison_video=out / "s.mp4", frames=5,
                               frames_without_face=1, standin=True)

    def reenact_images(source, driving, **opts):
        calls.append(Path(driving).name)
        return SimpleNamespace(final=Image.new("RGB", (8, 8), (9, 9, 9)), standin=True)

    return reenact_video, reenact_images


def test_pairs_job_writes_each_result_reports_failures_and_resumes(tmp_path, monkeypatch, capsys) -> None:
    from backends.standin import STANDIN_ENV

    monkeypatch.setenv(STANDIN_ENV, "0")  # --stand-in-weights sets it; the fixture restores it afterwards
    calls: list[str] = []
    video, images = _fake_video_flow(calls)
    monkeypatch.setattr(reenact_common, "reenact_video", video)
    monkeypatch.setattr(reenact_common, "reenact_images", images)
    listing = tmp_path / "pairs.csv"
    listing.write_text("me.jpg,smile.mp4\nme.jpg,noface.mp4\nyou.jpg,pose.png\n")
    out = tmp_path / "out"
    assert pairs_mod.main(["--pairs", str(listing), "--out", str(out), "--stand-in-weights"]) == 0
    captured = capsys.readouterr()
    assert "2 reenacted, 1 failed, 0 already done" in captured.out
    assert "| local | 3 | 2 | 1 | 0 | 3 |" in captured.err
    assert (out / "me__smile.mp4").read_bytes() == b"result smile.mp4"
    assert (out / "me__smile_side_by_side.mp4").read_bytes() == b"side me.jpg"
    assert (out / "you__pose.png").is_file() and not (out / "me__noface.mp4").exists()
    with (out / "report.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["ok", "no_face", "ok"]
    assert rows[0]["frames"] == "5" and rows[0]["frames_without_face"] == "1" and rows[0]["output"] == "me__smile.mp4"
    assert rows[1]["message"] == "No face was found in any frame of the driving video."
    calls.clear()
    (out / "you__pose.png").unlink()
    assert pairs_mod.main(["--pairs", str(listing), "--out", str(out), "--stand-in-weights"]) == 0
    assert calls == ["pose.png"]


def test_module_cli_routes_pairs_to_the_list_mode(tmp_path, monkeypatch, capsys) -> None:
    import runpy

    missing = tmp_path / "none.csv"
    monkeypatch.setattr("sys.argv", ["backends.reenactment", "--pairs", str(missing), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("backends.reenactment", run_name="__main__")
    assert exc.value.code == 2
    assert f"error: The pairs list {missing} does not exist." in capsys.readouterr().err
    monkeypatch.setattr("sys.argv", ["backends.reenactment", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("backends.reenactment", run_name="__main__")
    assert exc.value.code == 2 and "--source" in capsys.readouterr().err  # the one-pair command's own parser


def _colour_predictor(clip: torch.Tensor) -> torch.Tensor:
    seen = int(round(float(clip[0, 0, 0, 0, 0]) * 255 / 30))
    return torch.nn.functional.one_hot(torch.tensor(seen), 7).float()


def test_evaluate_cli_with_an_output_folder_is_resumable_and_gives_the_same_numbers(tmp_path, monkeypatch,
                                                                                     capsys) -> None:
    cases = [(0, 0), (0, 0), (0, 0), (0, 3), (1, 1), (1, 0), (2, 5)]
    lines = []
    for k, (label, seen) in enumerate(cases):
        (tmp_path / f"c{k}").mkdir()
        Image.new("RGB", (8, 8), (seen * 30, 0, 0)).save(tmp_path / f"c{k}" / "1.png")
        lines.append(f"c{k} 1 {label + 1}")
    lines.append("missing 4 1")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(expr.cli, "_load_model_for_evaluation", lambda checkpoint, dataset: None)
    monkeypatch.setattr(expr.cli, "_model_predictor", lambda model: _colour_predictor)
    monkeypatch.setattr(EvaluationJob, "setup", lambda self: _colour_predictor)
    base = ["evaluate", "--annotations", str(tmp_path / "list.txt"), "--frames-root", str(tmp_path)]
    (tmp_path / "list_ok.txt").write_text("\n".join(lines[:-1]) + "\n")
    assert expr.main(["evaluate", "--annotations", str(tmp_path / "list_ok.txt"), "--frames-root",
                      str(tmp_path)]) == 0
    in_process = capsys.readouterr().out
    assert expr.main([*base, "--out", str(tmp_path / "out")]) == 0
    job_out = capsys.readouterr().out
    uar, war = f"UAR: {100 * (3 / 4 + 1 / 2) / 3:.2f}", f"WAR: {100 * 4 / 7:.2f}"
    assert uar in in_process and war in in_process and uar in job_out and war in job_out
    assert "videos: 7" in job_out and "failed: 1 (not counted; see predictions.csv)" in job_out
    manifest = (tmp_path / "out" / MANIFEST_NAME).read_text().splitlines()
    assert len(manifest) == 1 + 8
    monkeypatch.setattr(EvaluationJob, "setup", lambda self: pytest.fail("a finished run must not load the model"))
    assert expr.main([*base, "--out", str(tmp_path / "out")]) == 0
    again = capsys.readouterr()
    assert uar in again.out and "| local | 8 | 7 | 1 | 8 | 0 |" in again.err
    assert expr.main([*base, "--ray", "local"]) == 2
    assert "--ray needs --out" in capsys.readouterr().err


def test_asking_for_ray_without_ray_installed_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    from backends.errors import FaceLabError
    from backends.jobs import RunOptions, run_job, runner

    monkeypatch.setattr(runner, "find_spec", lambda name: None)
    with pytest.raises(FaceLabError) as err:
        run_job(EvaluationJob(None, "dfew", tmp_path), [], tmp_path / "out", RunOptions(ray="local"))
    assert str(err.value) == "Running on Ray needs the ray package: pip install -r requirements-scale.txt"


def test_the_tabs_zip_bundle_keeps_no_manifest_but_the_cli_does(tmp_path, monkeypatch) -> None:
    import zipfile

    from backends import anonymization as falco

    def fake_photo(path, **options):
        image = Image.open(path).convert("RGB")
        return SimpleNamespace(pasted=image, anonymized=image, cos_final=0.5, attr_similarity=0.5, standin=True)

    monkeypatch.setattr(falco.folder, "anonymize_photo", fake_photo)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG")
        zf.writestr("a.png", buffer.getvalue())
    bundle, report = falco.anonymize_zip(archive, tmp_path / "work")
    with zipfile.ZipFile(bundle) as zf:
        assert sorted(zf.namelist()) == ["000_a.png", "000_a_face.png", "report.csv"]
    assert falco.main([str(tmp_path / "work" / "in"), str(tmp_path / "cli")]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == \
        ["000_a.png", "000_a_face.png", MANIFEST_NAME, "report.csv"]
