"""The anonymization tab's status line: the figures it shows come from measurements on this server."""

from __future__ import annotations

import pytest

from backends import anonymization as falco
from backends.anonymization import pool as pool_mod


@pytest.fixture
def clean_measures(monkeypatch):
    monkeypatch.delenv(falco.POOL_SIZE_ENV, raising=False)
    monkeypatch.setattr(falco, "MEASURED_SECONDS_PER_FAKE", {})
    monkeypatch.setattr(falco, "MEASURED_SECONDS_PER_STEP", {})
    monkeypatch.setattr(pool_mod, "_STATUS", falco.PoolStatus())


def test_before_any_measurement_no_time_is_promised(clean_measures):
    from demos.anonymization import pool_status_text

    assert pool_status_text() == "The fake pool is built on the first run (with progress)."


def test_status_line_reads_the_measured_rates(clean_measures):
    from demos.anonymization import pool_status_text

    pool_mod._set_status(state="ready", done=10, size=10)
    falco.MEASURED_SECONDS_PER_FAKE["cpu"] = 3.0
    falco.MEASURED_SECONDS_PER_STEP["cpu"] = 4.0
    assert pool_status_text(256, 20) == (
        "fake pool ready: 10 faces · the chosen pool of 256 needs about 12 min more (3.0 s per fake measured here)"
        " · one optimisation step took 4.0 s here (20 steps: about 80 s)")
    assert pool_status_text(10, 50).split(" · ")[1:] == [
        "3.0 s per fake measured here", "one optimisation step took 4.0 s here (50 steps: about 3 min)"]
    pool_mod._set_status(state="building", done=4, size=10, seconds_left=18.0, seconds_per_fake=3.0)
    assert pool_status_text(10, 20).startswith(
        "building the fake pool: 4/10 faces, about 18 s left (3.0 s per face here) · the chosen pool of 10 needs "
        "about 18 s more")
