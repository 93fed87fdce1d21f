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

from backends.errors import InputError, MissingWeightsError
from backends.jobs import FolderJob, Item, Outcome, RunOptions, run_job
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
    assert "ray" not in sys.modules or report.engine == "local"

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


def test_ray_worker_that_dies_has_its_item_retried_and_a_poison_item_fails(ray_local, tmp_path) -> None:
    items = make_items(tmp_path / "in", {**NUMBERS, "once": "8-exit-once", "poison": "exit"})
    report = run_job(SquareJob(tmp_path / "log"), items, tmp_path / "out", ray_options(workers=2, max_retries=1))
    rows = read_report(tmp_path / "out")
    assert all(rows[k]["status"] == "ok" for k in NUMBERS)
    assert rows["once"]["status"] == "ok" and rows["once"]["square"] == "64"
    assert rows["poison"]["status"] == "worker_lost"
    assert rows["poison"]["message"].startswith("The worker running this item died 2 times (last: ")
    entries = {e["key"]: e for e in report.entries}
    assert entries["once"]["attempts"] == 2 and entries["poison"]["attempts"] == 2 and entries["a"]["attempts"] == 1
    assert calls(tmp_path / "log").count("poison") == 2  # tried once, retried once, then recorded


def test_ray_actor_killed_from_outside_mid_item(ray_local, tmp_path) -> None:
    items = make_items(tmp_path / "in", {**NUMBERS, "slow": "7-sleep-once"})
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
    report = run_job(SquareJob(tmp_path / "log"), items, tmp_path / "out", ray_options(workers=2))
    killer.join()
    assert report.succeeded == 7 and report.failed == 0 and report.retried == 1
    assert read_report(tmp_path / "out")["slow"]["square"] == "49"
    assert sorted(calls(tmp_path / "log")) == sorted([*NUMBERS, "slow", "slow"])


def test_ray_interrupted_driver_then_rerun_runs_only_what_was_missing(ray_local, tmp_path) -> None:
    items = make_items(tmp_path / "in", {**NUMBERS, "bad": "x"})
    out, log = tmp_path / "out", tmp_path / "log.txt"

    def stop_after_three(progress, key) -> None:
        if progress.processed == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(SquareJob(log), items, out, ray_options(workers=2), on_progress=stop_after_three)
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
