"""The CPU bfloat16 path: detection, the FACELAB_CPU_DTYPE modes, the casts, and where it is never used.

Detection is tested with injected CPU flags, so these tests mean the same on every machine.

The numeric tests (tiny generator, tiny CLIP tower, bfloat16 against float32) are deliberately *not*
skipped on CPUs without bfloat16 units: torch then emulates bfloat16 (rounding to 8 bits of mantissa,
float32 accumulation), which is slower but computes the same rounded function, and what these tests
check is our code's casts and the size of that rounding, not the hardware. The tiny configs keep them
well under a second either way. The real-size figures come from ``bench/bench_bf16.py``.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backends import device as policy
from backends import inversion
from backends.device import cpu_dtype, cpu_has_bf16_units, get_dtype, pinned_cpu_dtype, precision_report
from backends.errors import FaceLabError
from backends.networks.clip import ClipEncoder, TinyClipConfig, load_clip, standin_clip_state_dict
from backends.networks.dfer_clip import ZeroShotClip
from backends.networks.stylegan2 import Generator, load_rosinality_checkpoint
from backends.reenactment import vox

CPU = torch.device("cpu")
X86_OLD = {"fpu", "sse2", "avx2", "avx512f", "avx512bw", "avx512_vnni"}  # AVX512 without bfloat16 units
X86_BF16 = X86_OLD | {"avx512_bf16"}
X86_AMX = X86_OLD | {"amx_tile", "amx_bf16", "amx_int8"}
ARM_BF16 = {"fp", "asimd", "sve", "bf16", "i8mm"}
ARM_OLD = {"fp", "asimd", "crc32"}
FAKE_CUDA = types.SimpleNamespace(type="cuda", index=0)


@pytest.fixture
def flags(monkeypatch):
    """Pretend this CPU has the given feature flags: ``flags(X86_BF16)``."""

    def use(value):
        monkeypatch.setattr(policy, "cpu_flags", lambda: frozenset(value))

    monkeypatch.delenv(policy.CPU_DTYPE_ENV, raising=False)
    return use


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    mse = float((a.float() - b.float()).pow(2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


# --------------------------------------------------------------------------- detection and modes


@pytest.mark.parametrize(("cpu", "units"), [(X86_OLD, False), (X86_BF16, True), (X86_AMX, True),
                                            (ARM_BF16, True), (ARM_OLD, False), (set(), False)],
                         ids=["avx512-no-bf16", "avx512-bf16", "amx", "arm-bf16", "arm-old", "nothing"])
def test_auto_picks_bfloat16_exactly_where_the_cpu_has_units(flags, cpu, units):
    flags(cpu)
    assert cpu_has_bf16_units() is units
    assert cpu_has_bf16_units(cpu) is units  # the injected form says the same
    want = torch.bfloat16 if units else torch.float32
    for network in policy.CPU_BF16_AUTO:
        assert get_dtype(CPU, network=network) is (want if policy.CPU_BF16_AUTO[network] else torch.float32)


def test_the_real_cpu_flags_agree_with_torch_probe():
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is None:
        pytest.skip("this torch has no AVX512-BF16 probe")
    if probe():
        assert cpu_has_bf16_units()


def test_fp32_forces_float32_even_with_units(flags, monkeypatch):
    flags(X86_AMX)
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, "fp32")
    assert {get_dtype(CPU, network=n) for n in policy.CPU_BF16_AUTO} == {torch.float32}
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, " FP32 ")  # case and spaces as people type them
    assert get_dtype(CPU, network="clip") is torch.float32


def test_bf16_forces_bfloat16_with_units_and_falls_back_with_a_warning_without(flags, monkeypatch):
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, "bf16")
    flags(X86_BF16)
    assert get_dtype(CPU, network="stylegan2_ffhq1024") is torch.bfloat16
    flags(X86_OLD)
    with pytest.warns(RuntimeWarning, match="no bfloat16 units"):
        assert get_dtype(CPU, network="stylegan2_ffhq1024") is torch.float32


def test_networks_without_a_bfloat16_path_stay_float32(flags, monkeypatch):
    """SD-Turbo, the PoS encoders, FALCO's networks and the parity tests never name a network."""
    flags(X86_AMX)
    for mode in ("auto", "bf16", "fp32"):
        monkeypatch.setenv(policy.CPU_DTYPE_ENV, mode)
        assert get_dtype(CPU) is torch.float32 and cpu_dtype(None) is torch.float32
    with pytest.raises(ValueError, match="no CPU bfloat16 path"):
        get_dtype(CPU, network="stylegan2_ffhq512")


def test_a_wrong_mode_is_a_clear_error(flags, monkeypatch):
    flags(X86_BF16)
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, "half")
    with pytest.raises(ValueError, match="FACELAB_CPU_DTYPE must be one of auto, bf16, fp32, not 'half'"):
        get_dtype(CPU, network="clip")
    with pytest.raises(ValueError):
        policy.force_cpu_dtype("bfloat16")


