"""The shared metrics (backends/metrics.py) against independent computations."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.spatial.transform import Rotation

from backends import metrics
from backends.networks import clip as clip_net
from backends.networks import irse
from backends.standin import Init, seeded_tensor
from tests.fixture_utils import family_dir, load_case, seeded

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture(scope="module")
def arcface() -> irse.Backbone:
    """IR-SE50 with the parity fixture's seeded weights (the stand-in recipe), frozen."""
    return irse.load_arcface_checkpoint(irse.standin_checkpoint_ir_se50()).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def tiny_clip() -> torch.nn.Module:
    """A CLIP of the real structure with tiny widths and seeded weights (the arithmetic is the point)."""
    tiny = clip_net.TinyClipConfig()
    model = clip_net.build_clip(tiny=tiny)
    state = {k: seeded_tensor(k, tuple(v.shape), Init("normal", 0.05)) for k, v in model.state_dict().items()}
    return clip_net.load_clip(state, tiny=tiny)


def _noise_image(seed: int, size: int = 256) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


# --------------------------------------------------------------------------- identity


def test_identity_embedding_is_the_official_falco_identity_path(arcface: irse.Backbone) -> None:
    """On the fixture's seeded weights, the metric's embedding equals FALCO's official ``IDLoss`` output."""
    manifest = seeded().load_manifest(family_dir("arcface_irse50") / "manifest.json")
    net = irse.load_arcface_checkpoint(seeded().seeded_state_dict(manifest, base_seed=0)).eval()
    case = load_case("arcface_irse50", "case_b_falco_idpath256.npz")
    emb = metrics.identity_embedding(torch.from_numpy(case["x_pm1"]), net)
    np.testing.assert_allclose(emb.numpy(), case["embedding_pm1"], atol=2e-5, rtol=0)


def test_identity_cosine_equals_a_direct_forward_and_cosine(arcface: irse.Backbone) -> None:
    a, b = _noise_image(1), _noise_image(2)

    def direct(image: Image.Image) -> torch.Tensor:  # written out: [-1, 1], face crop, pool to 112, forward
        x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1
        x = F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], 112)
        with torch.no_grad():
            e = arcface.embed_prenorm(x)[0].double()
        return e / e.norm()

    expected = float(direct(a) @ direct(b))
    got = metrics.identity_cosine(a, b, aligned=True, net=arcface)
    assert got == pytest.approx(expected, abs=1e-5)
    assert metrics.identity_cosine(a, a, aligned=True, net=arcface) == pytest.approx(1.0, abs=1e-6)
    assert abs(expected - 1.0) > 1e-3  # two different images really differ


