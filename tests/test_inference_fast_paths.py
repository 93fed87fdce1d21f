"""The CPU inference shortcuts of StyleGAN2 and CLIP equal the plain operations they replace."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from backends.networks import stylegan2 as sg


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("batch, noise_batch", [(1, 1), (2, 1), (2, 2)])
@pytest.mark.parametrize("threads", [1, 2])
def test_noise_leaky_relu_equals_the_plain_epilogue(batch: int, noise_batch: int, threads: int) -> None:
    x = torch.randn(batch, 8, 70, 70, generator=_gen(1)).contiguous(memory_format=torch.channels_last)
    noise = torch.randn(noise_batch, 1, 70, 70, generator=_gen(2))
    strength = torch.tensor([0.3])
    expected = F.leaky_relu(x + strength * noise, sg.LEAKY_SLOPE)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        out = sg.noise_leaky_relu_(x.clone(memory_format=torch.channels_last), noise, strength)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    plain = sg.noise_leaky_relu_(x.contiguous(), noise, strength)  # NCHW: the addcmul fallback
    torch.testing.assert_close(plain, expected, rtol=0, atol=1e-6)


def test_scaled_weight_is_the_product_in_channels_last_layout() -> None:
    weight = torch.randn(1, 6, 4, 3, 3, generator=_gen(3))
    factors = torch.randn(6, 4, generator=_gen(4))
    product = weight[0] * factors[:, :, None, None]
    direct = sg._scaled_weight(weight, factors, transposed=False)
    transposed = sg._scaled_weight(weight, factors, transposed=True)
    assert direct.is_contiguous(memory_format=torch.channels_last)
    assert transposed.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(direct, product) and torch.equal(transposed, product.transpose(0, 1))


def test_pointwise_conv_equals_conv2d() -> None:
    x = torch.randn(1, 16, 9, 11, generator=_gen(5)).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(3, 16, 1, 1, generator=_gen(6)), torch.randn(3, generator=_gen(7))
    torch.testing.assert_close(sg._pointwise_conv(x, weight, bias), F.conv2d(x, weight, bias), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sg._pointwise_conv(x, weight, None), F.conv2d(x, weight), rtol=1e-5, atol=1e-5)


def test_folded_one_image_layer_equals_the_shared_batch_form() -> None:
    """One image (weights folded) and the same image twice in a batch (shared weight) agree."""
    torch.manual_seed(8)
    for upsample in (False, True):
        layer = sg.StyledConv(16, 8, 512, upsample=upsample).eval()
        with torch.no_grad():
            layer.noise.weight.fill_(0.2)
            layer.activate.bias.normal_()
        x = torch.randn(1, 16, 12, 12).contiguous(memory_format=torch.channels_last)
        s = torch.randn(1, 16) + 1
        side = 24 if upsample else 12
        noise = torch.randn(1, 1, side, side)
        with torch.inference_mode():
            one = layer.forward_styled(x, s, noise)
            two = layer.forward_styled(x.repeat(2, 1, 1, 1), s.repeat(2, 1), noise)
        torch.testing.assert_close(one, two[:1], rtol=1e-5, atol=1e-5)


def test_weight_sum_of_squares_cache_follows_weight_changes() -> None:
    conv = sg.ModulatedConv2d(4, 4, 3, 512)
    first = conv._sumsq.get(conv.weight).clone()
    with torch.no_grad():
        conv.weight.mul_(2)
    torch.testing.assert_close(conv._sumsq.get(conv.weight), 4 * first)


@pytest.mark.parametrize("with_bias", [False, True])
def test_up_conv_with_a_zero_row_appended_equals_the_exact_one(with_bias: bool) -> None:
    """The faster path (one zero input row appended, the extra output rows sliced off) gives the same numbers."""
    layer = sg.ModulatedConv2d(256, 8, 3, 512, upsample=True)
    x = torch.randn(1, 256, 128, 128, generator=_gen(9)).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(256, 8, 3, 3, generator=_gen(10))  # [in, out, ky, kx], asymmetric taps
    bias = torch.randn(8, generator=_gen(11)) if with_bias else None
    expected = layer.blur(F.conv_transpose2d(x, weight, stride=2), bias)
    assert sg._pad_row(x)
    out = sg.up_conv_blur(x, weight, layer.blur, bias)
    assert out.shape == (1, 8, 256, 256) and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    torch.testing.assert_close(sg.up_conv_blur(x, weight, layer.blur, bias, pad_row=False), expected, rtol=0,
                               atol=1e-5 * float(expected.abs().max()))  # forced either way (the bench)
    with sg.exact_up_convs():  # what the benches count FLOPs under
        assert not sg._pad_row(x)
        torch.testing.assert_close(sg.up_conv_blur(x, weight, layer.blur, bias), expected, rtol=0,
                                   atol=1e-5 * float(expected.abs().max()))
    assert sg._pad_row(x)


def test_zero_row_appended_only_where_it_was_measured_faster() -> None:
    def x(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.empty(*shape, dtype=dtype).contiguous(memory_format=torch.channels_last)

    assert sg._pad_row(x(1, 256, 128, 128))  # G-1024's 128 -> 256 up-conv
    assert sg._pad_row(x(1, 64, 512, 512))  # and 512 -> 1024
    assert not sg._pad_row(x(1, 512, 64, 64))  # no gain below 256x128^2 elements
    assert not sg._pad_row(x(1, 128, 128, 128))  # G-256's 128 -> 256 up-conv
    assert not sg._pad_row(x(2, 256, 128, 128))  # batches keep the exact shape
    assert not sg._pad_row(x(1, 256, 128, 128, dtype=torch.bfloat16))
    assert not sg._pad_row(torch.empty(1, 256, 128, 128))  # NCHW


needs_nnpack = pytest.mark.skipif(not sg._nnpack_ready(), reason="this torch build has no NNPACK (every 3x3 conv "
                                  "is oneDNN's direct one there; the Winograd path never runs)")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@needs_nnpack
@pytest.mark.parametrize("with_bias", [False, True])
def test_winograd_conv_equals_the_direct_conv(one_thread, with_bias: bool) -> None:
    gen = _gen(21)
    x = torch.randn(1, 64, 40, 24, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = 0.05 * torch.randn(96, 64, 3, 3, generator=gen)
    bias = torch.randn(96, generator=gen) if with_bias else None
    expected = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), padding=1)
    out = sg.winograd_conv3x3(x, weight, bias)
    assert out.shape == (1, 96, 40, 24) and out.is_contiguous(memory_format=torch.channels_last)
    # Winograd F(6x6, 3x3) in float32 rounds to about 1e-5 of the output's range (the direct conv: 2e-6).
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=5e-5 * float(expected.abs().max()))


@needs_nnpack
def test_winograd_only_where_it_was_measured_faster(one_thread) -> None:
    def x(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.empty(*shape, dtype=dtype).contiguous(memory_format=torch.channels_last)

    assert sg._winograd(x(1, 512, 32, 32), 512)  # G-1024 and G-256 at 32^2
    assert sg._winograd(x(1, 512, 64, 64), 512)
    assert sg._winograd(x(1, 256, 128, 128), 256)  # G-1024 at 128^2
    assert sg._winograd(x(1, 256, 64, 64), 256)  # G-256 at 64^2
    assert not sg._winograd(x(1, 256, 32, 32), 256)  # too little work per weight (e4e's 256 stage)
    assert not sg._winograd(x(1, 512, 16, 16), 512)
    assert not sg._winograd(x(1, 128, 128, 128), 128)  # too few channels
    assert not sg._winograd(x(1, 128, 256, 256), 128)
    assert not sg._winograd(x(1, 512, 64, 64), 128)  # (the smaller side counts)
    assert not sg._winograd(x(2, 512, 32, 32), 512)  # batches: the shared-weight batched conv
    assert not sg._winograd(x(1, 512, 32, 32, dtype=torch.bfloat16), 512)
    assert not sg._winograd(torch.empty(1, 512, 32, 32), 512)  # NCHW
    with sg.direct_convs():
        assert not sg._winograd(x(1, 512, 32, 32), 512)
    torch.set_num_threads(2)  # NNPACK's own pool loses to oneDNN's on two threads
    assert not sg._winograd(x(1, 512, 32, 32), 512)


@needs_nnpack
def test_winograd_layer_equals_the_direct_one(one_thread) -> None:
    """A wide layer on one thread (Winograd) against the same layer inside ``direct_convs()``, both forms."""
    torch.manual_seed(22)
    for c, side in ((512, 32), (256, 8)):  # the folded form, and the shared one (activations < weight)
        conv = sg.ModulatedConv2d(c, c, 3, 512)
        x = torch.randn(1, c, side, side).contiguous(memory_format=torch.channels_last)
        s = torch.randn(1, c) + 1
        bias = torch.randn(c)
        with torch.inference_mode():
            with sg.direct_convs():
                expected = conv._conv(x, s, gain=2.0, bias=bias)
            if side == 8:  # the rule keeps small inputs direct: widen it for this check
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(sg, "WINOGRAD_MIN_WIDTH", 8)
                    assert sg._winograd(x, c)
                    out = conv._conv(x, s, gain=2.0, bias=bias)
            else:
                assert sg._winograd(x, c)
                out = conv._conv(x, s, gain=2.0, bias=bias)
        torch.testing.assert_close(out, expected, rtol=0, atol=5e-5 * float(expected.abs().max()))
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("upsample", [False, True])
def test_weight_kept_channels_innermost_with_the_same_values(upsample: bool) -> None:
    """The stored weight's layout changes at the first inference; its values, keys and results do not."""
    torch.manual_seed(12)
    conv = sg.ModulatedConv2d(64, 32, 3, 512, upsample=upsample)
    before = conv.weight.detach().clone()
    x = torch.randn(1, 64, 4, 4).contiguous(memory_format=torch.channels_last)  # small: the shared form
    s = torch.randn(1, 64) + 1
    reference = conv._weights(s, None)[0]  # the official per-sample weight [out, in, k, k]
    with torch.inference_mode():
        out = conv._conv(x, s, gain=2.0)
    order = (0, 2, 3, 4, 1) if upsample else (0, 1, 3, 4, 2)
    assert conv.weight.permute(order).is_contiguous() and not conv.weight.is_contiguous()
    assert torch.equal(conv.weight.detach(), before) and conv.weight.requires_grad
    if upsample:
        expected = conv.blur(F.conv_transpose2d(x, reference.transpose(0, 1), stride=2)) * 2.0
    else:
        expected = F.conv2d(x, reference, padding=1) * 2.0
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    state = {k: v.clone() for k, v in conv.state_dict().items()}
    fresh = sg.ModulatedConv2d(64, 32, 3, 512, upsample=upsample)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.weight.detach(), before)
    assert conv.to(torch.bfloat16).weight.permute(order).is_contiguous()  # .to() keeps the layout


