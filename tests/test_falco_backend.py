"""FALCO's backend on tiny networks: optimisation invariants, the fake pool, options and the folder CLI.

A 64 px generator with 16 channels, a tiny identity net and a tiny ViT stand in for the real
networks, so every test runs in about a second.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from backends import anonymization as falco
from backends.errors import InputError, NoFaceError
from backends.networks import farl as farl_net
from backends.networks import stylegan2

STYLE_DIM = 32


class TinyIdentity(nn.Module):
    """112x112 → unit 16-d rows, like ArcFace's interface."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 14 * 14, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y / y.norm(dim=1, keepdim=True)


def tiny_farl() -> farl_net.FarlVisual:
    from open_clip.transformer import QuickGELU, VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, width=32, layers=1, heads=2, mlp_ratio=2.0,
                            output_dim=16, act_layer=QuickGELU)
    return farl_net.FarlVisual(vit)


@pytest.fixture
def tiny(monkeypatch) -> falco.FalcoModels:
    """A FalcoModels of tiny networks, seeded, frozen, on CPU."""
    table = stylegan2.channel_table
    monkeypatch.setattr(stylegan2, "channel_table", lambda cm: {k: 16 for k in table(cm)})
    torch.manual_seed(0)
    g = stylegan2.Generator(64, style_dim=STYLE_DIM, n_mlp=2, channel_multiplier=1).eval().requires_grad_(False)
    g.w_avg = g.mean_latent(256, seed=0)
    return falco.FalcoModels(g, TinyIdentity().eval().requires_grad_(False),
                             tiny_farl().eval().requires_grad_(False), True, torch.device("cpu"), "tiny")