def test_the_gpu_keeps_its_own_policy(flags, monkeypatch):
    flags(X86_AMX)
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, "bf16")
    monkeypatch.delenv("FACELAB_FP16", raising=False)
    assert get_dtype(FAKE_CUDA, network="stylegan2_ffhq1024") is torch.float32
    monkeypatch.setenv("FACELAB_FP16", "1")
    assert get_dtype(FAKE_CUDA, network="stylegan2_ffhq1024") is torch.float16
    assert get_dtype(CPU, network="stylegan2_ffhq1024") is torch.bfloat16  # FACELAB_FP16 is CUDA only


def test_a_pin_overrides_the_environment_for_a_block_then_lets_go(flags, monkeypatch):
    flags(X86_AMX)
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, "bf16")
    with pinned_cpu_dtype("fp32"):
        assert get_dtype(CPU, network="stylegan2_vox256") is torch.float32
        with pinned_cpu_dtype("auto"):
            assert get_dtype(CPU, network="stylegan2_vox256") is torch.bfloat16
        assert policy.cpu_dtype_mode() == "fp32"
    assert policy.cpu_dtype_mode() == "bf16"


def test_the_runtime_report_says_which_precision_runs(flags, monkeypatch):
    flags(X86_BF16)
    report = precision_report(CPU)
    assert report["cpu_dtype_mode"] == "auto" and report["cpu_bf16_units"] is True
    assert report["networks"]["stylegan2_ffhq1024"] == "bfloat16" and report["other_networks"] == "float32"
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, "fp32")
    assert set(precision_report(CPU)["networks"].values()) == {"float32"}


# --------------------------------------------------------------------------- the loaders ask for their network


def test_cached_loaders_pass_the_policy_dtype_of_their_network(flags, monkeypatch):
    from backends.expression import classifiers
    from backends.latent_paths import measure

    flags(X86_BF16)
    monkeypatch.setattr(policy, "CPU_BF16_AUTO", {**policy.CPU_BF16_AUTO, "clip": False})  # one network opted out
    calls: list[tuple] = []
    monkeypatch.setattr(inversion, "_cached_models", lambda *key: calls.append(("inv", *key)))
    monkeypatch.setattr(vox, "_cached_vox", lambda *key: calls.append(("vox", *key)))
    monkeypatch.setattr(measure, "_cached_clip", lambda *key: calls.append(("clip", *key)) or ("enc", True))
    monkeypatch.setattr(classifiers, "_cached_dfer_clip", lambda *key: calls.append(("dfer", *key)) or (None, True))
    monkeypatch.setattr(classifiers, "DferClipClassifier", lambda *a: "classifier")
    inversion.get_models()
    vox.get_vox_models()
    measure.get_clip()
    classifiers.get_classifier("dfer_clip", "dfew")
    dtypes = {c[0]: c[-1] for c in calls}
    assert dtypes == {"inv": torch.bfloat16, "vox": torch.bfloat16, "clip": torch.float32, "dfer": torch.bfloat16}


def test_checkpoint_loaders_never_consult_the_policy(flags, monkeypatch):
    """How the parity tests stay float32: they load through the network modules' loaders, which build
    float32 modules whatever FACELAB_CPU_DTYPE says; only the app's cached loaders above cast."""
    flags(X86_AMX)
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, "bf16")
    g = Generator(8, channel_multiplier=1)
    loaded = load_rosinality_checkpoint({"g_ema": g.state_dict()}, size=8, channel_multiplier=1)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}


# --------------------------------------------------------------------------- numbers (tiny configs)


