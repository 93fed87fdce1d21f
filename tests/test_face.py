"""Face pipeline: alignment geometry on synthetic landmarks, paste-back, real YuNet detection."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backends.errors import InputError, NoFaceError
from backends.face import align_ffhq, align_vox, detect_largest, get_detector, paste_back, square_crop
from backends.face.align import ffhq_quad
from backends.face.pipeline import prepare_face

# A symmetric frontal face: eyes, nose, mouth corners (image order).
LANDMARKS = np.array([[100, 120], [160, 120], [130, 150], [108, 180], [152, 180]], dtype=np.float64)


def _rotate(points: np.ndarray, degrees: float, center=(130, 150)) -> np.ndarray:
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (points - center) @ rot.T + center


def _to_crop(aligned, points: np.ndarray) -> np.ndarray:
    return np.c_[points, np.ones(len(points))] @ aligned.matrix.T


def _textured(h=320, w=300, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(Image.fromarray(rng.integers(0, 255, (h // 8, w // 8, 3), np.uint8)).resize((w, h)))


@pytest.mark.parametrize("angle", [0.0, 17.0, -30.0])
@pytest.mark.parametrize("size", [256, 1024])
def test_eye_line_is_horizontal_and_size_right(angle, size):
    points = _rotate(LANDMARKS, angle)
    aligned = align_ffhq(_textured(), points, size)
    assert aligned.image.size == (size, size)
    eyes = _to_crop(aligned, points[:2])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6 * size
    # Eyes sit symmetrically about the vertical centre line, a little above the middle.
    assert (eyes[0, 0] + eyes[1, 0]) / 2 == pytest.approx(size / 2, abs=1e-6 * size)
    assert eyes[0, 1] < size / 2


def test_crop_is_scale_and_rotation_invariant():
    base = _to_crop(align_ffhq(_textured(), LANDMARKS, 256), LANDMARKS)
    moved = _rotate(LANDMARKS, 25.0) * 1.7 + 40.0
    other = _to_crop(align_ffhq(_textured(600, 600), moved, 256), moved)
    np.testing.assert_allclose(base, other, atol=1e-6)


def test_translation_invariance_of_pixels():
    img = _textured(400, 400)
    shifted = np.zeros((400 + 30, 400 + 50, 3), np.uint8)
    shifted[30:, 50:] = img
    a = np.asarray(align_ffhq(img, LANDMARKS + 100, 128).image).astype(int)
    b = np.asarray(align_ffhq(shifted, LANDMARKS + [150, 130], 128).image).astype(int)
    assert np.abs(a - b).max() <= 1


def test_degenerate_landmarks():
    with pytest.raises(InputError, match="degenerate"):
        ffhq_quad(np.zeros((5, 2)))


def test_paste_back_round_trip():
    img = _textured()
    aligned = align_ffhq(img, LANDMARKS, 256)
    out = paste_back(img, aligned.image, aligned, feather=0.05)
    assert out.shape == img.shape and out.dtype == np.uint8
    # Pasting the unchanged crop back leaves the photo (almost) as it was.
    assert np.abs(out.astype(int) - img.astype(int)).mean() < 2.0
    # A changed crop changes the face region and leaves far corners alone.
    black = paste_back(img, Image.new("RGB", (512, 512)), aligned)
    cx, cy = LANDMARKS[2].astype(int)
    assert black[cy, cx].max() == 0
    np.testing.assert_array_equal(black[:5, -5:], img[:5, -5:])


def test_square_and_vox_crops():
    img = _textured()
    assert square_crop(img, (100, 100, 60, 80), size=224).shape == (224, 224, 3)
    points68 = np.array([[100.0, 104.0], [160.0, 184.0], [130.0, 150.0]])  # extent 60 x 80, centre (130, 144)
    vox = align_vox(img, points68, 256)
    # The official VoxCeleb crop: a square twice the landmark extent (80), centred a sixth of it (13)
    # above the centre of the landmarks' box.
    corners = vox.quad
    assert corners[2, 0] - corners[0, 0] == 160 and corners[0, 0] == corners[1, 0]
    assert tuple(corners[0]) == (130 - 80, 144 - 13 - 80)
    assert vox.image.size == (256, 256)


# --- real detection with YuNet (../shared/weights) ----------------------------------


@pytest.fixture
def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


def test_yunet_finds_the_astronaut(shared_weights, astronaut):
    faces = get_detector("yunet").detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.85
    np.testing.assert_allclose(face.box, (178, 63, 90, 113), atol=3)
    np.testing.assert_allclose(face.landmarks[[0, 1, 3, 4]], [[200, 102], [247, 103], [199, 143], [240, 144]],
                               atol=3)


def test_prepare_face_aligns_the_astronaut(shared_weights, astronaut, tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    prepared = prepare_face(path, size=256, engine="yunet")
    assert prepared.aligned.image.size == (256, 256)
    assert prepared.notices == []
    eyes = _to_crop(prepared.aligned, prepared.face.landmarks[:2])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 6  # a real face: nearly level
    assert prepared.overlay().size == prepared.photo.size


def test_no_face_gives_tips(shared_weights):
    with pytest.raises(NoFaceError, match=r"^No face was found in the photo\. Tips: "):
        detect_largest(np.full((300, 300, 3), 128, np.uint8), engine="yunet")


def test_several_faces_use_the_largest(shared_weights, astronaut):
    head = astronaut[30:230, 130:330]
    canvas = np.full((400, 700, 3), 240, np.uint8)
    canvas[100:300, 20:220] = head
    small = np.asarray(Image.fromarray(head).resize((150, 150)))
    canvas[120:270, 450:600] = small
    face, notices = detect_largest(canvas, engine="yunet")
    assert face.box[0] < 300  # the big one on the left
    assert notices == ["2 faces were found in the photo; the largest one was used."]


def test_already_aligned_skips_detection(tmp_path):
    path = tmp_path / "crop.png"
    Image.fromarray(_textured(300, 200)).save(path)
    prepared = prepare_face(path, size=128, already_aligned=True)
    assert prepared.face is None and prepared.aligned.image.size == (128, 128)
    assert prepared.notices == ["The photo is not square; its centre square was used as the aligned face."]


def test_unknown_engine():
    with pytest.raises(InputError, match="Unknown face detector 'dlib'"):
        get_detector("dlib")


# --- RetinaFace through the weight manager (facexlib never downloads) -------------------------


@pytest.fixture
def retinaface_mirror(tmp_path, monkeypatch, shared_weights):
    """A mirror folder with YuNet and a RetinaFace file in the official layout (random values)."""
    import shutil

    import torch
    from facexlib.detection.retinaface import RetinaFace

    from backends.face import detect

    model = RetinaFace(network_name="resnet50", half=False, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    state = {f"module.{k}": (torch.randn(v.shape, generator=gen) * 0.01 if v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "detection_Resnet50_Final.pth")
    shutil.copy(shared_weights / "face_detection_yunet_2026may.onnx", tmp_path)
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(tmp_path))
    detect.get_detector.cache_clear()
    yield tmp_path
    detect.get_detector.cache_clear()


def test_retinaface_loads_from_the_registry_and_is_the_default(retinaface_mirror, astronaut):
    detector = get_detector("auto")
    assert detector.name == "retinaface"
    faces = detector.detect(astronaut)  # random weights: any answer, but well-formed
    assert all(f.landmarks.shape == (5, 2) for f in faces)
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)


def test_retinaface_wrong_layout_is_a_checkpoint_error(retinaface_mirror):
    import torch

    from backends.errors import CheckpointError

    torch.save({"module.body.conv1.weight": torch.zeros(1)}, retinaface_mirror / "detection_Resnet50_Final.pth")
    with pytest.raises(CheckpointError, match="The RetinaFace ResNet-50 checkpoint does not match the expected layout"):
        get_detector("retinaface")


def test_vox_crop_from_68_landmarks_is_the_official_box():
    """``crop_using_landmarks``: centre rounded, size = int(long extent), centre moved up size // 6, side 2·size."""
    from backends.face.align import vox_crop_box

    pts = np.array([[50.4, 75.5], [211.6, 210.2], [120.0, 140.0]])
    assert vox_crop_box(pts) == (131 - 161, 143 - 26 - 161, 131 + 161, 143 - 26 + 161)
    img = _textured()
    out = align_vox(img, pts, 256)  # partly outside the photo: padded, then resized
    assert out.image.size == (256, 256) and out.matrix[0, 0] == pytest.approx(256 / 322)