def _real_and_codes(models: falco.FalcoModels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = models.generator
    w_real = g.to_wplus(g.mapping(torch.randn(1, STYLE_DIM, generator=torch.Generator().manual_seed(5)))).clone()
    real01 = ((g.synthesis(w_real) + 1) / 2).clamp(0, 1)  # a "photo" in [0, 1]
    w_fake = falco.fake_wplus(g, [11])
    return real01, w_real, w_fake


def _run(models: falco.FalcoModels, steps: int, margin: float = 0.0, variant: falco.Variant = falco.OFFICIAL):
    real01, w_real, w_fake = _real_and_codes(models)
    loss = falco.FalcoLoss(models.arcface, models.farl, margin, mixed_ranges=variant.mixed_ranges)
    ref = loss.reference(real01)
    latent = falco.LatentCode(w_real, w_fake)
    with torch.no_grad():
        start = loss(models.generator.synthesis(latent()), ref)
    history = falco.optimise(models.generator, loss, ref, latent, steps)
    with torch.no_grad():
        end = loss(models.generator.synthesis(latent()), ref)
    return latent, history, start, end, w_real, w_fake


def test_frozen_layers_bit_identical_and_trainable_start_at_the_neighbour(tiny) -> None:
    real01, w_real, w_fake = _real_and_codes(tiny)
    latent = falco.LatentCode(w_real, w_fake)
    assert torch.equal(latent()[:, 3:8], w_fake[:, 3:8])  # trainable rows start at the fake's code
    assert torch.equal(latent()[:, :3], w_real[:, :3]) and torch.equal(latent()[:, 8:], w_real[:, 8:])
    assert [p.requires_grad for p in (latent.head, latent.trainable, latent.tail)] == [False, True, False]
    latent, history, *_ = _run(tiny, steps=5)
    code = latent().detach()
    assert torch.equal(code[:, :3], w_real[:, :3]) and torch.equal(code[:, 8:], w_real[:, 8:])
    assert not torch.equal(code[:, 3:8], w_fake[:, 3:8])
    assert len(history) == 5 and code.shape == (1, tiny.generator.n_latent, STYLE_DIM)


def test_loss_falls_and_identity_cosine_moves_toward_the_margin(tiny) -> None:
    for margin in (0.0, 0.9):
        _, history, start, end, *_ = _run(tiny, steps=25, margin=margin)
        assert history[-1].total < history[0].total
        assert float(end.total) < float(start.total)
        assert abs(float(end.cosine[0]) - margin) < abs(float(start.cosine[0]) - margin)
        assert float(end.identity) < float(start.identity)


def test_first_image_is_the_start_render(tiny) -> None:
    real01, w_real, w_fake = _real_and_codes(tiny)
    loss = falco.FalcoLoss(tiny.arcface, tiny.farl, 0.0)
    latent = falco.LatentCode(w_real, w_fake)
    start = tiny.generator.synthesis(latent()).detach()  # rendered as step 0 renders it (autograd on)
    first: list[torch.Tensor] = []
    history = falco.optimise(tiny.generator, loss, loss.reference(real01), latent, 2, on_first_image=first.append)
    assert len(first) == 1 and torch.equal(first[0], start)
    with torch.no_grad():
        assert history[0].cos == pytest.approx(float(loss(start, loss.reference(real01)).cosine[0]), abs=1e-6)


def test_optimisation_is_deterministic(tiny) -> None:
    a, hist_a, *_ = _run(tiny, steps=4)
    b, hist_b, *_ = _run(tiny, steps=4)
    assert torch.equal(a().detach(), b().detach())
    assert [r.total for r in hist_a] == [r.total for r in hist_b]


def test_schedule_over_a_short_run(tiny) -> None:
    _, history, *_ = _run(tiny, steps=10)
    assert falco.lr_milestones(10) == [7, 9]
    assert [r.lr for r in history] == pytest.approx([0.01] * 7 + [0.008] * 2 + [0.0064])


def test_corrected_variant_changes_the_ranges_the_networks_see(tiny) -> None:
    real01, w_real, w_fake = _real_and_codes(tiny)
    anon = tiny.generator.synthesis(falco.LatentCode(w_real, w_fake)()).detach()
    official = falco.FalcoLoss(tiny.arcface, tiny.farl, 0.0)
    corrected = falco.FalcoLoss(tiny.arcface, tiny.farl, 0.0, mixed_ranges=False)
    same_official = official(real01 * 2 - 1, official.reference(real01))
    same_corrected = corrected(real01 * 2 - 1, corrected.reference(real01))
    # The same face in its two ranges: only the corrected loss sees it as identical.
    assert float(same_corrected.identity) == pytest.approx(1.0, abs=1e-5)  # |cos - 0| with cos = 1
    assert float(same_corrected.attributes) == pytest.approx(0.0, abs=1e-4)
    assert float(same_official.attributes) > 1e-2
    official_total = float(official(anon, official.reference(real01)).total)
    assert official_total != float(corrected(anon, corrected.reference(real01)).total)
    assert falco.get_variant("official").farl_fp16_rounding and not falco.get_variant("corrected").farl_fp16_rounding


def test_fake_codes_come_from_their_seeds(tiny) -> None:
    g = tiny.generator
    pair = falco.fake_wplus(g, [1, 3])
    alone = falco.fake_wplus(g, [3])
    assert torch.allclose(pair[1:], alone, atol=1e-6)  # a fake is re-made from its seed alone (batching: ulps)
    w = g.mapping(falco.seed_z(3, STYLE_DIM))
    expected = g.w_avg + 0.7 * (w - g.w_avg)
    assert torch.allclose(alone[0, 0], expected[0], atol=1e-6)
    assert torch.equal(alone[0, 0], alone[0, -1])  # the same w on every row


def test_pool_is_built_cached_extended_and_searched(tiny, tmp_path, monkeypatch) -> None:
    calls = []

    def progress(fraction: float, desc: str) -> None:
        calls.append(fraction)

    small = falco.build_pool(tiny, size=3, folder=tmp_path, progress=progress)
    assert list(small.seeds) == [0, 1, 2] and small.features.shape == (3, 16) and calls[-1] == 1.0
    full = falco.build_pool(tiny, size=6, folder=tmp_path)  # extends the cached 3
    assert list(full.seeds) == list(range(6))
    np.testing.assert_array_equal(full.features[:3], small.features)
    assert [p.name for p in tmp_path.iterdir()] == [full.path.name]  # only seeds + features on disk
    with np.load(full.path) as data:
        assert sorted(data.files) == ["features", "seeds"]

    def no_render(*args, **kwargs):
        raise AssertionError("a cached pool must not render")

    monkeypatch.setattr(tiny.generator, "synthesis", no_render)
    again = falco.build_pool(tiny, size=6, folder=tmp_path)
    np.testing.assert_array_equal(again.features, full.features)
    order, sims = again.nearest(again.features[4], k=2)
    assert order[0] == 4 and sims[0] == pytest.approx(1.0) and sims[1] <= sims[0]
    idx, _ = falco.pick_neighbour(again, torch.from_numpy(again.features[4]), candidates=1, seed=123)
    assert idx == 4
    picks = {falco.pick_neighbour(again, torch.from_numpy(again.features[4]), 4, seed)[0] for seed in range(12)}
    assert picks <= set(again.nearest(again.features[4], k=4)[0]) and len(picks) > 1
    assert falco.pick_neighbour(again, torch.from_numpy(again.features[4]), 4, 7) == \
        falco.pick_neighbour(again, torch.from_numpy(again.features[4]), 4, 7)


def test_pool_plan_per_device(monkeypatch) -> None:
    monkeypatch.delenv(falco.POOL_SIZE_ENV, raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # CPU: 10 fakes (5.5 s each measured on two busy cores: under a minute); the paper's 60,000 and the
    # sizes between are offered, never the default.
    assert falco.pool_size_for(cpu) == 10
    assert falco.pool_choices(cpu) == [10, 64, 256, falco.PAPER_POOL_SIZE] and falco.PAPER_POOL_SIZE == 60_000
    assert falco.pool_size_for(cuda) == 4096 and falco.pool_choices(cuda) == [1024, 4096, 60_000]
    monkeypatch.setenv(falco.POOL_SIZE_ENV, "3")
    assert falco.pool_size_for(cpu) == 3 and falco.pool_choices(cpu)[0] == 3
    monkeypatch.setitem(falco.MEASURED_SECONDS_PER_FAKE, "cpu", 2.5)
    assert falco.estimate_build_seconds(256, have=12, device=cpu) == pytest.approx(2.5 * 244)
    monkeypatch.delitem(falco.MEASURED_SECONDS_PER_FAKE, "cpu")
    assert falco.estimate_build_seconds(256, device=cpu) is None  # no figure before a measurement


def test_pool_build_measures_its_rate_and_is_cancelled_between_fakes(tiny, tmp_path, monkeypatch) -> None:
    from backends.anonymization import pool as pool_mod
    from backends.job_control import CancelToken, JobCancelled

    fake_time = [0.0]
    synthesis = tiny.generator.synthesis

    def slow_synthesis(*args, **kwargs):
        fake_time[0] += 3.0  # each fake "takes" 3 s on the injected clock
        return synthesis(*args, **kwargs)

    monkeypatch.setattr(tiny.generator, "synthesis", slow_synthesis)
    monkeypatch.setattr(pool_mod, "SAVE_EVERY_SECONDS", 1e9)  # only the end and a stop save
    token = CancelToken()
    seen: list[str] = []

    def progress(fraction: float, desc: str) -> None:
        seen.append(desc)
        if len(seen) == 4:
            token.cancel()

    path = tmp_path / "pool.npz"
    with pytest.raises(JobCancelled):
        pool_mod._extend_pool(tiny, falco.OFFICIAL, np.zeros(0, np.int64), None, 10, path, progress, token,
                              clock=lambda: fake_time[0])
    assert seen[0].startswith("building the fake pool: 1/10 faces, about 27 s left (3.0 s per face here)")
    assert seen[3].startswith("building the fake pool: 4/10 faces, about 18 s left")
    assert falco.MEASURED_SECONDS_PER_FAKE["cpu"] == pytest.approx(3.0)
    with np.load(path) as data:  # the stopped build kept its 4 fakes
        assert list(data["seeds"]) == [0, 1, 2, 3]
    assert falco.pool_status().state == "idle"


def test_a_stopped_pool_resumes(tiny, tmp_path) -> None:
    from backends.job_control import CancelToken, JobCancelled

    token = CancelToken()
    built: list[float] = []

    def stop_after_two(fraction: float, desc: str) -> None:
        built.append(fraction)
        if len(built) == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        falco.build_pool(tiny, size=5, folder=tmp_path, progress=stop_after_two, cancel=token)
    assert falco.cached_pool_size(tiny, folder=tmp_path) == 2
    pool = falco.build_pool(tiny, size=5, folder=tmp_path, progress=lambda f, d: built.append(f))
    assert list(pool.seeds) == list(range(5)) and built[2:] == [0.6, 0.8, 1.0]  # only the 3 missing ones
    assert falco.pool_status().state == "ready"


def test_a_request_waits_for_the_background_build_and_can_be_stopped_meanwhile(tiny, tmp_path) -> None:
    import threading

    from backends.anonymization import pool as pool_mod
    from backends.job_control import CancelToken, JobCancelled

    token, said = CancelToken(), []
    pool_mod._POOL_LOCK.acquire()  # the background build holds the pool
    pool_mod._set_status(state="building", done=3, size=12, seconds_left=27.0, seconds_per_fake=3.0)
    try:
        def report(fraction: float, desc: str) -> None:
            said.append((fraction, desc))
            token.cancel()

        waiter = threading.Thread(target=lambda: said.append(_raises(
            lambda: falco.build_pool(tiny, size=2, folder=tmp_path, progress=report, cancel=token),
            JobCancelled)))
        waiter.start()
        waiter.join(10)
    finally:
        pool_mod._POOL_LOCK.release()
        pool_mod._set_status(state="idle")
    assert said[0] == (0.25, "the fake pool is being built in the background: 3/12 faces, about 27 s left")
    assert said[-1] is True  # JobCancelled while waiting


def _raises(fn, error) -> bool:
    try:
        fn()
    except error:
        return True
    return False


def test_background_build_runs_once_with_weights_on_disk(tiny, tmp_path, monkeypatch) -> None:
    from backends.anonymization import pool as pool_mod

    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(pool_mod, "_BACKGROUND", {})
    monkeypatch.setattr(pool_mod, "get_models", lambda variant: tiny)
    monkeypatch.setattr(pool_mod, "weights_on_disk", lambda: False)
    assert pool_mod.start_background_build(size=3) is False  # a download belongs to a request
    monkeypatch.setattr(pool_mod, "weights_on_disk", lambda: True)
    assert pool_mod.start_background_build(size=3) is True
    pool_mod._BACKGROUND["official"].join(30)
    assert pool_mod.start_background_build(size=3) is False  # once per process
    assert falco.pool_status().state == "ready" and falco.cached_pool_size(tiny, folder=falco.pool_dir()) == 3
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    monkeypatch.setattr(pool_mod, "_BACKGROUND", {})
    assert pool_mod.start_background_build(size=3) is False  # ZeroGPU lends its GPU to requests only


def test_step_progress_says_the_measured_time_left_and_checks_the_token() -> None:
    from backends.anonymization import photo
    from backends.job_control import CancelToken, JobCancelled

    now = [0.0]
    token, said = CancelToken(), []
    on_progress = photo._step_reporter(lambda f, d: said.append((round(f, 3), d)), 20, torch.device("cpu"), token,
                                       clock=lambda: now[0])
    now[0] = 6.0
    on_progress(1 / 20, "step 1/20: identity 0.500, attributes 3.0")
    now[0] = 10.0
    on_progress(2 / 20, "step 2/20: identity 0.400, attributes 3.0")
    assert said == [(0.335, "step 1/20: identity 0.500, attributes 3.0, about 2 min left"),
                    (0.37, "step 2/20: identity 0.400, attributes 3.0, about 72 s left")]  # 18 x 4 s
    assert photo.MEASURED_SECONDS_PER_STEP["cpu"] == pytest.approx(4.0)
    token.cancel()
    with pytest.raises(JobCancelled):
        on_progress(3 / 20, "step 3/20")


def test_output_image_conversions() -> None:
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]).reshape(1, 1, 2, 3).expand(1, 3, 2, 3)
    official = np.asarray(falco.output_image(x, falco.OFFICIAL))[..., 0]
    corrected = np.asarray(falco.output_image(x, falco.CORRECTED))[..., 0]
    # min-max to [0, 1], then 255·t truncated: (0.2·255 = 51, 0.4·255 = 102, 0.5·255 = 127.5 → 127, ...)
    assert official.ravel().tolist() == [0, 51, 102, 127, 153, 255]
    assert corrected.ravel().tolist() == [0, 0, 128, 191, 255, 255]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"margin": 1.5}, "The identity margin must be between -1 and 1, got 1.5."),
        ({"steps": 0}, "The number of steps must be a whole number from 1 to 200, got 0."),
        ({"steps": 2.5}, "The number of steps must be a whole number from 1 to 200, got 2.5."),
        ({"seed": -1}, "The seed must be a whole number ≥ 0, got -1."),
        ({"candidates": 17}, "Candidates must be a whole number from 1 to 16, got 17."),
        ({"variant": "fast"}, "Unknown FALCO variant 'fast'; choose 'official' or 'corrected'."),
    ],
)
def test_bad_options_are_input_errors(options, message) -> None:
    with pytest.raises(InputError) as err:
        falco.anonymize_photo("unused.png", **options)
    assert str(err.value) == message


