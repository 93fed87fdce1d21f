"""PoS-subspaces backend on tiny models: vocabulary, themes, encoding cache, diagnostics, and the
text-to-image wiring (tiny CLIP text model, UNet and VAE built from config dicts) showing that the
theme removal is what reaches the UNet's cross-attention conditioning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from backends import pos_subspaces as ps
from backends.errors import InputError, MissingWeightsError
from backends.networks.clip import clip_text_embeddings
from backends.networks.pos_subspaces import normalise
from backends.networks.text_to_image import TINY_ID, ClipBpeTokenizer

WORDNET = Path("/usr/share/wordnet")
PROMPT = "a portrait of a woman in a garden, painted by Claude Monet"
SMALL = 24  # PoS words per category in these tests


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    ps.clear_learned()


@pytest.fixture(scope="module")
def tiny_clip():
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    return CLIP(embed_dim=16, quick_gelu=True,
                vision_cfg=CLIPVisionCfg(layers=1, width=32, patch_size=16, image_size=32, head_width=16),
                text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)).eval()


@pytest.fixture(scope="module")
def tiny_model():
    return ps.t2i_model(TINY_ID)


# --------------------------------------------------------------------------- vocabulary

def test_shipped_vocabulary_is_sorted_single_pos_wordnet():
    vocab = ps.vocabulary()
    assert {c: len(v) for c, v in vocab.items()} == {"N": 112219, "A": 18021, "V": 7295, "AV": 3910}
    for words in vocab.values():
        assert list(words) == sorted(words) and len(set(words)) == len(words)
    sets = [set(v) for v in vocab.values()]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    assert "dog" not in sets[0]  # "dog" is also a verb in WordNet
    assert {"oxygen", "quickly", "ultraviolet"} & (sets[0] | sets[1] | sets[3]) == {"oxygen", "quickly"}
    assert (ps.VOCAB_DIR / "LICENSE-WordNet.txt").read_text().count("Princeton University") >= 3


@pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="wordnet-base not installed")
def test_make_pos_vocab_reproduces_the_shipped_lists(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_pos_vocab", ps.ASSETS.parent / "tools" / "make_pos_vocab.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--wordnet", str(WORDNET), "--out", str(tmp_path)]) == 0
    for name in (*ps.VOCAB_FILES.values(), "LICENSE-WordNet.txt"):
        assert (tmp_path / name).read_bytes() == (ps.VOCAB_DIR / name).read_bytes(), name


def test_evenly_spaced_keeps_first_and_last():
    words = [f"w{i:03d}" for i in range(100)]
    picked = ps.evenly_spaced(words, 10)
    assert len(picked) == 10 and picked[0] == "w000" and picked[-1] == "w099" and picked == sorted(picked)
    assert ps.evenly_spaced(words, None) == words


# --------------------------------------------------------------------------- themes and inputs

def test_theme_parsing_and_bad_themes():
    theme = ps.parse_theme("artists")
    assert theme.name == "artists" and len(theme.words) >= 40 and "Claude Monet" in theme.words
    own = ps.parse_theme("artists", "Monet, monet,\n  Claude   Monet ; Turner")
    assert own.name == "your list" and own.words == ("Monet", "Claude Monet", "Turner")
    with pytest.raises(InputError, match=r"^The theme list is empty\. Paste at least 2 words"):
        ps.parse_theme("custom", "  ,\n ")
    with pytest.raises(InputError, match=r"^A theme needs at least 2 different words .* only 'Monet'\."):
        ps.parse_theme(None, "Monet, MONET")
    with pytest.raises(InputError, match=r"^These theme entries hold no letters or digits.*'\?\?\?'"):
        ps.parse_theme(None, "Monet, ???")
    with pytest.raises(InputError, match=r"^Unknown theme preset 'cubism'\. Choose one of: artists"):
        ps.parse_theme("cubism")


def test_theme_words_leave_the_pos_lists():
    theme = ps.Theme("t", ("cerulean", "oxygen"))
    words, notices = ps.category_words(theme, None)
    assert "oxygen" not in words["N"] and words["theme"] == ["cerulean", "oxygen"]
    assert notices and "kept in the theme only" in notices[0] and "oxygen" in notices[0]


def test_prompt_checks():
    tokenizer = ClipBpeTokenizer()
    with pytest.raises(InputError, match=r"^Please enter a prompt: it is empty\.$"):
        ps.check_prompt("   \n", tokenizer)
    text, notices = ps.check_prompt("a  red\nhouse", tokenizer)
    assert text == "a red house" and notices == []
    _, notices = ps.check_prompt(" ".join(["house"] * 90), tokenizer)
    assert len(notices) == 1 and notices[0].startswith("The prompt is 90 tokens long; CLIP reads only the first 75")
    assert "truncated" in notices[0]
    assert ps.unknown_words(["oxygen", "dog", "Hokusai", "Basquiat"], tokenizer) == ["Basquiat"]


# --------------------------------------------------------------------------- encoding

def test_cut_context_equals_full_clip_text_tower(tiny_clip):
    ids = ClipBpeTokenizer()(["dog", "a very long phrase about painting in oils", "Claude Monet"])[0]
    with torch.no_grad():
        full = tiny_clip.encode_text(ids)
        cut = clip_text_embeddings(tiny_clip, ids)
    assert (full - cut).abs().max() < 1e-5 * full.abs().max()


def test_encoding_keeps_input_order_and_is_cached(tiny_clip, monkeypatch):
    encoder = ps.JointSpaceEncoder(tiny_clip, standin=True)
    words = ["zebra", "a", "quickly and quietly", "oxygen", "blue"]
    together = encoder.encode(words, batch_size=2)
    one_by_one = torch.cat([encoder.encode([w]) for w in words])
    assert (together - one_by_one).abs().max() < 1e-5
    first = ps.encode_cached(encoder, words)

    def fail(texts):
        raise AssertionError("encoded again instead of reading the cache")

    monkeypatch.setattr(encoder, "encode_batch", fail)
    assert torch.equal(ps.encode_cached(encoder, words), first)


def test_diagnostics_on_a_tiny_clip(tiny_clip):
    encoder = ps.JointSpaceEncoder(tiny_clip, standin=True)
    theme = ps.Theme("painters", ("Claude Monet", "Rembrandt", "Turner", "Hokusai", "Basquiat"))
    result = ps.diagnose(PROMPT, theme, k=3, geometry="euclidean", max_words=SMALL, encoder=encoder)
    assert result.categories == ["nouns", "adjectives", "verbs", "adverbs", "theme"]
    assert result.energy_after["theme"] < 1e-6 < result.energy_before["theme"]
    assert all(0.0 <= v <= 1.0 for v in result.energy_before.values())
    assert len(result.nearest_before) == ps.NEAREST
    assert result.words_per_category == {"nouns": SMALL, "adjectives": SMALL, "verbs": SMALL, "adverbs": SMALL,
                                         "theme": 5}
    assert result.notices[0] == ps.STANDIN_NOTICE and any("sub-word pieces" in n for n in result.notices)
    json.dumps(result.to_dict())
    with pytest.raises(InputError, match=r"^k \(the subspace dimension\) must be between 1 and 16, got 40\."):
        ps.diagnose(PROMPT, theme, k=40, max_words=SMALL, encoder=encoder)
    with pytest.raises(InputError, match=r"^Please enter a text: it is empty\."):
        ps.diagnose(" ", theme, encoder=encoder)


# --------------------------------------------------------------------------- text-to-image wiring

def test_removal_reaches_the_unet_conditioning(tiny_model):
    theme = ps.parse_theme("artists")
    captured: list[torch.Tensor] = []

    def grab(module, args, kwargs):
        captured.append(kwargs["encoder_hidden_states"].detach().clone())

    handle = tiny_model.pipe.unet.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        result = ps.generate(PROMPT, theme, k=4, seed=11, steps=2, model_id=TINY_ID, max_words=SMALL)
    finally:
        handle.remove()
    learned = ps.learn(tiny_model.encoder, theme, ps.DEFAULT_LAM, "tangent", SMALL)
    states, removed = ps.conditioning_pair(tiny_model, result.prompt, learned, 4)
    assert len(captured) == 2  # one UNet call per step, both prompts batched
    for conditioning in captured:
        assert torch.allclose(conditioning[0], states[0]) and torch.allclose(conditioning[1], removed[0])
    assert torch.equal(removed[0, 0], states[0, 0])  # the start token is left alone
    assert (removed[0, 1:] - states[0, 1:]).norm(dim=-1).min() > 0
    assert torch.allclose(removed.norm(dim=-1), states.norm(dim=-1), atol=1e-4)
    # each edited state, seen as a query, has no component left in the theme subspace (tangent space)
    sub = learned.subspaces
    leftover = sub.to_tangent(normalise(removed[0, 1:])) @ sub.basis("theme", 4)
    assert leftover.abs().max() < 1e-4
    assert result.original.size == (32, 32) and result.removed.size == (32, 32)
    assert result.original.tobytes() != result.removed.tobytes()
    assert result.seed == 11 and result.standin and 0 < result.conditioning_change < 1
    again = ps.generate(PROMPT, theme, k=4, seed=11, steps=2, model_id=TINY_ID, max_words=SMALL)
    assert again.original.tobytes() == result.original.tobytes()
    with pytest.raises(InputError, match=r"^Steps must be between 1 and 50, got 51\."):
        ps.generate(PROMPT, theme, steps=51, model_id=TINY_ID, max_words=SMALL)


def test_missing_model_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FACELAB_STAND_IN", raising=False)
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", "/nonexistent")
    ps._t2i_model.cache_clear()
    with pytest.raises(MissingWeightsError, match=r"^Missing weights: model_index\.json \(SD-Turbo"):
        ps.generate(PROMPT, ps.parse_theme("artists"), max_words=SMALL)


def test_cli_learn_and_generate(tmp_path, capsys):
    out = tmp_path / "sub.safetensors"
    assert ps.main(["--stand-in", "learn", "--space", "t2i", "--model", TINY_ID, "--max-words", str(SMALL),
                    "--geometry", "euclidean", "--out", str(out)]) == 0
    learned = ps.Subspaces.load(out)
    assert learned.geometry == "euclidean" and learned.categories[-1] == "theme" and learned.dim == 32
    assert ps.main(["--stand-in", "generate", PROMPT, "--model", TINY_ID, "--max-words", str(SMALL),
                    "--seed", "5", "--out", str(tmp_path / "gen")]) == 0
    report = json.loads((tmp_path / "gen" / "result.json").read_text())
    assert report["seed"] == 5 and report["standin"] is True
    assert (tmp_path / "gen" / "original.png").is_file() and (tmp_path / "gen" / "theme_removed.png").is_file()
    assert ps.main(["generate", "  ", "--model", TINY_ID]) == 1
    assert "error: Please enter a prompt" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "gen")


def test_fast_decoder_choice_and_swap(monkeypatch):
    from diffusers import AutoencoderTiny

    monkeypatch.delenv(ps.DECODER_ENV, raising=False)
    assert ps.decoder_choice(torch.device("cpu")) == "taesd" and ps.decoder_choice(torch.device("cuda")) == "vae"
    monkeypatch.setenv(ps.DECODER_ENV, "fast")
    with pytest.raises(InputError, match=r"^FACELAB_POS_DECODER must be auto, taesd or vae, not 'fast'\."):
        ps.decoder_choice()
    # Without TAESD weights the full VAE stays, with a notice.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", "/nonexistent")
    monkeypatch.delenv("FACELAB_STAND_IN", raising=False)
    cpu = torch.device("cpu")
    kept = ps._with_decoder(ps._build_t2i_model(TINY_ID, True, cpu), "taesd", cpu)
    assert kept.decoder == "vae" and kept.notices[-1].startswith("The fast TAESD decoder is not available")
    # With (stand-in) TAESD weights the pipeline decodes the same latents with the tiny autoencoder: x8.
    monkeypatch.setenv("FACELAB_STAND_IN", "1")
    fast = ps._with_decoder(ps._build_t2i_model(TINY_ID, True, cpu), "taesd", cpu)
    assert fast.decoder == "taesd" and isinstance(fast.pipe.vae, AutoencoderTiny)
    assert fast.pipe.vae_scale_factor == 2  # latents keep the size the tiny UNet expects
    states = fast.encoder.prompt_states(PROMPT)
    image = ps._run_pipeline(fast, states, None, 0, 1, lambda f, m: None)[0]
    assert image.size == (16 * 8, 16 * 8)  # 16x16 latents, TAESD upsamples by 8


def _hf_clip_tokenizer(folder: Path):
    """A transformers CLIPTokenizer made offline from open_clip's copy of the CLIP BPE (pad "!", as SD 2.x)."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges),
             "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="!")