def test_gradients_after_an_inference_pass_are_bit_identical() -> None:
    """FALCO's step through a generator that rendered at inference first (its weights laid out anew)
    computes exactly what it computes through one that never did: the autograd path reads the weights
    in the checkpoint's layout."""
    torch.manual_seed(13)
    fresh = sg.Generator(64, channel_multiplier=1).eval().requires_grad_(False)
    used = copy.deepcopy(fresh)
    w = torch.randn(1, used.n_latent, 512)
    with torch.inference_mode():
        used.synthesis(w)
    assert not used.convs[0].conv.weight.is_contiguous() and fresh.convs[0].conv.weight.is_contiguous()
    grads = []
    for g in (fresh, used):
        wg = w.clone().requires_grad_(True)
        g.synthesis(wg).square().mean().backward()
        grads.append(wg.grad)
    assert torch.equal(grads[0], grads[1])


def test_clip_sequence_first_gives_the_batch_first_numbers() -> None:
    from backends.networks import clip as clip_net

    tiny = clip_net.TinyClipConfig()
    model = clip_net.load_clip(clip_net.standin_clip_state_dict(tiny=tiny), tiny=tiny)
    batch_first = copy.deepcopy(model)
    for module in batch_first.modules():
        if hasattr(module, "batch_first"):
            module.batch_first = True
    assert not model.transformer.batch_first
    tokens = clip_net.tokenize(["a smiling face", "an old man", "a cat"])
    images = torch.rand(3, 3, 32, 32, generator=_gen(9))
    with torch.inference_mode():
        torch.testing.assert_close(model.encode_text(tokens), batch_first.encode_text(tokens), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.encode_image(images), batch_first.encode_image(images), rtol=1e-5, atol=1e-5)