# --------------------------------------------------------------------------- folders


class FakeResult:
    """What the folder loop reads from an AnonymizeResult."""

    def __init__(self, image: Image.Image):
        self.pasted = image
        self.anonymized = image.resize((32, 32))
        self.cos_final = 0.125
        self.attr_similarity = 0.75
        self.standin = True


def _fake_anonymize(calls: list[str]):
    from backends.media import load_image

    def run(path, **options):
        calls.append(Path(path).name)
        image = load_image(path).image  # the real input policy: unreadable files fail here
        if Path(path).stem.endswith("wall"):
            raise NoFaceError("No face was found in the photo.")
        return FakeResult(image)

    return run


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 120, 90)).save(folder / "a.jpg")
    Image.new("RGB", (40, 30), (20, 120, 90)).save(folder / "sub" / "b.png")
    Image.new("RGB", (40, 30), (120, 130, 140)).save(folder / "wall.png")
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_folder_cli_reports_resumes_and_leaves_the_input_alone(photo_dir, tmp_path, monkeypatch, capsys) -> None:
    calls: list[str] = []
    monkeypatch.setattr(falco.folder, "anonymize_photo", _fake_anonymize(calls))
    before = _tree_digest(photo_dir)
    out = tmp_path / "out"
    assert falco.main([str(photo_dir), str(out), "--steps", "3"]) == 0
    assert "2 anonymised, 2 failed, 0 already done" in capsys.readouterr().out
    with (out / "report.csv").open() as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"a.jpg", "broken.jpg", "sub/b.png", "wall.png"}
    assert rows["a.jpg"]["status"] == "ok" and rows["a.jpg"]["identity_cosine"] == "0.1250"
    assert rows["wall.png"]["status"] == "no_face" and rows["wall.png"]["message"].startswith("No face")
    assert rows["broken.jpg"]["status"] == "failed" and rows["broken.jpg"]["message"]
    assert (out / "sub" / "b.png").is_file() and (out / "sub" / "b_face.png").is_file()
    assert _tree_digest(photo_dir) == before
    assert sorted(calls) == ["a.jpg", "b.png", "broken.jpg", "wall.png"]

    # An interrupted run: drop one row, rerun; only that file is processed again.
    with (out / "report.csv").open() as fh:
        kept = [r for r in csv.DictReader(fh) if r["file"] != "sub/b.png"]
    falco._write_report(out / "report.csv", kept)
    calls.clear()
    report = falco.anonymize_folder(photo_dir, out, steps=3)
    assert calls == ["b.png"] and report.processed == 1 and report.skipped == 3
    assert [r["file"] for r in report.rows] == ["a.jpg", "broken.jpg", "sub/b.png", "wall.png"]
    assert _tree_digest(photo_dir) == before


