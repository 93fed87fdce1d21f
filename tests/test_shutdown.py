"""Private files: result folders are swept by age and size, and a stopped server leaves none behind."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backends import results
from backends.media import write_video
from tests.conftest import REPO


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _folder(root: Path, name: str, size: int, age_s: float) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "result.png").write_bytes(b"x" * size)
    past = time.time() - age_s
    os.utime(folder, (past, past))
    return folder


def test_sweep_by_age_then_by_size_oldest_first(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_RESULTS_DIR", str(tmp_path))
    expired = _folder(tmp_path, "a_expired", 10, results.RESULTS_TTL_SECONDS)
    oldest = _folder(tmp_path, "b_oldest", 600, 300)
    middle = _folder(tmp_path, "c_middle", 600, 200)
    newest = _folder(tmp_path, "d_newest", 600, 100)
    removed = results.sweep(limit=1300)
    assert removed == [expired, oldest]
    assert not expired.exists() and not oldest.exists() and middle.exists() and newest.exists()


def test_the_sweep_keeps_the_ttl_promise():
    # The timer can lag one period, so folders go at TTL - period: nothing outlives the TTL.
    assert results.deadline_seconds() + results.SWEEP_SECONDS == results.RESULTS_TTL_SECONDS


def test_result_folders_are_private(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_RESULTS_DIR", str(tmp_path / "results"))
    folder = results.results_dir("test")
    Image.new("RGB", (4, 4)).save(folder / "a.png")
    results.seal(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "a.png").stat().st_mode) == 0o600


def test_sweeper_runs_on_a_timer(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(results, "deadline_seconds", lambda: 0.0)
    old = _folder(tmp_path, "old", 1, 10)
    thread = results.start_sweeper(period=0.05)
    try:
        for _ in range(100):
            if not old.exists():
                break
            time.sleep(0.05)
        assert not old.exists()
    finally:
        results.stop_sweeper()
        thread.join(timeout=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_leaves_no_upload_or_result_file(tmp_path, shared_weights):
    """A real server in a subprocess: upload, get results, SIGTERM — nothing of the request stays."""
    from gradio_client import handle_file

    from tests.app_server import connect_to_subprocess_app

    cache, out = tmp_path / "gradio_cache", tmp_path / "results"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "FACELAB_RESULTS_DIR": str(out),
           "FACELAB_WEIGHTS_DIR": str(shared_weights), "PYTHONUNBUFFERED": "1"}
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--cpu"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        client = connect_to_subprocess_app(server, port, seconds=120)
        astronaut = pytest.importorskip("skimage.data").astronaut()
        clip = write_video([np.roll(astronaut, 4 * i, axis=1) for i in range(6)], tmp_path / "clip.mp4", fps=6)
        client.predict(handle_file(clip), "baseline_mini_xception", "dfew", True, api_name="/expression_video")
        assert _files(cache), "the upload and outputs should be in gradio's cache while the server runs"
        assert _files(out), "the annotated video should be in a results folder while the server runs"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert _files(cache) == [] and _files(out) == []
