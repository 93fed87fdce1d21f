"""The README stays true: Spaces front matter, weights table, test command used by CI."""

from __future__ import annotations

import re
from pathlib import Path

import gradio

from backends.weights import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_front_matter_pins_the_installed_gradio():
    front = README.split("---")[1]
    assert re.search(rf"^sdk_version: {re.escape(gradio.__version__)}$", front, re.M)
    assert "app_file: app.py" in front and "sdk: gradio" in front
    for repo in {s.hub_repo for e in REGISTRY.values() for s in e.sources if s.hub_repo}:
        assert f"  - {repo}" in front, f"front matter misses model repo {repo}"


def test_weights_table_lists_every_checkpoint():
    for key, entry in REGISTRY.items():
        assert f"| {key} | {entry.filename} |" in README, key


def test_ci_runs_the_readme_test_command():
    command = re.search(r"## Tests\n\n```bash\n(.+)\n```", README).group(1)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_short_description_fits_the_spaces_limit():
    front = README.split("---")[1]
    short = re.search(r"^short_description: (.+)$", front, re.M).group(1)
    assert len(short) <= 60
