"""The reenactment backend end to end on stand-in weights (real sizes, CPU), photos and videos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backends import inversion
from backends import reenactment as r
from backends.errors import InputError, MissingWeightsError, NoFaceError, VideoError
from backends.media import read_video, write_video
from backends.standin import enable_standin
from tests.media_factories import corrupt_video, zero_frame_video

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module", autouse=True)
def standin(shared_weights_dir):
    enable_standin(True)
    r.clear_caches()
    yield
    enable_standin(False)
    r.clear_caches()


@pytest.fixture(scope="module")
def shared_weights_dir():
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def driving(astronaut) -> np.ndarray:
    """The astronaut mirrored and cropped off-centre: another pose of a detectable face."""
    return np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])


class CountingEncoder:
    """Wraps ``inversion.encode`` to count how many crops e4e really inverts."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, models, crops):
        self.calls += crops.shape[0]
        return self.inner(models, crops)


@pytest.fixture(scope="module")
def pair_runs(astronaut, driving):
    """One faithful run and one untruncated, pasted run of the same pair, counting the inversions."""
    counter = CountingEncoder(inversion.encode)
    original, inversion.encode = inversion.encode, counter
    try:
        first = r.reenact_images(astronaut, driving)
        after_first = counter.calls
        second = r.reenact_images(astronaut, driving, truncate=False, paste_back=True)
    finally:
        inversion.encode = original
    return first, second, after_first, counter.calls


# --------------------------------------------------------------------------- photos


def test_image_result_sizes_and_flags(pair_runs, astronaut):
    first, second, _, _ = pair_runs
    for res in (first, second):
        assert res.result.size == (1024, 1024) and res.result.mode == "RGB"
        for img in (res.source_aligned, res.driving_aligned, res.source_inversion, res.driving_inversion):
            assert img.size == (1024, 1024)
        assert res.standin is True
        assert any("Stand-in weights" in n for n in res.notices)
    assert first.result_pasted is None and first.final is first.result
    assert second.result_pasted.size == (astronaut.shape[1], astronaut.shape[0])
    details = second.to_dict()
    assert details["standin"] is True and details["truncation_psi"] == 1.0 and details["paste_back"] is True
    assert len(details["mask_mean_per_layer"]) == 12
    assert first.to_dict()["truncation_psi"] == r.FAITHFUL_PSI


def test_second_call_does_not_re_invert(pair_runs):
    first, second, after_first, total = pair_runs
    assert after_first == 2  # source and driving, once each
    assert total == 2  # new truncation and paste-back reuse both inversions
    # Truncation changes the decoded images, so the cache is not returning stale renders.
    assert np.abs(np.asarray(first.result, np.int16) - np.asarray(second.result, np.int16)).max() > 0


def test_source_as_driving_gives_its_inversion_back(pair_runs, astronaut):
    res = r.reenact_images(astronaut, astronaut)
    diff = np.abs(np.asarray(res.result, np.int16) - np.asarray(res.source_inversion, np.int16))
    assert diff.max() <= 1  # equal up to float rounding before the uint8 conversion