def test_identity_of_a_photo_aligns_the_detected_face(arcface: irse.Backbone) -> None:
    photo = Image.open(ASSETS / "astronaut.png").convert("RGB")
    crop = metrics.identity_crop(photo)
    assert crop.how == "detected" and tuple(crop.tensor.shape) == (1, 3, 256, 256)
    # the documented preprocessing: the detector's 5 landmarks -> FFHQ alignment at 256 -> [-1, 1]
    from backends.face import align_ffhq
    from backends.face.detect import detect_faces

    rgb = np.array(photo)
    expected = np.asarray(align_ffhq(rgb, detect_faces(rgb)[0].landmarks, 256).image, dtype=np.float32) / 127.5 - 1
    np.testing.assert_allclose(crop.tensor[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    assert metrics.identity_crop(_noise_image(3)).how == "as given"


def test_identity_curve_starts_at_one(arcface: irse.Backbone) -> None:
    images = [_noise_image(s) for s in (4, 4, 5)]
    curve = metrics.identity_curve(images, net=arcface)
    assert curve[0] == pytest.approx(1.0, abs=1e-6) and curve[1] == pytest.approx(1.0, abs=1e-6)
    assert curve[2] == pytest.approx(metrics.identity_cosine(images[0], images[2], aligned=True, net=arcface),
                                     abs=1e-5)


# --------------------------------------------------------------------------- re-identification


def test_reidentification_ranks_an_unchanged_face_first(arcface: irse.Backbone) -> None:
    original = _noise_image(10)
    decoys = torch.cat([metrics.identity_embedding(metrics.identity_crop(_noise_image(s), aligned=True).tensor,
                                                   arcface) for s in (11, 12, 13)])
    q = metrics.identity_embedding(metrics.identity_crop(original, aligned=True).tensor, arcface)
    same = metrics.reidentification(q, q, decoys)
    assert (same.rank, same.of, same.reidentified) == (1, 4, True)
    assert same.text() == "re-identified: yes (rank 1 of 4)"
    # an "anonymized" face that is one of the decoys' twins ranks behind the closer ones
    far = decoys[int(torch.argmin(decoys @ q[0]))]
    moved = metrics.reidentification(q, far, decoys)
    assert moved.rank == 1 + int((decoys @ q[0] >= float(far @ q[0])).sum()) and moved.rank > 1
    assert not moved.reidentified and "no (rank" in moved.text()


def test_reidentification_by_hand() -> None:
    q = torch.tensor([1.0, 0.0])
    decoys = torch.tensor([[0.0, 1.0], [0.8, 0.6], [0.6, 0.8]])
    assert metrics.reidentification(q, torch.tensor([0.7, math.sqrt(1 - 0.49)]), decoys).rank == 2
    assert metrics.reidentification(q, torch.tensor([0.9, math.sqrt(1 - 0.81)]), decoys).rank == 1
    assert metrics.reidentification(q, torch.tensor([0.8, 0.6]), decoys).rank == 2  # a tie is not a win
    assert metrics.reidentification(q, q, torch.empty(0, 2)).of == 1


# --------------------------------------------------------------------------- pose and expression


@pytest.mark.parametrize("ypr", [(20.0, 0.0, 0.0), (0.0, -15.0, 0.0), (0.0, 0.0, 10.0), (35.0, -12.0, 7.5)])
def test_yaw_pitch_roll_of_axis_angle_matches_scipy(ypr: tuple[float, float, float]) -> None:
    rotvec = Rotation.from_euler("YXZ", ypr, degrees=True).as_rotvec()  # intrinsic Ry·Rx·Rz, independently
    got = metrics.yaw_pitch_roll(metrics.axis_angle_to_matrix(torch.tensor(rotvec)))
    np.testing.assert_allclose(got.numpy(), ypr, atol=1e-9)
    np.testing.assert_allclose(metrics.axis_angle_to_matrix(torch.tensor(rotvec)).numpy(),
                               Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-12)


def test_pose_error_of_a_known_yaw_and_of_a_face_with_itself() -> None:
    exp = torch.linspace(-1, 1, 50)
    front = metrics.FacePose.from_params(exp, torch.zeros(6))
    turned_pose = torch.zeros(6)
    turned_pose[1] = math.radians(20.0)  # axis-angle about y: a 20° yaw
    turned_pose[3] = math.radians(12.0)  # jaw opens by 12°
    turned = metrics.FacePose.from_params(exp + 0.5, turned_pose)
    same = metrics.pose_errors(front, front)
    assert same["pose_error"] == 0 and same["expression_error"] == 0 and same["jaw_error"] == 0
    err = metrics.pose_errors(front, turned)
    assert err["yaw_error"] == pytest.approx(20.0, abs=1e-5)
    assert err["pitch_error"] == pytest.approx(0.0, abs=1e-5) and err["roll_error"] == pytest.approx(0.0, abs=1e-5)
    assert err["pose_error"] == pytest.approx(20.0 / 3, abs=1e-5)
    assert err["expression_error"] == pytest.approx(0.5, abs=1e-6)
    assert err["jaw_error"] == pytest.approx(12.0, abs=1e-5)


def test_pose_error_wraps_around() -> None:
    a = metrics.FacePose((179.0, 0.0, -179.0), 0.0, np.zeros(50))
    b = metrics.FacePose((-179.0, 0.0, 179.0), 0.0, np.zeros(50))
    err = metrics.pose_errors(a, b)
    assert err["yaw_error"] == pytest.approx(2.0) and err["roll_error"] == pytest.approx(2.0)


def test_face_pose_of_one_photo_twice_is_zero_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.networks.deca import deca_crop, deca_crop_matrix, load_deca_encoder, standin_checkpoint_deca

    # 68 points spread over the detector box stand in for 2DFAN-4's (its own parity is tested elsewhere)
    def points68(rgb: np.ndarray, face) -> np.ndarray:
        x, y, w, h = face.box
        t = np.linspace(0, 1, 68, dtype=np.float32)
        return np.stack([x + w * t, y + h * (0.5 + 0.5 * np.sin(6 * t))], axis=1).round()

    monkeypatch.setattr(metrics, "face_landmarks68", points68)
    net = load_deca_encoder(standin_checkpoint_deca()).eval()
    photo = Image.open(ASSETS / "astronaut.png").convert("RGB")
    a, b = metrics.face_pose(photo, net=net), metrics.face_pose(photo.copy(), net=net)
    assert a.how == "detected" and a.expression.shape == (50,)
    assert metrics.pose_errors(a, b)["pose_error"] == 0.0
    # the numbers are DECA's own: its official crop of the 68 points, its exp slice, and the global
    # rotation converted independently (scipy)
    from backends.face.detect import detect_faces

    rgb = np.array(photo)
    matrix = deca_crop_matrix(points68(rgb, detect_faces(rgb)[0]))
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        params = net(deca_crop(x, matrix)).params[0].double()
    np.testing.assert_allclose(a.expression, params[150:200].numpy(), atol=1e-6)
    ypr = Rotation.from_rotvec(params[200:203].numpy()).as_euler("YXZ", degrees=True)
    np.testing.assert_allclose(a.yaw_pitch_roll, ypr, atol=1e-4)
    assert a.jaw_opening == pytest.approx(math.degrees(float(params[203])), abs=1e-4)
    assert metrics.face_pose(_noise_image(50), net=net).how == "as given"


# --------------------------------------------------------------------------- pixels and CLIP


def test_psnr_identical_is_inf_and_constant_offset_is_known() -> None:
    a = np.full((8, 8, 3), 100, dtype=np.uint8)
    assert metrics.psnr(a, a) == math.inf
    assert metrics.psnr(a, a + 10) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-12)  # 28.13 dB
    with pytest.raises(metrics.InputError):
        metrics.psnr(a, np.zeros((4, 4, 3), np.uint8))


def test_clip_similarity_equals_direct_cosines(tiny_clip: torch.nn.Module) -> None:
    model = tiny_clip
    encoder = clip_net.ClipEncoder(model)
    image = _noise_image(20, 48)
    words = ["cat", "Van Gogh", "portrait"]
    got = metrics.clip_similarity(image, words, template="a painting by {}", encoder=encoder)
    x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1)[None] / 255
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    mean, std = torch.tensor(clip_net.CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(clip_net.CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        img = F.normalize(model.encode_image((x - mean) / std), dim=-1)[0]
        text = F.normalize(model.encode_text(clip_net.tokenize([f"a painting by {w}" for w in words])), dim=-1)
    assert list(got) == words
    np.testing.assert_allclose(list(got.values()), (text @ img).numpy(), atol=1e-5)


def test_present_flags_standin_numbers_and_directions() -> None:
    shown = metrics.present({"identity_cosine": 0.123456, "pose_error": 3.0, "psnr": math.inf}, standin=True)
    assert shown["identity_cosine"]["better"] == "higher is better" and shown["identity_cosine"]["value"] == 0.1235
    assert shown["pose_error"]["better"] == "lower is better" and shown["pose_error"]["unit"] == "°"
    assert shown["psnr"]["value"] == "inf"  # JSON has no infinity
    assert all(not v["meaningful"] and v["note"] == metrics.NOT_MEANINGFUL for v in shown.values())
    assert metrics.present({"psnr": 30.0}, standin=False)["psnr"]["meaningful"] is True
    legend = metrics.about(["identity_cosine", "pose_error", "not_a_metric"])
    assert list(legend) == ["Identity (CSIM)", "Head-pose error"] and legend["Head-pose error"].endswith(
        "(lower is better)")
    for info in metrics.METRICS.values():
        assert info.description.endswith(".") and info.description.count(". ") == 0  # one sentence each


# --------------------------------------------------------------------------- anonymization: re-identification


def test_anonymization_metrics_reidentify_an_unchanged_face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An "anonymised" face that is the original itself is re-identified (rank 1) against pool decoys, its
    CSIM is 1, and the run card names every setting FALCO needs to re-run it (stand-in weights, a 1-fake pool)."""
    from backends.anonymization.photo import AnonymizeResult, photo_metrics, photo_run_card
    from backends.standin import enable_standin

    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path))  # the pool cache
    face = Image.open(ASSETS / "astronaut.png").convert("RGB").resize((256, 256))
    result = AnonymizeResult(
        aligned=face, inversion=face, start=face, anonymized=face, pasted=face, history=[], cos_inversion=1.0,
        cos_start=1.0, cos_final=1.0, attr_final=0.0, attr_similarity=1.0, margin=0.0, steps=1, seed=3,
        candidates=1, neighbour_seed=0, neighbour_similarity=1.0, pool_size=1, variant="official", standin=True,
        wplus=torch.zeros(1, 18, 512), generator_key="stylegan2_ffhq1024_genforce")
    enable_standin(True)
    try:
        shown = photo_metrics(result, decoys=1)
    finally:
        enable_standin(False)
    reid = shown["reidentification"]
    assert (reid["rank"], reid["of"], reid["reidentified"]) == (1, 2, True)
    assert reid["decoy_pool_seeds"] == [0] and reid["best_decoy_cosine"] < 1.0
    assert shown["result"]["identity_cosine_anonymized"]["value"] == pytest.approx(1.0, abs=1e-4)
    assert shown["result"]["reidentification"]["value"] == "re-identified: yes (rank 1 of 2)"
    assert shown["result"]["reidentification"]["meaningful"] is False
    card = photo_run_card(result, str(ASSETS / "astronaut.png"), already_aligned=False)
    assert card["replay"]["function"] == "backends.anonymization.photo:anonymize_photo"
    assert card["settings"] == {"margin": 0.0, "steps": 1, "seed": 3, "candidates": 1, "variant": "official",
                                "already_aligned": False, "pool_size": 1}
    assert {"stylegan2_ffhq1024_genforce", "e4e_ffhq_encode", "ir_se50", "farl_ep64"} <= set(card["weights"])
    import inspect

    from backends.anonymization.photo import anonymize_photo

    assert set(card["settings"]) <= set(inspect.signature(anonymize_photo).parameters)  # replay passes them all


# --------------------------------------------------------------------------- latent paths and PoS: the wiring


def _direct_identity(net: irse.Backbone, image: Image.Image) -> torch.Tensor:
    """CSIM's path written out for a 256 aligned crop: [-1, 1], face region, pool to 112, unit embedding."""
    x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():
        e = net.embed_prenorm(F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], 112))[0].double()
    return e / e.norm()


