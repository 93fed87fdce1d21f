"""The folder-job runner (backends/jobs): resume, failures, atomic outputs, and Ray workers that die.

Tiny per-item functions (write a number's square to a file) keep the point on the runner. The Ray
tests share one local Ray instance (2 CPUs, no dashboard) started by a module fixture.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from backends.errors import InputError, MissingWeightsError
from backends.jobs import FolderJob, Item, Outcome, RunOptions, run_job, worker_name
from backends.jobs.manifest import MANIFEST_NAME, TMP_SUFFIX, Manifest

REPO = Path(__file__).resolve().parents[1]


class SquareJob(FolderJob):
    """Reads an integer from each item's file and writes its square; a log file records every call.

    Special file contents: ``exit`` kills the worker process (every time), ``exit-once`` kills it
    on the first try only, ``sleep-once`` sleeps on the first try (so a test can kill it from
    outside), ``missing-weights`` raises a job-stopping error.
    """

    name = "square"
    fields = ("key", "status", "square", "seconds", "message")

    def __init__(self, log: Path, power: int = 2):
        self.log = str(log)
        self.power = power

    @property
    def options(self) -> dict:
        return {"power": self.power}

    def run(self, state, item, progress=None) -> Outcome:
        path = Path(item.payload)
        with open(self.log, "a") as fh:
            fh.write(f"{item.key} {os.getpid()}\n")
        text = path.read_text().strip()
        once = path.with_suffix(".tried")
        if text == "exit" or (text.endswith("exit-once") and not once.exists()):
            once.touch()
            os._exit(1)  # the worker process dies, as when a node is lost
        if text.endswith("sleep-once") and not once.exists():
            once.write_text(str(os.getpid()))
            time.sleep(60)
        if text == "missing-weights":
            raise MissingWeightsError("Missing weights: square_net.")
        try:
            value = int(text.split("-")[0]) if "-" in text else int(text)
        except ValueError:
            raise InputError(f"{path.name} holds no number.") from None
        row = self.blank_row(item.key)
        row.update(status="ok", square=str(value**self.power))
        return Outcome(row, files={f"{item.key}.txt": str(value**self.power).encode()})


def make_items(folder: Path, contents: dict[str, str]) -> list[Item]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for key, text in contents.items():
        (folder / f"{key}.in").write_text(text)
        items.append(Item(key, str(folder / f"{key}.in")))
    return items


def read_report(out: Path) -> dict[str, dict[str, str]]:
    with (out / "report.csv").open() as fh:
        return {row["key"]: row for row in csv.DictReader(fh)}


def calls(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.is_file() else []


NUMBERS = {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6"}


# --------------------------------------------------------------------------- local runs (no Ray)


def test_local_run_reports_failures_and_resumes_only_what_is_missing(tmp_path) -> None:
    items = make_items(tmp_path / "in", {**NUMBERS, "bad": "not a number"})
    out, log = tmp_path / "out", tmp_path / "log.txt"
    report = run_job(SquareJob(log), items, out)
    assert (report.processed, report.skipped, report.succeeded, report.failed) == (7, 0, 6, 1)
    rows = read_report(out)
    assert list(rows) == ["a", "b", "c", "d", "e", "f", "bad"]  # item order, whatever the finishing order
    assert rows["bad"]["status"] == "failed" and rows["bad"]["message"] == "bad.in holds no number."
    assert rows["f"]["square"] == "36" and (out / "f.txt").read_text() == "36"
    assert all(float(row["seconds"]) >= 0 for row in rows.values())  # every row, ok or failed, is timed
    assert report.engine == "local" and report.per_worker == {worker_name(): 7}

    # Nothing left: a rerun runs nothing. Then a deleted output and a deleted report row are redone.
    log.unlink()
    again = run_job(SquareJob(log), items, out)
    assert (again.processed, again.skipped) == (0, 7) and calls(log) == []
    (out / "c.txt").unlink()
    kept = [r for k, r in rows.items() if k != "e"]
    with (out / "report.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SquareJob.fields)
        writer.writeheader()
        writer.writerows(kept)
    third = run_job(SquareJob(log), items, out)
    assert sorted(calls(log)) == ["c", "e"] and third.processed == 2 and third.skipped == 5
    assert (out / "c.txt").read_text() == "9" and list(read_report(out)) == list(rows)

    # Failed items are redone only when asked.
    log.unlink()
    (tmp_path / "in" / "bad.in").write_text("7")
    run_job(SquareJob(log), items, out)
    assert calls(log) == []
    run_job(SquareJob(log), items, out, RunOptions(retry_failed=True))
    assert calls(log) == ["bad"] and read_report(out)["bad"]["square"] == "49"


def test_other_options_are_refused_in_the_same_folder(tmp_path) -> None:
    items = make_items(tmp_path / "in", {"a": "2"})
    run_job(SquareJob(tmp_path / "log"), items, tmp_path / "out")
    with pytest.raises(InputError) as err:
        run_job(SquareJob(tmp_path / "log", power=3), items, tmp_path / "out")
    assert str(err.value) == ("The output folder holds a 'square' run with other options (power: 2 then, 3 now); "
                              "rerun with the same options or choose another output folder.")
    with pytest.raises(InputError, match="The work list names 'a' twice."):
        run_job(SquareJob(tmp_path / "log"), items + items, tmp_path / "out")


def test_interrupted_driver_keeps_finished_items_and_rerun_does_the_rest(tmp_path) -> None:
    items = make_items(tmp_path / "in", NUMBERS)
    out, log = tmp_path / "out", tmp_path / "log.txt"

    def stop_after_two(progress, key) -> None:
        if progress.processed == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(SquareJob(log), items, out, on_progress=stop_after_two)
    assert list(read_report(out)) == ["a", "b"]  # the report is written on the way out
    log.unlink()
    report = run_job(SquareJob(log), items, out)
    assert calls(log) == ["c", "d", "e", "f"] and (report.processed, report.skipped) == (4, 2)


def test_torn_manifest_line_and_stale_temporaries_are_redone(tmp_path) -> None:
    items = make_items(tmp_path / "in", NUMBERS)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    run_job(SquareJob(log), items, out)
    # A driver killed while writing: the last manifest line is torn, a temporary file is left behind,
    # and the report never got the row.
    manifest = out / MANIFEST_NAME
    lines = manifest.read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["key"] == "f" and last["outputs"] == ["f.txt"] and last["attempts"] == 1
    manifest.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    (out / f".f.txt{TMP_SUFFIX}").write_bytes(b"3")
    (out / "f.txt").unlink()
    log.unlink()
    report = run_job(SquareJob(log), items, out)
    assert calls(log) == ["f"] and report.processed == 1
    assert (out / "f.txt").read_text() == "36" and not list(out.rglob(f"*{TMP_SUFFIX}"))
    entries = Manifest(out, SquareJob(log)).entries
    assert sorted(entries) == sorted(NUMBERS) and entries["f"]["status"] == "ok"


def test_missing_weights_stop_the_job(tmp_path) -> None:
    items = make_items(tmp_path / "in", {"a": "1", "w": "missing-weights", "z": "3"})
    with pytest.raises(MissingWeightsError, match="Missing weights: square_net."):
        run_job(SquareJob(tmp_path / "log"), items, tmp_path / "out")
    assert list(read_report(tmp_path / "out")) == ["a"]


def test_the_app_never_imports_ray() -> None:
    code = "import sys, app; app.build_demo(); assert 'ray' not in sys.modules, 'ray was imported'; print('ok')"
    env = {**os.environ, "FACELAB_STAND_IN": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


# --------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # The test module's job class travels to the workers by value (tests/ is not on their path).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield "auto"
    ray.shutdown()


def ray_options(**kwargs) -> RunOptions:
    return RunOptions(ray="auto", cpus_per_worker=1, **kwargs)


def test_ray_matches_local_and_merges_every_worker(ray_local, tmp_path) -> None:
    contents = {**NUMBERS, "bad": "x"}
    items = make_items(tmp_path / "in", contents)
    local = run_job(SquareJob(tmp_path / "log_local"), items, tmp_path / "local")
    remote = run_job(SquareJob(tmp_path / "log_ray"), items, tmp_path / "ray", ray_options(workers=2))
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in local.rows]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in remote.rows] == strip
    for key in NUMBERS:
        assert (tmp_path / "ray" / f"{key}.txt").read_bytes() == (tmp_path / "local" / f"{key}.txt").read_bytes()
    pids = {line.split()[1] for line in (tmp_path / "log_ray").read_text().splitlines()}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two actors did the work, the driver none
    assert sum(remote.per_worker.values()) == 7 and len(remote.per_worker) == 2
    assert remote.engine == "ray auto, 2 CPU worker(s) x 1 thread(s)"


def test_ray_workers_that_die_have_their_items_retried_and_a_poison_item_fails(ray_local, tmp_path) -> None:
    # "once" kills its worker on the first try, "slow" is killed from outside while it runs, "poison"
    # kills every worker that takes it: with one retry allowed it is recorded after two deaths.
    items = make_items(tmp_path / "in", {**NUMBERS, "once": "8-exit-once", "slow": "7-sleep-once",
                                         "poison": "exit"})
    marker = tmp_path / "in" / "slow.tried"

    def kill_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker.is_file() and marker.read_text():
                os.kill(int(marker.read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    report = run_job(SquareJob(tmp_path / "log"), items, tmp_path / "out", ray_options(workers=2, max_retries=1))
    killer.join()
    rows = read_report(tmp_path / "out")
    assert all(rows[k]["status"] == "ok" for k in NUMBERS)
    assert (rows["once"]["square"], rows["slow"]["square"]) == ("64", "49"), (rows["slow"], calls(tmp_path / "log"))
    assert rows["poison"]["status"] == "worker_lost"
    assert rows["poison"]["message"] == ("The worker running this item died 2 times (last: ActorDiedError); "
                                         "not retried again.")
    entries = {e["key"]: e for e in report.entries}
    assert [entries[k]["attempts"] for k in ("once", "slow", "poison", "a")] == [2, 2, 2, 1]
    assert report.retried == 3 and (report.succeeded, report.failed) == (8, 1)
    log = calls(tmp_path / "log")
    assert sorted(log) == sorted([*NUMBERS, "once", "once", "slow", "slow", "poison", "poison"])


def test_ray_interrupted_driver_then_rerun_runs_only_what_was_missing(ray_local, tmp_path) -> None:
    items = make_items(tmp_path / "in", {**NUMBERS, "bad": "x"})
    out, log = tmp_path / "out", tmp_path / "log.txt"

    def stop_after_three(progress, key) -> None:
        if progress.processed == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(SquareJob(log), items, out, ray_options(workers=1), on_progress=stop_after_three)
    first = set(read_report(out))
    assert len(first) == 3
    time.sleep(0.5)  # the killed actors' last writes to the log
    log.unlink(missing_ok=True)
    report = run_job(SquareJob(log), items, out, ray_options(workers=2))
    assert sorted(calls(log)) == sorted((set(NUMBERS) | {"bad"}) - first)
    assert report.skipped == 3 and report.processed == 4 and report.failed == 1
    assert read_report(out)["bad"]["message"] == "bad.in holds no number."


def test_ray_missing_weights_stop_the_job(ray_local, tmp_path) -> None:
    items = make_items(tmp_path / "in", {"w": "missing-weights", "a": "1"})
    with pytest.raises(MissingWeightsError, match="Missing weights: square_net."):
        run_job(SquareJob(tmp_path / "log"), items, tmp_path / "out", ray_options(workers=1))


# --------------------------------------------------------------------------- FALCO on Ray: the same bytes
#
# The real per-item function (anonymize_photo: nearest fake, Adam on W+ rows 3-7, paste-back) with tiny
# networks: a 64 px generator with 16 channels, a tiny identity net and a tiny ViT. The inversion is
# replaced by a seeded code of the tiny generator (e4e at 1024 px is what the tests elsewhere cover).

TINY_STYLE = 32


class TinyIdentity(torch.nn.Module):
    """112x112 -> unit 16-d rows, ArcFace's interface."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.net = nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 14 * 14, 16))

    def forward(self, x):
        y = self.net(x)
        return y / y.norm(dim=1, keepdim=True)


