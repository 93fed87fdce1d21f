"""The latent-paths backend: presets, cached walks, edits and strips on stand-in weights, and training on CPU.

Training runs the real code on a tiny generator (our StyleGAN2 class, 16 px, 32 channels) and a tiny
CLIP (open_clip's CLIP class, 32 px, width 32, the real tokenizer) with stand-in weights: the loss
must fall and the learned direction must raise the CLIP margin toward the positive sentence.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from backends import inversion
from backends import latent_paths as cc
from backends.errors import InputError, MissingWeightsError
from backends.latent_paths import training as tr
from backends.networks import contraclip as net
from backends.networks import stylegan2 as sg
from backends.networks.clip import ClipEncoder, TinyClipConfig, load_clip, standin_clip_state_dict
from backends.standin import enable_standin, standin_state_dict

skimage_data = pytest.importorskip("skimage.data")

SMILE = ("a picture of a smiling face.", "a picture of a face in neutral expression.")
AGE = ("a picture of an old person.", "a picture of a young person.")


# --------------------------------------------------------------------------- presets and small pieces

def test_presets_have_the_official_sizes_and_distinct_labels():
    attributes, expressions = cc.presets("attributes"), cc.presets("expressions")
    assert len(attributes) == 9 and len(expressions) == 21
    for paths in (attributes, expressions):
        assert len({p.label for p in paths}) == len(paths)
        assert len({(p.positive, p.negative) for p in paths}) == len(paths)
        assert all(p.positive != p.negative and p.positive.endswith(".") for p in paths)
    assert attributes[1].positive == "a picture of an old person."


def test_steps_for_is_exact_and_bounded():
    assert cc.steps_for(1.5, 0.15) == 10 and cc.steps_for(-0.45, 0.15) == -3 and cc.steps_for(0.0, 0.15) == 0
    with pytest.raises(InputError, match="at most 400 are allowed"):
        cc.steps_for(100.0, 0.15)


def test_sample_shifts_follow_the_official_ranges():
    gen = torch.Generator().manual_seed(0)
    paths, mags = tr.sample_shifts(4000, 3, 0.1, 0.2, gen)
    assert set(paths.tolist()) == {0, 1, 2}
    assert bool(((mags.abs() >= 0.1) & (mags.abs() <= 0.2)).all())
    assert 0.4 < float((mags > 0).float().mean()) < 0.6


def test_nt_xent_value():
    u = torch.eye(2)
    # Two matched orthogonal rows: each row's softmax is [e^{1/τ}, 1] / (e^{1/τ} + 1).
    expected = float(np.log1p(np.exp(-1 / 0.5)))
    assert abs(float(tr.nt_xent(u, u, 0.5)) - expected) < 1e-6
    assert float(tr.nt_xent(u, u, 0.5)) < float(tr.nt_xent(u, u.flip(0), 0.5))


# --------------------------------------------------------------------------- stand-in edits (real sizes)

class CountingEncoder:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, models, crops):
        self.calls += crops.shape[0]
        return self.inner(models, crops)


@pytest.fixture(scope="module")
def standin_runs(shared_weights_module, tmp_path_factory):
    """Two slider positions and a strip on the astronaut, counting e4e inversions; stand-in weights."""
    enable_standin(True)
    inversion.clear_caches()
    cc.clear_caches()
    counter = CountingEncoder(inversion.encode)
    original, inversion.encode = inversion.encode, counter
    photo = skimage_data.astronaut()
    try:
        first = cc.edit(photo, corpus="attributes", path="Older ↔ younger", strength=0.3)
        second = cc.edit(photo, corpus="attributes", path=1, strength=-0.3, paste_back=True, with_origin=True)
        strip = cc.strip(photo, corpus="attributes", path=1, max_strength=0.3, frames=2, margin=False,
                         out_dir=tmp_path_factory.mktemp("strip"))
        yield first, second, strip, counter.calls
    finally:
        inversion.encode = original
        enable_standin(False)
        cc.clear_caches()


@pytest.fixture(scope="module")
def shared_weights_module():
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS


def test_slider_moves_never_reinvert(standin_runs):
    *_, calls = standin_runs
    assert calls == 1  # three requests on one photo: one e4e inversion


def test_edit_results(standin_runs):
    first, second, _, _ = standin_runs
    assert first.image.size == (1024, 1024) and first.standin
    assert first.steps == 2 and second.steps == -2 and abs(first.strength - 0.3) < 1e-9
    info = second.to_dict()
    assert info["path_label"] == "Older ↔ younger" and info["sentence_a"] == "a picture of an old person."
    assert info["start"] == "photo" and info["paste_back"] and info["standin"] is True
    assert second.pasted is not None and second.pasted.size == second.start.inversion.photo.size
    assert first.origin is None and second.origin is inversion.reconstruction(second.start.inversion, truncate=False)
    assert info["render_mode"] == "stored" and info["render_note"].startswith("Rendering the stored codes")


def test_strip_outputs(standin_runs):
    *_, strip, _ = standin_runs
    assert len(strip.frames) == 2 and strip.strengths == pytest.approx([-0.3, 0.3])
    assert strip.strip.size == (2 * cc.FRAME_SIZE, cc.FRAME_SIZE)
    assert strip.gif.is_file() and strip.mp4.is_file() and strip.mp4.stat().st_size > 0
    assert Image.open(strip.gif).n_frames == 2
    info = strip.to_dict()
    assert info["clip_margins"] is None and info["clip_note"] == "The CLIP margin was not asked for."
    assert 0.99 < info["straightness_phi"] <= 1.0 + 1e-6


def test_seed_start_is_reproducible_and_truncated(standin_runs):
    a, b = cc.start_from_seed(7), cc.start_from_seed(7)
    assert torch.equal(a.wplus, b.wplus) and a.seed == 7 and a.kind == "seed"
    assert not torch.equal(a.wplus, cc.start_from_seed(8).wplus)
    with pytest.raises(InputError, match="The seed must be a whole number"):
        cc.start_from_seed(-1)


def test_cli_edit_from_a_seed(standin_runs, tmp_path, capsys):
    out = tmp_path / "older.png"
    code = cc.main(["edit", "--seed", "5", "--path", "Older ↔ younger", "--strength", "0.15", "--out", str(out),
                    "--stand-in-weights"])
    assert code == 0 and Image.open(out).size == (1024, 1024)
    info = json.loads(capsys.readouterr().out)
    assert info["seed"] == 5 and info["steps"] == 1 and info["standin"] is True
    assert cc.main(["edit", "--seed", "5", "--path", "wings", "--strength", "1", "--out", str(out)]) == 2
    assert "error: Unknown path 'wings'" in capsys.readouterr().err


def test_bad_requests_are_clear(standin_runs):
    with pytest.raises(InputError, match="^Please upload a photo or give a seed.$"):
        cc.edit(None, seed=None, path=0)
    with pytest.raises(InputError, match="^Unknown path 'wings' in the attributes corpus. Paths: Feminine"):
        cc.edit(None, seed=1, path="wings")
    with pytest.raises(InputError, match="^Unknown corpus 'poems'"):
        cc.edit(None, seed=1, corpus="poems", path=0)
    with pytest.raises(InputError, match=r"^The step size must be between 0\.01 and 1, not 5\.0\.$"):
        cc.edit(None, seed=1, path=0, eps=5.0)
    with pytest.raises(InputError, match="^Unknown rendering mode 'twice'"):
        cc.edit(None, seed=1, path=0, render_mode="twice")


# --------------------------------------------------------------------------- CLIP margin

@pytest.fixture(scope="module")
def tiny_clip() -> ClipEncoder:
    tiny = TinyClipConfig()
    return ClipEncoder(load_clip(standin_clip_state_dict(0, tiny=tiny), tiny=tiny))


def test_margin_is_computed_and_labelled_as_standin(tiny_clip, monkeypatch):
    monkeypatch.setattr(cc.measure, "get_clip", lambda: (tiny_clip, True))
    preset = cc.presets("attributes")[2]
    images = [Image.new("RGB", (64, 64), c) for c in ((200, 10, 10), (10, 200, 10))]
    margins = cc.clip_margins(images, preset)
    feats = tiny_clip.encode_images(torch.stack([torch.from_numpy(np.array(i.resize((32, 32)))).permute(2, 0, 1)
                                                 for i in images]).float() / 255, generator_range=False)
    text = tiny_clip.encode_texts([preset.positive, preset.negative])
    assert margins.values == pytest.approx((feats @ text[0] - feats @ text[1]).tolist(), abs=1e-5)
    assert margins.standin and "NOT meaningful" in margins.note
    assert cc.margin_plot([-1.0, 1.0], margins, preset).size[0] > 100


def test_margin_without_clip_weights_says_so(monkeypatch):
    def missing():
        raise MissingWeightsError("no clip", key="clip_vit_b32")

    monkeypatch.setattr(cc.measure, "get_clip", missing)
    margins = cc.clip_margins([Image.new("RGB", (8, 8))], cc.presets("attributes")[0])
    assert margins.values is None and margins.note.startswith("CLIP weights (clip_vit_b32) are not available")


# --------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def tiny_generator():
    """Our StyleGAN2 at 16 px with 32 channels everywhere (6 W+ rows, w of 64), stand-in weights."""
    original = sg.channel_table
    sg.channel_table = lambda _cm: {2 ** i: 32 for i in range(2, 11)}
    try:
        G = sg.Generator(16, style_dim=64, n_mlp=2, channel_multiplier=1)
    finally:
        sg.channel_table = original
    G.load_state_dict(standin_state_dict(G, lambda n, _t: sg._rule_for(sg._ROSINALITY_RULES, n), 0))
    return G.eval(), G.mean_latent(512, seed=0)


def test_training_learns_a_path_on_cpu(tiny_generator, tiny_clip, tmp_path):
    G, mean = tiny_generator
    cfg = tr.TrainConfig(dipoles=[SMILE, AGE], num_dipoles=8, layers=3, iterations=120, batch_size=6, lr=0.05,
                         min_shift=0.5, max_shift=1.0)
    lss = tr.train(G, mean, tiny_clip, cfg)
    quarter = len(cfg.history) // 4
    first, last = np.mean(cfg.history[:quarter]), np.mean(cfg.history[-quarter:])
    print(f"[train] loss {first:.3f} -> {last:.3f}, Jung radius {cfg.radius:.2f}")
    assert last < 0.85 * first

    # The learned direction raises cos(img, A) − cos(img, B) on faces it never saw; a random one does not.
    codes = tr.sample_codes(G, mean, 8, 0.7, torch.Generator().manual_seed(123))
    text = tiny_clip.encode_texts(list(SMILE))
    with torch.no_grad():
        def margin(c):
            e = tiny_clip.encode_generator_output_official(G(c))
            return e @ text[0] - e @ text[1]

        d = lss.direction(codes[:, :3].reshape(8, -1), 0)
        learned = margin(codes + net.pad_shift(1.0 * d, 6, 64)) - margin(codes)
        rand = torch.nn.functional.normalize(torch.randn(d.shape, generator=torch.Generator().manual_seed(1)), dim=1)
        random = margin(codes + net.pad_shift(1.0 * rand, 6, 64)) - margin(codes)
    print(f"[train] margin change learned {learned.mean():.4f}, random {random.mean():.4f}")
    assert bool((learned > 0).all()) and float(learned.mean()) > 3 * float(random.abs().mean())

    # Written in the official layout and read back strictly.
    out = tr.write_experiment(lss, cfg, tmp_path / "exp", seconds=1.0)
    state = torch.load(out / "models" / "latent_support_sets.pt", weights_only=True)
    assert sorted(state) == ["LOGGAMMA", "SUPPORT_SETS"] and state["SUPPORT_SETS"].shape == (2, 2 * 8 * 3 * 64)
    again = net.load_support_sets(out / "models" / "latent_support_sets.pt", dim=3 * 64)
    assert torch.equal(again.SUPPORT_SETS, lss.SUPPORT_SETS)
    assert json.loads((out / "models" / "semantic_dipoles.json").read_text()) == [list(SMILE), list(AGE)]
    assert json.loads((out / "args.json").read_text())["stylegan_layer"] == 2


def test_training_starts_at_the_official_init(tiny_generator, tiny_clip):
    G, mean = tiny_generator
    cfg = tr.TrainConfig(dipoles=[SMILE], num_dipoles=4, layers=2, iterations=0, radius=10.0)
    lss = tr.train(G, mean, tiny_clip, cfg)
    rows = lss.SUPPORT_SETS.view(1, 8, 128)
    assert torch.allclose(rows[:, 1::2], -rows[:, 0::2])
    assert torch.allclose(rows.norm(dim=2), torch.full((1, 8), 9.0), atol=1e-4)  # r_0 = 0.9 R
    assert abs(float(lss.LOGGAMMA) - np.log(np.log(2) / (2 * 9.0) ** 2)) < 1e-5


def test_trained_folder_is_offered_by_the_tab(tmp_path, monkeypatch):
    monkeypatch.setenv(tr.TRAINED_ENV, str(tmp_path))
    lss = net.load_support_sets(net.standin_state(1, num_dipoles=2))
    cfg = tr.TrainConfig(dipoles=[("a picture of a person with a hat.", "a picture of a bare-headed person.")])
    tr.write_experiment(lss, cfg, tmp_path / "hats", seconds=0.0)
    assert "trained:hats" in cc.corpus_names()
    model = cc.get_paths("trained:hats")
    assert model.paths[0].positive == "a picture of a person with a hat." and model.support_sets.num_paths == 1
    assert model.index("a picture of a person with a hat.") == 0


def test_training_rejects_bad_dipoles(tiny_generator, tiny_clip):
    G, mean = tiny_generator
    with pytest.raises(InputError, match="two different, non-empty sentences"):
        tr.train(G, mean, tiny_clip, tr.TrainConfig(dipoles=[("same.", "same.")], layers=2, iterations=1))