@pytest.fixture(scope="module")
def tiny_generators() -> tuple[Generator, Generator, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    g32 = Generator(32, channel_multiplier=1).eval()
    with torch.inference_mode():
        mean = g32.mean_latent(512, seed=0)
        z = torch.randn(2, 512, generator=torch.Generator().manual_seed(1))
        w = g32.truncate(g32.to_wplus(g32.mapping(z)), 0.7, mean)
    g16 = Generator(32, channel_multiplier=1).eval()
    g16.load_state_dict(g32.state_dict())
    return g32, g16.to(torch.bfloat16), mean, w


def test_bfloat16_generator_render_is_close_to_float32(tiny_generators):
    g32, g16, mean, w = tiny_generators
    cpu = torch.device("cpu")
    m32 = inversion.InversionModels(g32, None, mean, True, cpu, torch.float32)  # type: ignore[arg-type]
    m16 = inversion.InversionModels(g16, None, mean.to(torch.bfloat16), True, cpu, torch.bfloat16)  # type: ignore[arg-type]
    ref, low = inversion.render(m32, w, 0.7), inversion.render(m16, w, 0.7)
    assert low.dtype is torch.float32 and low.shape == ref.shape == (2, 3, 32, 32)
    spread = float(ref.max() - ref.min())
    assert spread > 0.1  # a real image, not a constant that any precision reproduces
    value = psnr(low, ref, spread)
    assert value > 45, f"{value:.1f} dB"  # measured 55 dB here (8-bit mantissa; real size: bench_bf16.py)
    assert psnr(torch.zeros_like(ref), ref, spread) < 20  # the measure tells images apart


def test_vox_steps_cast_inputs_and_give_float32_back(tiny_generators, monkeypatch):
    g32, g16, mean, w = tiny_generators
    models = vox.VoxModels(g16, None, mean.to(torch.bfloat16), True, CPU, torch.bfloat16)  # type: ignore[arg-type]
    monkeypatch.setattr(vox, "get_vox_models", lambda: models)
    deltas = [None] * g16.num_conv_layers
    deltas[1] = torch.full((1, g16.convs[0].conv.weight.shape[1], g16.convs[0].conv.weight.shape[2]), 0.01)
    out = vox.render_on_device(w, 1.0, deltas)  # float32 codes and float32 offsets in, float32 image out
    with torch.inference_mode():
        ref = g32(w, weight_deltas=deltas)
    assert out.dtype is torch.float32 and psnr(out, ref, float(ref.max() - ref.min())) > 45  # measured 55 dB


def test_bfloat16_generator_refuses_gradients(tiny_generators):
    """FALCO-style optimisation of W+ through the bfloat16 inference copy is an error, not a silent loss."""
    g32, g16, mean, w = tiny_generators
    code = w.to(torch.bfloat16).clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="gradients through it are refused"):
        g16(code)
    g32(w.clone().requires_grad_(True)).sum().backward()  # float32 is what autograd gets
    with torch.no_grad():
        assert g16(code).dtype is torch.bfloat16  # inference without gradients is fine


def test_contraclip_training_loads_float32_models_under_autograd(flags, monkeypatch, tmp_path):
    from backends.latent_paths import measure, training

    flags(X86_AMX)
    monkeypatch.setenv(policy.CPU_DTYPE_ENV, "bf16")
    seen: list[torch.dtype] = []

    class Stop(FaceLabError):
        pass

    def fake_models():
        seen.append(get_dtype(CPU, network="stylegan2_ffhq1024"))
        return None

    def fake_clip():
        seen.append(get_dtype(CPU, network="clip"))
        raise Stop("stop before training")

    monkeypatch.setattr(inversion, "get_models", fake_models)
    monkeypatch.setattr(measure, "get_clip", fake_clip)
    assert training.main(["--dipole", "a smiling face", "a sad face", "--out", str(tmp_path / "x")]) == 2
    assert seen == [torch.float32, torch.float32]
    assert get_dtype(CPU, network="clip") is torch.bfloat16  # the pin ended with the loading


def tiny_clip_pair() -> tuple[ClipEncoder, ClipEncoder]:
    tiny = TinyClipConfig()
    state = standin_clip_state_dict(base_seed=0, tiny=tiny)
    return ClipEncoder(load_clip(state, tiny=tiny)), ClipEncoder(load_clip(state, tiny=tiny).to(torch.bfloat16))


def test_bfloat16_clip_tower_embeddings_match_float32():
    c32, c16 = tiny_clip_pair()
    images = torch.rand(3, 3, 48, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    e32, e16 = c32.encode_images(images), c16.encode_images(images)
    assert e16.dtype is torch.float32 and e16.shape == e32.shape
    assert float(F.cosine_similarity(e32, e16).min()) > 0.999  # measured 0.99998
    t32, t16 = c32.encode_texts(["a smiling face", "an old man"]), c16.encode_texts(["a smiling face", "an old man"])
    assert t16.dtype is torch.float32 and float(F.cosine_similarity(t32, t16).min()) > 0.999  # measured 0.9999
    # The images differ from each other far more than the two precisions do.
    assert float(F.cosine_similarity(e32[0:1], e32[1:2])) < float(F.cosine_similarity(e32, e16).min())


def test_zero_shot_clip_keeps_its_normalisation_float32_with_a_bfloat16_tower():
    tiny = TinyClipConfig()
    state = standin_clip_state_dict(base_seed=0, tiny=tiny)
    classes = ("happy", "sad")
    z32 = ZeroShotClip(load_clip(state, tiny=tiny), classes, {"happy": "smiling", "sad": "frowning"})
    z16 = ZeroShotClip(load_clip(state, tiny=tiny), classes, {"happy": "smiling", "sad": "frowning"})
    z16.clip.to(torch.bfloat16)  # what the cached loader does
    assert z16.mean.dtype is torch.float32
    frames = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    f32, f16 = z32.encode_frames(frames), z16.encode_frames(frames)
    assert f16.dtype is torch.float32 and float(F.cosine_similarity(f32, f16).min()) > 0.999
    p32 = z32.logits_from_frame_features(f32[None]).softmax(-1)
    p16 = z16.logits_from_frame_features(f16[None]).softmax(-1)
    assert p16.dtype is torch.float32 and float((p16 - p32).abs().max()) < 0.05