_TINY: dict = {}


def tiny_falco_models(variant=None):
    """The tiny FalcoModels, built once per process from fixed seeds (so every process has the same)."""
    if "models" not in _TINY:
        from open_clip.transformer import QuickGELU, VisionTransformer

        from backends.anonymization import FalcoModels
        from backends.networks import farl as farl_net
        from backends.networks import stylegan2

        table = stylegan2.channel_table
        stylegan2.channel_table = lambda cm: {k: 16 for k in table(cm)}
        try:
            torch.manual_seed(0)
            g = stylegan2.Generator(64, style_dim=TINY_STYLE, n_mlp=2, channel_multiplier=1)
        finally:
            stylegan2.channel_table = table
        g = g.eval().requires_grad_(False)
        g.w_avg = g.mean_latent(64, seed=0)
        vit = VisionTransformer(image_size=32, patch_size=16, width=32, layers=1, heads=2, mlp_ratio=2.0,
                                output_dim=16, act_layer=QuickGELU)
        farl = farl_net.FarlVisual(vit).eval().requires_grad_(False)
        _TINY["models"] = FalcoModels(g, TinyIdentity().eval().requires_grad_(False), farl, True,
                                      torch.device("cpu"), "tiny")
    return _TINY["models"]


def tiny_invert_photo(source, *, what="photo", already_aligned=False):
    """The photo as a 64 px aligned crop and a code of the tiny generator seeded by its pixels."""
    import numpy as np

    from backends.face import prepare_face
    from backends.inversion import Inversion, content_hash

    prepared = prepare_face(source, size=64, already_aligned=True, what=what)
    seed = int(content_hash(np.asarray(prepared.aligned.image))[:8], 16)
    g = tiny_falco_models().generator
    z = torch.randn(1, TINY_STYLE, generator=torch.Generator().manual_seed(seed))
    return Inversion(prepared.photo, prepared.aligned, g.to_wplus(g.mapping(z)), list(prepared.notices))