def test_strip_identity_curve_is_each_frames_cosine_to_the_start(arcface: irse.Backbone,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.latent_paths import traversal
    from backends.latent_paths.measure import Margins
    from backends.latent_paths.paths import PathPreset

    origin, a, b = _noise_image(30), _noise_image(31), _noise_image(32)
    monkeypatch.setattr(traversal, "origin_image", lambda start: origin)
    monkeypatch.setattr(metrics, "arcface", lambda: (arcface, True))
    preset = PathPreset("age", "an old face", "a young face")
    start = traversal.Start(torch.zeros(1, 18, 512), "seed", 0)
    edit = traversal.EditResult(b, None, start, preset, "attributes", 0, 1, 0.1, "stored", False, [])
    strip = traversal.StripResult([a, origin, b], [-0.1, 0.0, 0.1], a, Path("x.gif"), Path("x.mp4"), a,
                                  Margins([-0.2, 0.0, 0.3], "test"), 0.0, edit)
    shown, plot = traversal.strip_metrics(strip)
    ref = _direct_identity(arcface, origin)
    expected = [float(_direct_identity(arcface, im) @ ref) for im in (a, origin, b)]
    np.testing.assert_allclose(shown["result"]["identity_cosine_to_start"]["value"], expected, atol=1e-4)
    assert shown["result"]["identity_cosine_to_start"]["meaningful"] is False  # ArcFace was a stand-in
    assert shown["clip_margins"] == [-0.2, 0.0, 0.3] and plot.size == (600, 320)


def test_theme_presence_compares_both_images_to_the_theme_words(tiny_clip: torch.nn.Module,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from backends.pos_subspaces import encoders
    from backends.pos_subspaces.vocabulary import Theme

    generate = importlib.import_module("backends.pos_subspaces.generate")  # the package re-exports a function
    model = tiny_clip
    monkeypatch.setattr(encoders, "joint_encoder", lambda: SimpleNamespace(clip=model, standin=False))
    original, removed = _noise_image(40, 48), _noise_image(41, 48)
    gen = SimpleNamespace(original=original, removed=removed, standin=False)
    theme = Theme("painters", ("Monet", "Turner", "Klimt"))
    shown = generate.theme_presence(gen, theme, top=2)
    encoder = clip_net.ClipEncoder(model)
    before = metrics.clip_similarity(original, list(theme.words), encoder=encoder)
    after = metrics.clip_similarity(removed, list(theme.words), encoder=encoder)
    written, gone = np.mean(list(before.values())), np.mean(list(after.values()))
    assert shown["result"]["theme_similarity_as_written"]["value"] == pytest.approx(written, abs=1e-4)
    assert shown["result"]["theme_similarity_removed"]["value"] == pytest.approx(gone, abs=1e-4)
    assert shown["change"] == pytest.approx(gone - written, abs=1e-4)
    assert [w["word"] for w in shown["strongest_theme_words"]] == sorted(before, key=lambda w: -before[w])[:2]
    assert shown["result"]["theme_similarity_removed"]["meaningful"] is True


# --------------------------------------------------------------------------- every engine side by side


def test_compare_engines_cli_lists_unavailable_engines_and_measures_the_rest(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch,
                                                                             capsys) -> None:
    """``python -m backends.reenactment compare``: an engine without weights is listed with its reason, the
    others give a result (the one a single-engine run gives), the metrics and the run card."""
    import json

    from backends.reenactment import common
    from backends.reenactment.engine import EngineStatus

    real_status = common.engine_status
    monkeypatch.setattr(common, "engine_status", lambda key: EngineStatus(key, False, f"{key} weights are missing")
                        if key != "gan_directions" else real_status(key))
    source, driving = str(ASSETS / "astronaut.png"), str(ASSETS / "camera.png")
    out = tmp_path / "rows.json"
    try:
        code = common.main(["compare", source, driving, "--json", str(out), "--out-dir", str(tmp_path),
                            "--stand-in-weights"])
        single = common.reenact_images(source, driving, engine="gan_directions")
    finally:
        from backends.standin import enable_standin

        enable_standin(False)
    assert code == 0
    rows = {r["engine"]: r for r in json.loads(out.read_text())}
    assert list(rows) == list(common.ENGINES)
    assert rows["stylemask"] == {"engine": "stylemask", "available": False, "reason": "stylemask weights are missing"}
    ran = rows["gan_directions"]
    assert ran["available"] and ran["standin"] and ran["seconds"] > 0
    assert set(common.COMPARE_KEYS) <= set(ran["metrics"]["result"])
    assert ran["run_card"]["settings"]["engine"] == "gan_directions"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "gan_directions.png")), np.asarray(single.final))
    printed = capsys.readouterr().out
    assert "| stylemask | unavailable: stylemask weights are missing" in printed
    assert "| gan_directions |" in printed
