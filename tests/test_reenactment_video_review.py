"""Reviewer view of a video reenactment: per-frame metrics, their averages, and the video run card."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from backends import metrics, replay, runcard
from backends import reenactment as r
from backends.media import read_video, write_video
from backends.reenactment import common
from backends.standin import enable_standin

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module", autouse=True)
def standin():
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    enable_standin(True)
    r.clear_caches()
    metrics.clear_caches()
    yield
    enable_standin(False)
    r.clear_caches()
    metrics.clear_caches()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """Three 448² crops of the astronaut (the face moves), as an MP4."""
    astronaut = skimage_data.astronaut()
    frames = [np.ascontiguousarray(astronaut[dy: dy + 448, dx: dx + 448]) for dy, dx in ((0, 0), (24, 16), (48, 40))]
    return str(write_video(frames, tmp_path_factory.mktemp("clip") / "drive.mp4", fps=8))


@pytest.fixture(scope="module")
def self_run(clip, tmp_path_factory) -> common.VideoReenactResult:
    """A self-reenactment of the clip (the first frame is the source) on the 256-px GAN directions engine."""
    return r.reenact_video(None, clip, engine="gan_directions", first_frame_as_source=True,
                           out_dir=tmp_path_factory.mktemp("self"))


@pytest.fixture(scope="module")
def self_review(self_run) -> dict:
    return common.video_metrics(self_run)


def test_metric_frames_are_evenly_spread_and_capped():
    assert common.metric_frame_indices([0, 2, 5]) == [0, 2, 5]
    picked = common.metric_frame_indices(list(range(0, 250)), 16)
    assert len(picked) == 16 and picked[0] == 0 and picked[-1] == 249
    gaps = np.diff(picked)
    assert gaps.max() - gaps.min() <= 1
    assert common.metric_frame_indices([3, 9, 11, 40], 2) == [3, 40]


def test_samples_are_the_frames_the_result_video_shows(self_run, clip):
    assert [s.index for s in self_run.samples] == [0, 1, 2]
    shown = read_video(self_run.result_video).frames
    driving = read_video(clip).frames
    for sample in self_run.samples:
        small = np.asarray(sample.result.resize(shown[sample.index].shape[1::-1], Image.Resampling.LANCZOS))
        assert np.abs(small.astype(int) - shown[sample.index].astype(int)).mean() < 4  # up to MP4 compression
        assert np.array_equal(sample.driving, driving[sample.index])
    assert self_run.self_reenactment and self_run.to_dict()["self_reenactment"] is True


def test_per_frame_values_and_averages_match_independent_computations(self_run, self_review):
    review = self_review
    assert review["frames"] == [0, 1, 2] and review["times"] == [0.0, 0.125, 0.25]
    assert "3 of 3 frames" in review["sampled"] and review["meaningful"] is False
    net, _ = metrics.arcface()
    for n, sample in enumerate(self_run.samples):
        # Identity: the cosine of the two unit embeddings, from the crops the metric reads.
        a = metrics.identity_crop(self_run.source_aligned)
        b = metrics.identity_crop(sample.result)
        if a.how != b.how:
            a, b = metrics.identity_crop(self_run.source_aligned, aligned=True), metrics.identity_crop(sample.result,
                                                                                                        aligned=True)
        ea, eb = metrics.identity_embedding(a.tensor, net)[0], metrics.identity_embedding(b.tensor, net)[0]
        cosine = float(ea @ eb) / float(ea.norm() * eb.norm())
        assert review["per_frame"]["identity_cosine"][n] == pytest.approx(cosine, abs=1e-4)
        # PSNR from its definition on the aligned pair.
        face, target = common.self_reenactment_pair(sample.result, sample.driving)
        mse = np.mean((face.astype(np.float64) - target.astype(np.float64)) ** 2)
        assert review["per_frame"]["psnr"][n] == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-3)
        assert review["per_frame"]["lpips"][n] > 0
    for key, values in review["per_frame"].items():
        assert review["average"][key]["value"] == pytest.approx(np.mean(values), abs=2e-4), key
        assert review["average"][key]["meaningful"] is False
    assert set(review["per_frame"]) == {"identity_cosine", "pose_error", "expression_error", "jaw_error", "psnr",
                                        "lpips"}
    assert set(review["baseline_per_frame"]) == {"pose_error", "expression_error", "jaw_error"}
    assert review["unavailable"] == {}


def test_pose_errors_are_driving_frame_against_result(self_run, self_review):
    from backends.reenactment.vox import get_deca

    deca = get_deca()
    sample = self_run.samples[1]
    driving, result = metrics.face_pose(sample.driving, net=deca), metrics.face_pose(sample.result, net=deca)
    angles = [abs((x - y + 180) % 360 - 180) for x, y in zip(driving.yaw_pitch_roll, result.yaw_pitch_roll,
                                                               strict=True)]
    assert self_review["per_frame"]["pose_error"][1] == pytest.approx(sum(angles) / 3, abs=1e-4)
    source = metrics.face_pose(self_run.source_aligned, net=deca)
    baseline = float(np.abs(driving.expression - source.expression).mean())
    assert self_review["baseline_per_frame"]["expression_error"][1] == pytest.approx(baseline, abs=1e-4)


def test_cross_reenactment_has_no_pixel_metrics(clip, tmp_path):
    source = read_video(clip).frames[0]  # the same face, but not asked as a self-reenactment (cached inversion)
    res = r.reenact_video(source, clip, engine="gan_directions", out_dir=tmp_path, metric_frames=2)
    assert [s.index for s in res.samples] == [0, 2]
    review = common.video_metrics(res)
    assert "psnr" in review["unavailable"] and "lpips" in review["unavailable"]
    assert set(review["per_frame"]) == {"identity_cosine", "pose_error", "expression_error", "jaw_error"}
    assert "2 of 3 frames" in review["sampled"]


def test_video_card_round_trip_and_replay_is_bit_identical(self_run, clip):
    card = self_run.run_card
    assert card["method"] == "reenactment_video" and card["engine"] == "gan_directions"
    assert card["replay"] == {"function": "backends.reenactment.common:replay_video", "inputs": ["driving_video"],
                              "outputs": {"result_video": "result_video"}}
    assert card["settings"]["first_frame_as_source"] is True and card["standin"] is True
    assert card["inputs"]["driving_video"]["name"] == "drive.mp4"
    expected = runcard.frames_sha256(read_video(self_run.result_video).frames)
    assert card["outputs"]["result_video"] == {"kind": "video", "frames": 3, "size": [512, 512],
                                               "pixels_sha256": expected}
    assert all(isinstance(v, dict) and v["sha256"] is None or v == "stand-in" or v["sha256"]
               for v in card["weights"].values())
    path = runcard.write_card(card, self_run.result_video.parent, {"result_video": self_run.result_video.name})
    assert runcard.read_card(path) == json.loads(json.dumps(card)) | {
        "outputs": {"result_video": card["outputs"]["result_video"] | {"file": "reenactment_result.mp4"}}}
    report = replay.replay(path, [clip])
    assert report.identical, report.text()
    assert "bit-identical" in report.text()


def test_video_replay_measures_the_largest_difference(self_run, tmp_path):
    """A changed video beside the card: the largest pixel difference of the decoded frames is reported."""
    frames = read_video(self_run.result_video).frames
    changed = [f.copy() for f in frames]
    changed[1][10:40, 10:40] = 255 - changed[1][10:40, 10:40]
    write_video(changed, tmp_path / "stored.mp4", fps=self_run.fps)
    entry = {"pixels_sha256": "0" * 64, "file": "stored.mp4", "frames": 3, "size": [512, 512]}
    check = replay.compare("result_video", self_run.result_video, entry, tmp_path)
    assert not check.identical and check.max_pixel_diff > 100 and check.psnr < 40


def test_video_api_gives_per_frame_metrics_and_the_card(clip, tmp_path):
    """Through the app: /reenact_video (self-reenactment ticked) and then the chained /reenact_video_metrics."""
    from gradio_client import Client, handle_file

    from tests.app_server import running_app

    with running_app(standin=True) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        *_, details = client.predict(None, handle_file(clip), "gan_directions", True, False, False, True,
                                     api_name="/reenact_video")
        plot, review, card_path = client.predict(api_name="/reenact_video_metrics")  # same session
    enable_standin(True)  # the app turns stand-ins off when it closes; this module's other tests need them
    assert details["self_reenactment"] is True and details["metric_frames"] == [0, 1, 2]
    card = json.loads(open(card_path).read())
    assert card["method"] == "reenactment_video" and card["outputs"]["result_video"]["file"] == "reenactment_result.mp4"
    assert card["outputs"]["result_video"]["pixels_sha256"] == details["run_card"]["outputs"]["result_video"][
        "pixels_sha256"]
    assert set(review["per_frame"]) >= {"identity_cosine", "pose_error", "psnr", "lpips"}
    assert review["average"]["lpips"]["meaningful"] is False and "3 of 3 frames" in review["sampled"]
    rows = plot["value"]["data"] if isinstance(plot, dict) and "value" in plot else plot["data"]
    assert len(rows) == 3 * (6 + 3)  # three frames, six metrics and three baselines


def test_photo_self_reenactment_adds_psnr_and_lpips(clip):
    """The same photo as source and driving: PSNR and LPIPS of the result to the driving crop, as defined."""
    frame = read_video(clip).frames[0]
    res = r.reenact_images(frame, frame, engine="gan_directions")
    shown = common.photo_metrics(res)
    target = res.driving_aligned.resize(res.result.size, Image.Resampling.LANCZOS)
    a, b = np.asarray(res.result, dtype=np.float64), np.asarray(target, dtype=np.float64)
    assert shown["result"]["psnr"]["value"] == pytest.approx(10 * math.log10(255**2 / np.mean((a - b) ** 2)),
                                                             abs=1e-3)
    net, _ = metrics.lpips_net()
    assert shown["result"]["lpips"]["value"] == pytest.approx(metrics.lpips(res.result, target, net=net), abs=1e-4)
    assert shown["result"]["lpips"]["meaningful"] is False and "lpips" not in shown["unavailable"]
    assert "LPIPS" in shown["about"]
