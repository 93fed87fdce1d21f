"""The one precision policy: float16 only on CUDA with FACELAB_FP16=1, float32 everywhere else.

Nothing here needs a GPU: CUDA devices are only described (``torch.device("cuda")`` is a plain
descriptor), and the half-precision casts of the GPU steps are checked with a tiny 8x8
generator on CPU. The GPU numbers come from ``bench/bench_fp16.py --device cuda``.
"""

from __future__ import annotations

import types

import pytest
import torch

from backends import device as device_policy
from backends import inversion
from backends import reenactment as r
from backends.device import force_device, get_dtype
from backends.inversion import InversionModels
from backends.networks.stylegan2 import Generator
from backends.networks.stylemask import MaskNetwork
from backends.standin import enable_standin, standin_enabled

FAKE_CUDA = types.SimpleNamespace(type="cuda", index=0)  # quacks like torch.device("cuda:0")


def test_cpu_is_float32_even_when_fp16_is_asked(monkeypatch):
    monkeypatch.setenv("FACELAB_FP16", "1")
    assert get_dtype(torch.device("cpu")) is torch.float32
    monkeypatch.delenv("FACELAB_FP16")
    assert get_dtype(torch.device("cpu")) is torch.float32


@pytest.mark.parametrize("cuda", [torch.device("cuda"), torch.device("cuda:1"), FAKE_CUDA], ids=str)
def test_cuda_is_float16_only_with_the_flag(monkeypatch, cuda):
    monkeypatch.setenv("FACELAB_FP16", "1")
    assert get_dtype(cuda) is torch.float16
    for value in ("0", "", "true"):  # only "1" switches it on
        monkeypatch.setenv("FACELAB_FP16", value)
        assert get_dtype(cuda) is torch.float32
    monkeypatch.delenv("FACELAB_FP16")
    assert get_dtype(cuda) is torch.float32


def test_default_dtype_follows_the_process_device(monkeypatch):
    monkeypatch.setenv("FACELAB_FP16", "1")
    before = device_policy._FORCED
    try:
        force_device("cpu")
        assert get_dtype() is torch.float32
        force_device("cuda")  # only described, never touched
        assert get_dtype() is torch.float16
    finally:
        force_device(before)


def test_model_caches_are_keyed_by_dtype(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr(inversion, "get_dtype", lambda device, network=None: torch.float16)
    monkeypatch.setattr(inversion, "_cached_models", lambda *key: calls.append(key) or "models")
    assert inversion.get_models() == "models"
    assert calls == [(standin_enabled(), str(device_policy.get_device()), torch.float16)]

    fake_inv = types.SimpleNamespace(
        device=torch.device("cpu"), dtype=torch.float16, standin=True,
        generator=types.SimpleNamespace(style_sections=[512, 256]),
    )
    monkeypatch.setattr(inversion, "get_models", lambda: fake_inv)
    monkeypatch.setattr(r.stylemask, "_cached_mask_net", lambda *key: calls.append(key) or ("net", True))
    assert r.get_models().mask_net == "net"
    assert calls[-1] == (standin_enabled(), "cpu", (512, 256), torch.float16)


# --------------------------------------------------------------------------- the casts of the GPU steps


class _HalfEncoder:
    """Stands in for e4e: records the input dtype and answers in float16, as a half model would."""

    def __init__(self):
        self.seen: list[torch.dtype] = []

    def invert(self, image: torch.Tensor) -> torch.Tensor:
        self.seen.append(image.dtype)
        return torch.full((image.shape[0], 18, 512), 0.5, dtype=image.dtype)


@pytest.fixture(scope="module")
def tiny_pair() -> tuple[InversionModels, InversionModels, MaskNetwork]:
    """An 8x8 generator in float32 and a float16 copy, wrapped like the real models (CPU)."""
    torch.manual_seed(0)
    g32 = Generator(8, channel_multiplier=1).eval()
    mean = g32.mean_latent(256, seed=0)
    g16 = Generator(8, channel_multiplier=1).eval()
    g16.load_state_dict(g32.state_dict())
    g16 = g16.to(torch.float16)
    cpu = torch.device("cpu")
    m32 = InversionModels(g32, _HalfEncoder(), mean, True, cpu, torch.float32)
    m16 = InversionModels(g16, _HalfEncoder(), mean.to(torch.float16), True, cpu, torch.float16)
    net = MaskNetwork(g32.style_sections[:2]).eval()
    return m32, m16, net


def test_half_models_take_float32_inputs_and_give_float32_back(tiny_pair):
    m32, m16, net = tiny_pair
    w = torch.randn(1, m32.generator.n_latent, 512, generator=torch.Generator().manual_seed(1))

    codes = inversion.encode(m16, torch.zeros(1, 3, 256, 256))
    assert m16.encoder.seen == [torch.float16] and codes.dtype is torch.float32 and codes.device.type == "cpu"

    ref = inversion.render(m32, w, 0.7)
    half = inversion.render(m16, w, 0.7)
    assert half.dtype is torch.float32 and half.device.type == "cpu" and half.shape == ref.shape == (1, 3, 8, 8)
    assert torch.isfinite(half).all()
    assert (half - ref).abs().max() <= 0.02 * ref.abs().max() + 1e-3

    w2 = torch.randn(1, m32.generator.n_latent, 512, generator=torch.Generator().manual_seed(2))
    img32, masks32 = r._reenact_codes(r.ReenactmentModels(m32, net), w, w2, 0.7)
    img16, masks16 = r._reenact_codes(r.ReenactmentModels(m16, _half_copy(net)), w, w2, 0.7)
    assert img16.dtype is torch.float32 and img16.device.type == "cpu"
    assert (img16 - img32).abs().max() <= 0.02 * img32.abs().max() + 1e-3
    assert all(isinstance(m, float) for m in masks16)
    assert max(abs(a - b) for a, b in zip(masks16, masks32, strict=True)) < 5e-3


def _half_copy(net: MaskNetwork) -> MaskNetwork:
    copy = MaskNetwork(net.widths).eval()
    copy.load_state_dict(net.state_dict())
    return copy.to(torch.float16)


# --------------------------------------------------------------------------- the real stand-in models on CPU


def test_standin_models_on_cpu_stay_float32_with_the_fp16_flag(monkeypatch):
    """G-1024 + e4e + mask network at real size (built once, ~5-10 s; shared with the other tests)."""
    monkeypatch.setenv("FACELAB_FP16", "1")
    was_standin = standin_enabled()
    enable_standin(True)
    try:
        models = r.get_models()
        inv = models.inversion
        assert inv.device.type == "cpu" and inv.dtype is torch.float32
        assert inv.mean_latent.dtype is torch.float32 and inv.mean_latent.shape == (1, 512)
        for module in (inv.generator, inv.encoder, models.mask_net):
            tensors = list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]
            assert {t.dtype for t in tensors} == {torch.float32}
        codes = inversion.encode(inv, torch.zeros(1, 3, 256, 256))
        assert codes.dtype is torch.float32 and codes.shape == (1, 18, 512)
    finally:
        enable_standin(was_standin)
