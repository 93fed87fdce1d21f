"""A newcomer's first minutes: short messages for visitors, the shipped detector, what the tabs say.

Fast checks without a browser; tests/test_e2e_newcomer.py sees the same things in Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from backends import weights
from backends.errors import MissingWeightsError
from demos import common

REPO = Path(__file__).resolve().parents[1]
CLASS_NAME = re.compile(r"\b\w*(?:Error|Exception)\b")


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No mirror, empty caches, downloads off, stand-ins off: what a fresh Space without weights sees."""
    monkeypatch.delenv("FACELAB_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("FACELAB_HUB_REPO", raising=False)
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FACELAB_STAND_IN", "0")
    return tmp_path


def _raise_through_user_errors(exc: Exception) -> gr.Error:
    @common.user_errors
    def handler():
        raise exc

    with pytest.raises(gr.Error) as info:
        handler()
    return info.value


def test_missing_weights_become_one_sentence_and_a_collapsed_detail(no_weights):
    with pytest.raises(MissingWeightsError) as missing:
        weights.weights_path("stylemask_1024")
    error = _raise_through_user_errors(missing.value)
    sentence, _, detail = error.message.partition("<details>")
    assert sentence == (
        "This Space is missing the StyleMask mask network for StyleGAN2 FFHQ 1024; the owner can fetch it with one "
        "command."
    )
    assert len(sentence) <= 160 and not CLASS_NAME.search(sentence)
    assert detail.startswith("<summary>Details for the Space owner</summary>Missing weights: mask_network_1024.pt ")
    assert "<code>python -m backends.weights fetch stylemask_1024</code>" in detail
    assert detail.endswith("start it with --stand-in-weights (outputs are not results).</details>")
    assert error.duration is None  # stays up until closed, so the owner can open the detail
    assert not CLASS_NAME.search(error.message)


def test_the_stand_in_hint_is_not_given_to_an_app_that_runs_on_stand_ins(no_weights, monkeypatch):
    monkeypatch.setenv("FACELAB_STAND_IN", "1")
    with pytest.raises(MissingWeightsError) as missing:
        weights.weights_path("retinaface_resnet50")
    error = _raise_through_user_errors(missing.value)
    assert error.message.startswith(
        "This Space is missing the RetinaFace ResNet-50 face detector; the owner can fetch it with one command."
        "<details>"
    )
    assert "stand-in" not in error.message


def test_an_error_of_no_registry_file_keeps_a_short_first_sentence_or_says_it_plainly():
    short = MissingWeightsError("The text-to-image model 'me/model' could not be loaded. Downloads are off.")
    assert common.visitor_sentence(short) == "The text-to-image model 'me/model' could not be loaded."
    long = MissingWeightsError("x" * 200 + ". More.")
    assert common.visitor_sentence(long) == (
        "This Space is missing a model this step needs; the owner can fetch it with one command."
    )


def test_owner_details_escape_html_and_put_each_source_on_a_line():
    text = "Every source failed: (1) <b>a</b> answered 404; next: b. (2) b answered nothing. Run `x --y`."
    assert common.owner_details(text) == (
        "<details><summary>Details for the Space owner</summary>Every source failed:<br>(1) &lt;b&gt;a&lt;/b&gt; "
        "answered 404; next: b.<br>(2) b answered nothing. Run <code>x --y</code>.</details>"
    )


def test_yunet_is_shipped_and_found_after_the_mirror(no_weights, monkeypatch):
    path = weights.find_local("yunet")
    assert path == REPO / "assets" / "weights" / "face_detection_yunet_2026may.onnx"
    assert weights.sha256_of(path) == weights.get_entry("yunet").sha256
    assert weights.fetch("yunet").source == "bundled" and weights.status_of("yunet") == "present"
    assert "weights/face_detection_yunet_2026may.onnx" in (REPO / "assets" / "LICENSES.md").read_text()
    mirror = no_weights / "mirror"
    mirror.mkdir()
    shutil.copy(path, mirror)
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(mirror))
    assert weights.find_local("yunet") == mirror / path.name  # a host's own copy still wins