def test_output_names_avoid_clashes() -> None:
    names = ["a.jpg", "a.png", "sub/a.jpg", "b.webp"]
    assert {k: str(v) for k, v in falco.output_names(names).items()} == {
        "a.jpg": "a_jpg.png", "a.png": "a_png.png", "sub/a.jpg": "sub/a.png", "b.webp": "b.png"}


def test_missing_weights_stop_a_folder_run(photo_dir, tmp_path, monkeypatch) -> None:
    from backends.errors import MissingWeightsError

    def missing(path, **options):
        raise MissingWeightsError("Missing weights: FaRL.")

    monkeypatch.setattr(falco.folder, "anonymize_photo", missing)
    with pytest.raises(MissingWeightsError):
        falco.anonymize_folder(photo_dir, tmp_path / "out")
    assert falco.main([str(photo_dir), str(tmp_path / "out")]) == 2


def test_folder_errors(photo_dir, tmp_path) -> None:
    with pytest.raises(InputError, match="must not be inside the input folder"):
        falco.anonymize_folder(photo_dir, photo_dir / "out")
    with pytest.raises(InputError, match="does not exist"):
        falco.anonymize_folder(tmp_path / "missing", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="No images"):
        falco.anonymize_folder(empty, tmp_path / "out2")
    assert falco.main([str(tmp_path / "missing"), str(tmp_path / "o")]) == 2