def install_tiny_falco(setattr_=setattr) -> None:
    from backends.anonymization import models, photo

    setattr_(photo, "get_models", tiny_falco_models)
    setattr_(models, "get_models", tiny_falco_models)
    setattr_(photo, "invert_photo", tiny_invert_photo)


def _falco_job_class():
    from backends.anonymization.folder import FalcoFolderJob

    class TinyFalcoJob(FalcoFolderJob):
        """FALCO's folder job with the tiny networks installed in the worker first."""

        def __init__(self, photo_options, cache_dir, **kwargs):
            super().__init__(photo_options, **kwargs)
            self.cache_dir = str(cache_dir)

        def setup(self):
            os.environ["FACELAB_CACHE_DIR"] = self.cache_dir
            install_tiny_falco()
            return super().setup()

    return TinyFalcoJob


FALCO_OPTIONS = {"steps": 2, "pool_size": 4, "already_aligned": True, "margin": 0.0, "seed": 0}


def test_falco_folder_on_ray_gives_the_local_bytes(ray_local, tmp_path, monkeypatch) -> None:
    import numpy as np
    from PIL import Image

    from backends.anonymization import anonymize_folder
    from backends.anonymization.folder import folder_items

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name in ("a.png", "sub/b.jpg", "c.png"):
        Image.fromarray(rng.integers(0, 255, (72, 80, 3), dtype=np.uint8)).save(photos / name)
    (photos / "broken.png").write_bytes(b"\x89PNG but nothing else")
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    install_tiny_falco(monkeypatch.setattr)
    # Bit-identity holds at equal thread counts: the Ray actor below runs one thread (cpus_per_worker=1), so the
    # local run does too (CI runs the suite with two, and a float reduction split two ways rounds differently).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = anonymize_folder(photos, tmp_path / "local", **FALCO_OPTIONS)
    finally:
        torch.set_num_threads(threads)
    assert (local.succeeded, local.failed) == (3, 1)

    job = _falco_job_class()(FALCO_OPTIONS, tmp_path / "cache_ray", preload=True)
    remote = run_job(job, folder_items(photos), tmp_path / "ray", ray_options(workers=1))
    assert len(remote.per_worker) == 1 and str(os.getpid()) not in " ".join(remote.per_worker)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in remote.rows] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in local.rows]
    outputs = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.png"))
    assert [str(p) for p in outputs] == ["a.png", "a_face.png", "c.png", "c_face.png", "sub/b.png", "sub/b_face.png"]
    for rel in outputs:
        assert (tmp_path / "ray" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    rows = {r["file"]: r for r in remote.rows}
    assert rows["broken.png"]["status"] == "failed" and rows["broken.png"]["message"]
    assert float(rows["a.png"]["identity_cosine"]) != 0.0


# --------------------------------------------------------------------------- DFER-CLIP evaluate on Ray: same UAR/WAR


def colour_predictor(clip: torch.Tensor) -> torch.Tensor:
    """Scores that 'see' the class a clip's frames are coloured with (red = 30 x class)."""
    seen = int(round(float(clip[0, 0, 0, 0, 0]) * 255 / 30))
    return torch.nn.functional.one_hot(torch.tensor(seen), 7).float()


def _colour_job_class():
    from backends.expression.evaluation import EvaluationJob

    class ColourEvaluationJob(EvaluationJob):
        def setup(self):
            return colour_predictor

    return ColourEvaluationJob


def write_clips(root: Path, cases: list[tuple[int, int]]) -> Path:
    """Folders of 2-4 tiny frames coloured with the 'seen' class, and the annotation list (1-based labels)."""
    from PIL import Image

    lines = []
    for k, (label, seen) in enumerate(cases):
        folder = root / f"clip{k:02d}"
        folder.mkdir(parents=True)
        for f in range(2 + k % 3):
            Image.new("RGB", (8, 8), (seen * 30, 0, 0)).save(folder / f"{f:03d}.png")
        lines.append(f"clip{k:02d} {2 + k % 3} {label + 1}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


# (label, what the predictor sees), 0-based: class 0 has 3/4 right, class 1 1/2, class 2 0/1.
DFER_CASES = [(0, 0), (0, 0), (0, 0), (0, 3), (1, 1), (1, 0), (2, 5)]


def test_dfer_evaluate_on_ray_gives_the_local_uar_and_war(ray_local, tmp_path) -> None:
    from backends import expression as expr
    from backends.expression.evaluation import evaluate_job

    records = expr.read_annotations(write_clips(tmp_path, DFER_CASES))
    local = expr.evaluate(records, tmp_path, colour_predictor, num_classes=7)
    job = _colour_job_class()(None, "dfew", tmp_path)
    missing = records + [expr.AnnotationRecord("gone", 16, 2)]
    remote = evaluate_job(missing, job, tmp_path / "out", ray_options(workers=1))
    assert (remote.result.uar, remote.result.war) == (local.uar, local.war)
    assert remote.result.war == pytest.approx(100 * 4 / 7)
    assert (remote.result.confusion == local.confusion).all()
    assert remote.report.failed == 1 and len(remote.report.per_worker) == 1
    with (tmp_path / "out" / "predictions.csv").open() as fh:
        rows = {r["video_dir"]: r for r in csv.DictReader(fh)}
    assert rows["gone"]["status"] == "failed" and rows["gone"]["message"].startswith("No frames found in ")
    assert (rows["gone"]["label"], rows["gone"]["prediction"]) == ("3", "")
    assert rows["clip03"]["label"] == "1" and rows["clip03"]["prediction"] == "4"