def test_no_face_photo(astronaut):
    wall = np.full((240, 320, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="No face was found in the source photo"):
        r.reenact_images(wall, astronaut)
    with pytest.raises(NoFaceError, match="No face was found in the driving photo"):
        r.reenact_images(astronaut, wall)


def test_missing_inputs_and_other_engines(astronaut):
    with pytest.raises(InputError, match="Please upload a source photo"):
        r.reenact_images(None, astronaut)
    with pytest.raises(InputError, match="Please upload a driving photo"):
        r.reenact_images(astronaut, None)
    # An engine whose weights are missing (offline) is refused with the reason, never swapped.
    enable_standin(False)
    try:
        missing = r"^Missing weights: stylegan-voxceleb\.pt .*Also missing: .*deca_model\.tar"
        with pytest.raises(MissingWeightsError, match=missing):
            r.reenact_images(astronaut, astronaut, engine="hyperreenact")
    finally:
        enable_standin(True)
    with pytest.raises(InputError, match="Unknown reenactment engine"):
        r.reenact_images(astronaut, astronaut, engine="magic")


def test_cli_writes_a_png(tmp_path, astronaut, driving):
    src, drv, out = tmp_path / "s.png", tmp_path / "d.png", tmp_path / "out" / "result.png"
    Image.fromarray(astronaut).save(src)
    Image.fromarray(driving).save(drv)
    assert r.main(["--source", str(src), "--driving", str(drv), "--out", str(out), "--stand-in-weights"]) == 0
    assert Image.open(out).size == (1024, 1024)


# --------------------------------------------------------------------------- videos


def _astronaut_clip(astronaut: np.ndarray, offsets: list[tuple[int, int] | None]) -> list[np.ndarray]:
    """448² crops of the astronaut at the given offsets; None gives a blank frame (no face)."""
    frames = []
    for off in offsets:
        if off is None:
            frames.append(np.full((448, 448, 3), 90, np.uint8))
        else:
            dy, dx = off
            frames.append(np.ascontiguousarray(astronaut[dy : dy + 448, dx : dx + 448]))
    return frames


def test_video_gives_two_mp4s_with_every_frame(tmp_path, astronaut):
    clip = write_video(_astronaut_clip(astronaut, [(0, 0), (24, 16), (48, 40)]), tmp_path / "drive.mp4", fps=8)
    fractions, labels = [], []

    def progress(fraction: float, desc: str) -> None:
        fractions.append(fraction)
        labels.append(desc)

    batches = []
    original = inversion.encode
    inversion.encode = lambda models, crops: batches.append(crops.shape[0]) or original(models, crops)
    try:
        res = r.reenact_video(astronaut, clip, out_dir=tmp_path / "out", progress=progress)
    finally:
        inversion.encode = original
    assert res.frames == 3 and res.frames_without_face == 0
    # The three frames are one batch: one e4e pass of 3 crops (the source was inverted before, or is 1 crop).
    assert batches[-1] == 3 and sum(batches) in (3, 4)
    assert "Reenacting frames 1-3 of 3" in labels
    for path in (res.comparison_video, res.result_video):
        assert path.is_file() and path.suffix == ".mp4"
        assert len(read_video(path)) == 3
    assert read_video(res.result_video).frames[0].shape == (r.VIDEO_RESULT_SIZE, r.VIDEO_RESULT_SIZE, 3)
    comparison = read_video(res.comparison_video, max_side=4096).frames[0]
    assert comparison.shape[0] == r.VIDEO_PANEL_HEIGHT and comparison.shape[1] == 3 * r.VIDEO_PANEL_HEIGHT
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert res.to_dict()["standin"] is True


def test_video_frames_without_face_reuse_the_last_good_one(tmp_path, astronaut):
    clip = write_video(_astronaut_clip(astronaut, [None, (24, 16), None]), tmp_path / "gaps.mp4", fps=8)
    res = r.reenact_video(astronaut, clip, out_dir=tmp_path / "out")
    assert res.frames == 3 and res.frames_without_face == 2
    assert "No face was found in 2 of 3 frames" in " ".join(res.notices)
    frames = read_video(res.result_video).frames
    assert len(frames) == 3
    # All three show the one reenacted frame (up to video compression).
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() < 3
    assert np.abs(frames[2].astype(int) - frames[1].astype(int)).mean() < 3


def test_batched_frames_match_one_at_a_time(astronaut):
    """StyleMask's batched frame path (one e4e and one generator pass) gives the per-frame results."""
    from backends.face import get_detector
    from backends.reenactment.stylemask import ENGINE

    frames = [np.ascontiguousarray(astronaut[d : d + 448, d : d + 448]) for d in (0, 40)]
    faces = [get_detector("auto").detect(f)[0] for f in frames]
    items = [(f, face.landmarks, face.box) for f, face in zip(frames, faces, strict=True)]
    src = ENGINE.prepare_source(astronaut, already_aligned=False)
    batched = ENGINE.render_frames(src, items, 0.7)
    single = [ENGINE.render(src, ENGINE.prepare_frame(*item), 0.7).image for item in items]
    assert len(batched) == 2 and batched[0].size == (1024, 1024)
    for a, b in zip(batched, single, strict=True):
        diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int))
        assert diff.max() <= 2 and diff.mean() < 0.01  # 8-bit rounding of float32 noise only
    assert np.abs(np.asarray(batched[0], dtype=int) - np.asarray(batched[1], dtype=int)).mean() > 1


def test_next_drivers_groups_distinct_frames_in_order():
    # Frames 0-1 reuse frame 1 (leading gap), 3 reuses 2, 5-6 reuse 4.
    driver = [(1, "p1", "b1"), (1, "p1", "b1"), (2, "p2", "b2"), (2, "p2", "b2"), (4, "p4", "b4"),
              (4, "p4", "b4"), (4, "p4", "b4"), (7, "p7", "b7")]
    assert [j for j, _p, _b in r.common._next_drivers(driver, 0, 2)] == [1, 2]
    assert [j for j, _p, _b in r.common._next_drivers(driver, 4, 4)] == [4, 7]
    assert [j for j, _p, _b in r.common._next_drivers(driver, 3, 1)] == [2]
    assert r.common._next_drivers(driver, 2, 3)[1] == (4, "p4", "b4")


def test_video_without_any_face(tmp_path, astronaut):
    clip = write_video(_astronaut_clip(astronaut, [None, None]), tmp_path / "blank.mp4", fps=8)
    with pytest.raises(NoFaceError, match="No face was found in any frame of the driving video"):
        r.reenact_video(astronaut, clip, out_dir=tmp_path / "out")


def test_corrupt_and_zero_frame_videos(tmp_path, astronaut):
    with pytest.raises(VideoError):
        r.reenact_video(astronaut, corrupt_video(tmp_path / "broken.mp4"), out_dir=tmp_path / "out")
    empty = zero_frame_video(tmp_path / "empty.mp4")
    with pytest.raises(VideoError, match="^The video has no frames.$"):
        r.reenact_video(astronaut, empty, out_dir=tmp_path / "out")