def test_offline_try_out_in_a_clean_copy_finds_and_aligns_a_face(tmp_path):
    """What a newcomer runs first: stand-ins on, no network, no settings, only what git ships."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    for name in listed.stdout.splitlines():
        if (REPO / name).is_file() and name.startswith(("backends/", "assets/")):
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, clone / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACELAB_", "HF_"))}
    env.update({"FACELAB_STAND_IN": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "FACELAB_CACHE_DIR": str(tmp_path / "cache"), "FACELAB_TEST_WEIGHTS": str(tmp_path / "hidden"),
                "FACELAB_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    script = (
        "from backends.face.pipeline import prepare_face\n"
        "from backends import weights\n"
        "p = prepare_face('assets/astronaut.png', size=256)\n"
        "print(weights.fetch('yunet').source, p.aligned.image.size, round(p.face.score, 2) > 0.6)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=clone, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "bundled (256, 256) True"


def test_tab_table_counts_stand_ins_as_present_and_retinaface_as_optional(no_weights, monkeypatch):
    monkeypatch.setenv("FACELAB_STAND_IN", "1")
    rows = {row["tab"]: row for row in weights.tab_rows()}
    assert rows["reenactment"]["missing"] == "retinaface_resnet50 (optional: YuNet detects the faces instead)"
    assert rows["reenactment"]["command"] == ""
    assert rows["expression"]["missing"].startswith("fer_mini_xception, retinaface_resnet50 (optional")
    monkeypatch.setenv("FACELAB_STAND_IN", "0")
    assert weights.tab_rows()[0]["missing"].startswith("stylegan2_ffhq1024, e4e_ffhq_encode, ir_se50, ")


def test_engine_list_says_ready_only_when_the_files_are_here(no_weights, monkeypatch):
    from backends.weights import download
    from demos import reenactment

    _, offline_text = reenactment.engine_choices()
    stylemask = next(line for line in offline_text.splitlines() if line.startswith("- **StyleMask**"))
    assert stylemask.startswith(
        "- **StyleMask**: This Space is missing the StyleGAN2 FFHQ 1024 generator; the owner can fetch it with one "
        "command.<details><summary>Details for the Space owner</summary>Missing weights: stylegan2-ffhq-config-f.pt"
    )
    assert "ready" not in offline_text
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert reenactment.engine_state("stylemask", True, "") == (
        "not downloaded yet: the first run fetches 3 file(s) (stylegan2-ffhq-config-f.pt, e4e_ffhq_encode.pt, "
        "mask_network_1024.pt)"
    )
    monkeypatch.setattr(download, "find_local", lambda key: Path("/somewhere") / key)
    monkeypatch.setattr(weights, "find_local", download.find_local)
    assert reenactment.engine_state("stylemask", True, "") == "ready"
    monkeypatch.setenv("FACELAB_STAND_IN", "1")
    assert reenactment.engine_state("stylemask", True, "") == "ready (stand-in weights: outputs are not results)"


def test_retinaface_is_offered_only_where_it_can_run(no_weights, monkeypatch):
    from demos import models

    assert models.detector_choices() == [("auto", "auto"), ("yunet", "yunet")]  # absent, and downloads are off
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert models.detector_choices()[-1] == ("retinaface (first use downloads a file)", "retinaface")
    mirror = no_weights / "mirror"
    mirror.mkdir()
    (mirror / "detection_Resnet50_Final.pth").write_bytes(b"0")
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(mirror))
    assert models.detector_choices()[-1] == ("retinaface", "retinaface")


def test_stand_in_stamp_marks_the_foot_of_the_image_only():
    flat = Image.new("RGB", (512, 512), (200, 30, 30))
    stamped = common.stamp_standin(flat)
    assert stamped.size == flat.size and flat.getpixel((5, 505)) == (200, 30, 30)  # the original is untouched
    assert stamped.getpixel((2, 511)) == (255, 243, 205) and stamped.getpixel((2, 511 - 512 // 12 + 1)) == (
        255, 243, 205)
    assert stamped.getpixel((256, 100)) == (200, 30, 30)
    band = stamped.crop((0, 512 - 512 // 12, 512, 512))
    assert len(band.getcolors(maxcolors=4096)) > 2  # the words are drawn in the band
    assert common.stamp_standin(None) is None


def test_ui_details(monkeypatch):
    """The Steps slider matches its label; the expression mode sits above both input tabs; plots draw their
    own titles so their legends fit; examples are cached at the first click, apart per weights mode."""
    from demos import pos_subspaces

    turbo = pos_subspaces.steps_slider("stabilityai/sd-turbo")
    assert (turbo.minimum, turbo.maximum, turbo.value) == (1, 4, 1) and "1-4" in turbo.label
    other = pos_subspaces.steps_slider("runwayml/stable-diffusion-v1-5")
    assert other.maximum == 50 and other.label == "Steps (1-50)"

    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", "/tmp/facelab-examples-test")
    monkeypatch.setenv("FACELAB_STAND_IN", "1")
    with gr.Blocks() as demo:
        from demos import expression

        expression.build()
    mode = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "expr-mode")
    holder = mode  # gradio wraps the dropdown in a form: find the level where the input tabs are siblings
    while not any(isinstance(c, gr.Tabs) for c in holder.parent.children):
        holder = holder.parent
    siblings = holder.parent.children
    tabs = [c for c in siblings if isinstance(c, gr.Tabs)]
    assert siblings.index(holder) == 0 and len(tabs) == 1  # the mode comes first, then the input tabs
    assert [c.label for c in tabs[0].children] == ["Video or webcam", "Photo"]
    plot = next(b for b in demo.blocks.values() if isinstance(b, gr.LinePlot))
    assert (plot.show_label, plot.title, plot.color) == (False, "Probabilities over time", "expression")
    assert os.environ["GRADIO_EXAMPLES_CACHE"] == "/tmp/facelab-examples-test"  # restored after building


def test_pos_model_load_blames_an_unreachable_hub_not_a_missing_file(monkeypatch):
    from backends.pos_subspaces.text_to_image import _hub_reason
    from backends.weights import download

    monkeypatch.setattr(download, "_probe", lambda host, port: f"{host} cannot be found (no network, or no DNS)")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org")
    download.forget_probes()
    diffusers_says = OSError("stabilityai/sd-turbo does not appear to have a file named model_index.json.")
    assert _hub_reason(diffusers_says) == (
        "The hub cannot be reached from this machine (hub.example.org cannot be found (no network, or no DNS))."
    )
    monkeypatch.setattr(download, "_probe", lambda host, port: "")
    download.forget_probes()
    assert _hub_reason(diffusers_says) == (
        "Loading failed: stabilityai/sd-turbo does not appear to have a file named model_index.json."
    )
    download.forget_probes()