def test_real_loading_path_from_a_local_diffusers_folder(tmp_path, monkeypatch):
    """The non-stand-in path (from_pretrained of a diffusers folder in $FACELAB_WEIGHTS_DIR/sd_turbo, the
    pipeline's own tokenizer) on the tiny model saved in the official folder layout."""
    pipe = ps.tiny_pipeline()
    pipe.register_modules(tokenizer=_hf_clip_tokenizer(tmp_path / "tok"))
    pipe.save_pretrained(tmp_path / "weights" / "sd_turbo", safe_serialization=True)
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(ps.DECODER_ENV, "vae")
    monkeypatch.delenv("FACELAB_STAND_IN", raising=False)
    ps._t2i_model.cache_clear()
    try:
        model = ps.t2i_model()
        assert not model.standin and model.model_id == ps.SD_TURBO_ID and model.size == 32
        assert model.encoder.tokenizer.hf is not None
        ids, _ = model.encoder.tokenizer([PROMPT])
        assert torch.equal(ids, ClipBpeTokenizer()([PROMPT])[0])  # same BPE as open_clip's
        result = ps.generate(PROMPT, ps.parse_theme("artists"), k=4, seed=1, steps=1, max_words=SMALL)
        assert result.standin is False and ps.STANDIN_NOTICE not in result.notices
        assert result.original.size == (32, 32)
    finally:
        ps._t2i_model.cache_clear()


def test_another_lambda_reuses_the_prepared_decomposition(tiny_clip, monkeypatch):
    from backends.networks.pos_subspaces import decompose

    encoder = ps.JointSpaceEncoder(tiny_clip, standin=True)
    theme = ps.Theme("painters", ("Claude Monet", "Rembrandt", "Turner"))
    first = ps.learn(encoder, theme, 0.5, "tangent", SMALL)

    def fail(texts):
        raise AssertionError("the vocabulary was encoded again for a new λ")

    monkeypatch.setattr(encoder, "encode_batch", fail)
    other = ps.learn(encoder, theme, 0.2, "tangent", SMALL)
    fresh = decompose(first.encodings, tuple(first.words), lam=0.2, geometry="tangent")
    assert other.subspaces.lam == 0.2 and torch.equal(other.subspaces.bases["theme"], fresh.bases["theme"])
    assert ps.learn(encoder, theme, 0.5, "tangent", SMALL) is first