def test_zip_caps_and_bundle(photo_dir, tmp_path, monkeypatch) -> None:
    import zipfile

    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(photo_dir.rglob("*")):
            if path.is_file():
                zf.write(path, str(path.relative_to(photo_dir)))
        zf.writestr("../evil/a.png", (photo_dir / "a.jpg").read_bytes())
    with pytest.raises(InputError, match="holds 5 images; at most 4"):
        falco.extract_zip(archive, tmp_path / "x", max_files=4)
    with pytest.raises(InputError, match="the limit is 0 MB"):
        falco.extract_zip(archive, tmp_path / "y", max_bytes=100)
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"PK nope")
    with pytest.raises(InputError, match="not a readable zip"):
        falco.extract_zip(not_zip, tmp_path / "z")
    calls: list[str] = []
    monkeypatch.setattr(falco.folder, "anonymize_photo", _fake_anonymize(calls))
    bundle, report = falco.anonymize_zip(archive, tmp_path / "work")
    assert report.succeeded == 3 and report.failed == 2
    assert not (tmp_path / "evil").exists()
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
    assert "report.csv" in names and sum(n.endswith("_face.png") for n in names) == 3


def test_two_writers_saving_one_pool_never_break_it(tmp_path):
    """The app and a CLI sharing a cache may save the same pool at once (a shared temporary name made one
    rename the other's half-written file, or fail to find its own)."""
    import threading

    import numpy as np

    from backends.anonymization import pool

    path = tmp_path / "pool.npz"
    errors: list[BaseException] = []

    def write(value: int) -> None:
        try:
            for _ in range(15):
                pool._save_npz(path, seeds=np.full(200_000, value), features=np.full((64, 512), value, np.float32))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with np.load(path) as saved:
        value = int(saved["seeds"][0])
        assert value in (1, 2) and (saved["seeds"] == value).all() and (saved["features"] == value).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.npz"]
