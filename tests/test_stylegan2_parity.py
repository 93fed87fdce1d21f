"""Parity of our StyleGAN2 generator with the official rosinality and genforce code.

Each parity test rebuilds the seeded stand-in weights exactly as the fixture
READMEs describe, writes them in the official checkpoint structure, loads the
file through our own loader and compares with the outputs the official code
produced for the same weights. Tolerances are the READMEs' thresholds; a
failing case is a bug in our code, never a reason to loosen them.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backends.errors import CheckpointError
from backends.networks import stylegan2 as sg
from tests.fixture_utils import (
    family_dir,
    genforce_generator_state,
    load_case,
    load_json,
    max_abs_diff,
    rosinality_g_ema,
)

ROS = "stylegan2_rosinality"
GF = "stylegan2_genforce"
HR = "hyperreenact"

# Thresholds from the fixture READMEs.
ROS_W_TOL = 1e-5      # w and styles
ROS_IMG_TOL = 1e-4    # images
GF_TOL = 1e-4         # w, W+, styles and images
HR_IMG_TOL = 1e-4


def assert_close(actual: torch.Tensor, expected: np.ndarray, tol: float, what: str) -> float:
    """atol = rtol = ``tol`` comparison; returns the max abs diff for the report."""
    actual_np = actual.detach().cpu().numpy()
    assert actual_np.shape == expected.shape, f"{what}: shape {actual_np.shape} != {expected.shape}"
    diff = max_abs_diff(actual_np, expected)
    ok = np.allclose(actual_np, expected, atol=tol, rtol=tol)
    print(f"[parity] {what}: max|diff| = {diff:.3g} (tol {tol:g})")
    assert ok, f"{what}: max abs diff {diff:.3g} exceeds atol/rtol {tol:g}"
    return diff


def t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


# ---------------------------------------------------------------------------
# Generators loaded through our loaders from files in the official structure
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def g_ffhq(tmp_path_factory) -> sg.Generator:
    """Config A (1024, cm 2) from a stylegan2-ffhq-config-f.pt-like file."""
    path = tmp_path_factory.mktemp("ros_a") / "stylegan2-ffhq-config-f.pt"
    torch.save({"g_ema": rosinality_g_ema("a"), "latent_avg": torch.zeros(512)}, path)
    return sg.load_rosinality_checkpoint(path, size=1024, channel_multiplier=2)


@pytest.fixture(scope="module")
def g_vox(tmp_path_factory) -> sg.Generator:
    """Config B (256, cm 1) from a stylegan-voxceleb.pt-like file."""
    path = tmp_path_factory.mktemp("ros_b") / "stylegan-voxceleb.pt"
    torch.save({"g_ema": rosinality_g_ema("b"), "latent_avg": torch.zeros(512)}, path)
    return sg.load_rosinality_checkpoint(path, size=256, channel_multiplier=1)


@pytest.fixture(scope="module")
def g_genforce(tmp_path_factory) -> sg.Generator:
    """The genforce FFHQ-1024 generator from a stylegan2_ffhq1024.pth-like file.

    ``generator`` is deliberately different (zeros) so the test proves that
    ``generator_smooth`` is the entry read; the discriminator must be ignored.
    """
    smooth = genforce_generator_state()
    decoy = {k: torch.zeros_like(v) for k, v in smooth.items()}
    path = tmp_path_factory.mktemp("gf") / "stylegan2_ffhq1024.pth"
    torch.save({"generator_smooth": smooth, "generator": decoy,
                "discriminator": {"b0.conv.weight": torch.zeros(2, 2)}}, path)
    return sg.load_genforce_checkpoint(path)


# ---------------------------------------------------------------------------
# stylegan2_rosinality
# ---------------------------------------------------------------------------


def test_rosinality_key_layout_matches_official(g_ffhq, g_vox):
    for G, config in ((g_ffhq, "a"), (g_vox, "b")):
        keys = load_json(family_dir(ROS) / f"state_dict_keys_config_{config}.json")
        assert list(G.state_dict().keys()) == keys
    assert (g_ffhq.n_latent, g_ffhq.num_conv_layers) == (18, 17)
    assert (g_vox.n_latent, g_vox.num_conv_layers) == (14, 13)


@torch.inference_mode()
def test_rosinality_a_mapping(g_ffhq):
    case = load_case(ROS, "case_a_mapping.npz")
    assert_close(g_ffhq.mapping(t(case["z"])), case["w"], ROS_W_TOL, "rosinality a: w")


@torch.inference_mode()
def test_rosinality_b_synthesis(g_ffhq):
    case = load_case(ROS, "case_b_synthesis.npz")
    image = g_ffhq(t(case["wplus"]), truncation=1.0, noise="const")
    assert_close(image, case["image"], ROS_IMG_TOL, "rosinality b: image 1024")


@torch.inference_mode()
def test_rosinality_c_truncation(g_ffhq):
    case = load_case(ROS, "case_c_truncation.npz")
    center = g_ffhq.mapping(t(case["trunc_z"])).mean(0, keepdim=True)
    assert_close(center, case["trunc_latent"], ROS_W_TOL, "rosinality c: trunc_latent")
    image = g_ffhq(t(case["wplus"]), truncation=float(case["truncation"]),
                   truncation_latent=t(case["trunc_latent"]))
    assert_close(image, case["image"], ROS_IMG_TOL, "rosinality c: image psi 0.7")


@torch.inference_mode()
def test_rosinality_d_stylespace(g_ffhq):
    case = load_case(ROS, "case_d_stylespace.npz")
    wplus = t(case["wplus"])
    assert g_ffhq.style_sections == case["s_conv_sections"].tolist()
    assert g_ffhq.rgb_style_sections == case["s_rgb_sections"].tolist()
    s_conv = g_ffhq.flatten_styles(g_ffhq.style_vectors(wplus))
    s_rgb = g_ffhq.flatten_styles(g_ffhq.rgb_style_vectors(wplus))
    assert_close(s_conv, case["s_conv"], ROS_W_TOL, "rosinality d: s_conv")
    assert_close(s_rgb, case["s_rgb"], ROS_W_TOL, "rosinality d: s_rgb")
    edited = g_ffhq.split_styles(t(case["s_conv_edited"]))
    image = g_ffhq.synthesis_from_styles(edited, wplus, noise="const")
    # The official decoder's resize_image=True: AdaptiveAvgPool2d(256) on 1024, i.e. a 4x4 mean.
    image_256 = F.avg_pool2d(image, 4)
    assert_close(image_256, case["image_edited_256"], ROS_IMG_TOL, "rosinality d: edited decode 256")


@torch.inference_mode()
def test_rosinality_vox256(g_vox):
    case = load_case(ROS, "case_vox256.npz")
    assert_close(g_vox.mapping(t(case["z"])), case["w"], ROS_W_TOL, "rosinality vox256: w")
    center = g_vox.mapping(t(case["trunc_z"])).mean(0, keepdim=True)
    assert_close(center, case["trunc_latent"], ROS_W_TOL, "rosinality vox256: trunc_latent")
    image = g_vox(t(case["wplus"]), truncation=float(case["truncation"]),
                  truncation_latent=t(case["trunc_latent"]), weight_deltas=None)
    assert_close(image, case["image"], ROS_IMG_TOL, "rosinality vox256: image")


# ---------------------------------------------------------------------------
# stylegan2_genforce
# ---------------------------------------------------------------------------


@torch.inference_mode()
def test_genforce_a_mapping(g_genforce):
    case = load_case(GF, "case_a_mapping.npz")
    w = g_genforce.mapping(t(case["z"]))
    assert_close(w, case["w"], GF_TOL, "genforce a: w")
    assert_close(g_genforce.to_wplus(w), case["wp_get_w_psi1"], GF_TOL, "genforce a: get_w psi 1")


@torch.inference_mode()
def test_genforce_b_synthesis_and_styles(g_genforce):
    case = load_case(GF, "case_b_synthesis.npz")
    wp = t(case["wp"])
    for j, s in enumerate(g_genforce.style_vectors(wp)):
        assert_close(s, case[f"style{j:02d}"], GF_TOL, f"genforce b: style{j:02d}")
    for k, s in enumerate(g_genforce.rgb_style_vectors(wp)):
        assert_close(s, case[f"output_style{k}"], GF_TOL, f"genforce b: output_style{k}")
    assert_close(g_genforce(wp), case["image"], GF_TOL, "genforce b: image 1024")


@torch.inference_mode()
def test_genforce_c_truncation(g_genforce):
    case = load_case(GF, "case_c_truncation.npz")
    assert_close(g_genforce.w_avg.reshape(-1), case["w_avg"], 0.0, "genforce c: w_avg")
    w = g_genforce.mapping(t(case["z"]))
    assert_close(w, case["w"], GF_TOL, "genforce c: w")
    wp = g_genforce.to_wplus(w)
    for psi, key in ((0.7, "wp_psi07_all18"), (0.6, "wp_psi06_all18")):
        assert_close(g_genforce.truncate(wp, psi, g_genforce.w_avg), case[key], GF_TOL, f"genforce c: {key}")
    lt8 = g_genforce.truncate(wp, 0.7, g_genforce.w_avg, num_layers=8)
    assert_close(lt8, case["wp_psi07_layers_lt8"], GF_TOL, "genforce c: wp_psi07_layers_lt8")


def test_genforce_reads_generator_when_no_smooth_entry():
    G = sg.load_genforce_checkpoint({"generator": genforce_generator_state()})
    case = load_case(GF, "case_a_mapping.npz")
    with torch.inference_mode():
        assert_close(G.mapping(t(case["z"])), case["w"], GF_TOL, "genforce 'generator' entry: w")


# ---------------------------------------------------------------------------
# HyperReenact weight offsets on config B (generator-level check only)
# ---------------------------------------------------------------------------


@torch.inference_mode()
def test_hyperreenact_weight_deltas_image(g_vox):
    hyper = load_case(HR, "case_b_hypernet.npz")
    case = load_case(HR, "case_c_reenact.npz")
    tuned = hyper["tuned_layers"].tolist()
    official = [t(hyper[f"delta_{i:02d}"]) if i in tuned else None for i in range(20)]
    deltas = sg.hyperstyle_to_conv_deltas(official)
    assert len(deltas) == g_vox.num_conv_layers and all(d is not None for d in deltas)
    kwargs = dict(truncation=float(case["truncation"]), truncation_latent=t(case["trunc_latent"]))
    image = g_vox(t(case["wplus"]), weight_deltas=deltas, **kwargs)
    assert_close(image, case["image"], HR_IMG_TOL, "hyperreenact c: image W(1+delta)")
    assert_close(g_vox(t(case["wplus"]), **kwargs), case["image_no_delta"], HR_IMG_TOL,
                 "hyperreenact c: image without delta")


# ---------------------------------------------------------------------------
# One thread: the wide 3x3 convs run NNPACK's Winograd algorithm
# ---------------------------------------------------------------------------


@torch.inference_mode()
def test_one_thread_winograd_convs_keep_every_image_within_tolerance(g_ffhq, g_vox, monkeypatch):
    """The test suite runs on two threads, where every conv is oneDNN's direct one; on one thread (the
    folder-job workers) the wide layers go through NNPACK. The same fixture cases hold there, with
    and without HyperReenact's weight offsets, and the Winograd path really ran on the expected layers."""
    if not sg._nnpack_ready():
        pytest.skip("this torch build has no NNPACK: every conv is the direct one, tested above")
    shapes: list[tuple[int, ...]] = []
    real = sg.winograd_conv3x3

    def spy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        shapes.append((x.shape[1], weight.shape[0], x.shape[2]))
        return real(x, weight, bias)

    monkeypatch.setattr(sg, "winograd_conv3x3", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        case = load_case(ROS, "case_b_synthesis.npz")
        image = g_ffhq(t(case["wplus"]), truncation=1.0, noise="const")
        assert sorted(shapes) == [(256, 256, 128), (512, 512, 32), (512, 512, 64)]  # (in, out, side)
        assert_close(image, case["image"], ROS_IMG_TOL, "rosinality b, one thread (Winograd): image 1024")

        shapes.clear()
        case = load_case(ROS, "case_vox256.npz")
        kwargs = dict(truncation=float(case["truncation"]), truncation_latent=t(case["trunc_latent"]))
        assert_close(g_vox(t(case["wplus"]), **kwargs), case["image"], ROS_IMG_TOL,
                     "rosinality vox256, one thread (Winograd): image")
        assert sorted(shapes) == [(256, 256, 64), (512, 512, 32)]

        hyper = load_case(HR, "case_b_hypernet.npz")
        case = load_case(HR, "case_c_reenact.npz")
        tuned = hyper["tuned_layers"].tolist()
        deltas = sg.hyperstyle_to_conv_deltas(
            [t(hyper[f"delta_{i:02d}"]) if i in tuned else None for i in range(20)])
        kwargs = dict(truncation=float(case["truncation"]), truncation_latent=t(case["trunc_latent"]))
        assert_close(g_vox(t(case["wplus"]), weight_deltas=deltas, **kwargs), case["image"], HR_IMG_TOL,
                     "hyperreenact c, one thread (Winograd): image W(1+delta)")
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------
# Loader errors
# ---------------------------------------------------------------------------


def test_missing_g_ema_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="g_ema"):
        sg.load_rosinality_checkpoint({"state_dict": {}}, size=256, channel_multiplier=1)


def test_incomplete_g_ema_lists_missing_keys():
    g_ema = sg.standin_checkpoint_vox256()["g_ema"]
    del g_ema["noises.noise_3"], g_ema["convs.2.conv.blur.kernel"]
    g_ema["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        sg.load_rosinality_checkpoint({"g_ema": g_ema}, size=256, channel_multiplier=1)
    message = str(info.value)
    assert "Missing keys (2)" in message and "noises.noise_3" in message
    assert "convs.2.conv.blur.kernel" in message and "extra.weight" in message


def test_wrong_config_is_a_checkpoint_error():
    ckpt = sg.standin_checkpoint_vox256()
    with pytest.raises(CheckpointError, match="Wrong shapes"):
        sg.load_rosinality_checkpoint(ckpt, size=256, channel_multiplier=2)


def test_truncated_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "stylegan-voxceleb.pt"
    torch.save(sg.standin_checkpoint_vox256(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError):
        sg.load_rosinality_checkpoint(path, size=256, channel_multiplier=1)


def test_genforce_errors_name_genforce_keys():
    with pytest.raises(CheckpointError, match="generator_smooth"):
        sg.load_genforce_checkpoint({"discriminator": {}})
    state = dict(sg.standin_checkpoint_genforce_ffhq1024()["generator_smooth"])
    del state["synthesis.layer3.noise"], state["truncation.w_avg"]
    with pytest.raises(CheckpointError) as info:
        sg.load_genforce_checkpoint({"generator_smooth": state})
    assert "Missing keys (2)" in str(info.value) and "synthesis.layer3.noise" in str(info.value)


# ---------------------------------------------------------------------------
# Stand-in checkpoints, latent helpers, style space and weight-delta hook
# ---------------------------------------------------------------------------


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_standin_vox256_is_deterministic_and_loads_strictly():
    first, second = sg.standin_checkpoint_vox256(), sg.standin_checkpoint_vox256()
    _assert_same_tensors(first["g_ema"], second["g_ema"])
    assert torch.equal(first["latent_avg"], second["latent_avg"]) and first["latent_avg"].shape == (512,)
    # With base_seed 0 the stand-in equals the fixture's config B bit for bit.
    _assert_same_tensors(first["g_ema"], rosinality_g_ema("b"))
    G = sg.load_rosinality_checkpoint(first, size=256, channel_multiplier=1)
    assert G.w_avg.shape == (1, 512)


def test_standin_ffhq1024_matches_fixture_config_a():
    ckpt = sg.standin_checkpoint_ffhq1024()
    _assert_same_tensors(ckpt["g_ema"], rosinality_g_ema("a"))
    G = sg.load_rosinality_checkpoint(ckpt, size=1024, channel_multiplier=2)
    with torch.inference_mode():
        assert torch.allclose(G.mean_latent(4096, seed=0).reshape(-1), ckpt["latent_avg"])


def test_standin_genforce_matches_fixture_and_loads():
    ckpt = sg.standin_checkpoint_genforce_ffhq1024()
    _assert_same_tensors(ckpt["generator_smooth"], genforce_generator_state())
    G = sg.load_genforce_checkpoint(ckpt)
    assert torch.equal(G.w_avg.reshape(-1), ckpt["generator_smooth"]["truncation.w_avg"])


@torch.inference_mode()
def test_mean_latent_is_seeded(g_vox):
    a, b = g_vox.mean_latent(1024, seed=0), g_vox.mean_latent(1024, seed=0)
    assert a.shape == (1, 512) and torch.equal(a, b)
    assert not torch.equal(a, g_vox.mean_latent(1024, seed=1))


@torch.inference_mode()
def test_truncate_every_row_and_identity(g_vox):
    wplus = torch.randn(2, g_vox.n_latent, 512, generator=torch.Generator().manual_seed(3))
    center = torch.randn(1, 512, generator=torch.Generator().manual_seed(4))
    assert g_vox.truncate(wplus, 1.0, None) is wplus
    out = g_vox.truncate(wplus, 0.5, center)
    assert torch.allclose(out, center[:, None] + 0.5 * (wplus - center[:, None]))


@torch.inference_mode()
def test_styles_round_trip_equals_synthesis(g_vox):
    case = load_case(ROS, "case_vox256.npz")
    wplus = t(case["wplus"])
    direct = g_vox.synthesis(wplus)
    styles = g_vox.split_styles(g_vox.flatten_styles(g_vox.style_vectors(wplus)))
    assert torch.equal(g_vox.synthesis_from_styles(styles, wplus), direct)


@torch.inference_mode()
def test_random_noise_is_reproducible_and_differs_from_const(g_vox):
    wplus = g_vox.to_wplus(g_vox.mean_latent(256))
    a = g_vox.synthesis(wplus, noise="random", generator=torch.Generator().manual_seed(7))
    b = g_vox.synthesis(wplus, noise="random", generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.allclose(a, g_vox.synthesis(wplus, noise="const"))


@torch.inference_mode()
def test_weight_delta_hook(g_vox):
    wplus = t(load_case(ROS, "case_vox256.npz")["wplus"])
    base = g_vox.synthesis(wplus)
    zeros = [torch.zeros(1, c.conv.out_ch, c.conv.in_ch) for c in g_vox.styled_convs()]
    assert torch.equal(g_vox.synthesis(wplus, weight_deltas=zeros), base)
    assert torch.equal(g_vox.synthesis(wplus, weight_deltas=[None] * g_vox.num_conv_layers), base)

    # One non-zero offset on convs.3: the image changes, and the [1,out,in] form
    # equals the official [1,out,in,3,3] repeated form.
    gen = torch.Generator().manual_seed(11)
    conv = g_vox.styled_convs()[4].conv
    delta = 0.3 * torch.randn(1, conv.out_ch, conv.in_ch, generator=gen)
    deltas = [None] * g_vox.num_conv_layers
    deltas[4] = delta
    changed = g_vox.synthesis(wplus, weight_deltas=deltas)
    assert (changed - base).abs().max() > 1e-2
    deltas[4] = delta[..., None, None].repeat(1, 1, 1, 3, 3)
    assert torch.allclose(g_vox.synthesis(wplus, weight_deltas=deltas), changed, atol=1e-6)

    # Semantics: W(1+Δ) is applied before modulation/demodulation, so scaling a whole
    # layer's weight (Δ = c) is undone by demodulation and leaves the image unchanged.
    deltas[4] = torch.full((1, conv.out_ch, conv.in_ch), 0.5)
    assert torch.allclose(g_vox.synthesis(wplus, weight_deltas=deltas), base, atol=1e-5)

    with pytest.raises(ValueError):
        g_vox.synthesis(wplus, weight_deltas=[None] * 3)


# ---------------------------------------------------------------------------
# Fast paths (channels-last, folded bias/gain, in-place epilogues, shared-weight
# batches, cached FIR kernels) against a straightforward reference render
# ---------------------------------------------------------------------------

# Measured on a seeded 64px generator (cm 1): fast vs reference max|diff| 4e-6 to 8e-6 on an
# image of max|x| ~ 3 (float32 rounding of a different summation order); the test
# allows 1e-5 * max|x|, far below what any wrong layer (a missed noise, bias or gain) gives.
FAST_TOL = 1e-5


@pytest.fixture(scope="module")
def g_small() -> sg.Generator:
    G = sg.Generator(64, channel_multiplier=1)
    sd = sg.standin_state_dict(G, lambda name, _t: sg._rule_for(sg._ROSINALITY_RULES, name), 5)
    G.load_state_dict(sd, strict=True)
    return G.eval()


def _reference_conv(conv: sg.ModulatedConv2d, x: torch.Tensor, s: torch.Tensor,
                    delta: torch.Tensor | None = None) -> torch.Tensor:
    """The textbook modulated conv: per-sample weights, one sample at a time, generic upfirdn2d blur."""
    weights = conv._weights(s, delta)
    outs = []
    for i in range(x.shape[0]):
        wi = weights[i if weights.shape[0] > 1 else 0]
        if conv.upsample:
            y = F.conv_transpose2d(x[i:i + 1], wi.transpose(0, 1), stride=2)
            outs.append(sg.upfirdn2d(y, conv.blur.kernel, pad=conv.blur.pad))
        else:
            outs.append(F.conv2d(x[i:i + 1], wi, padding=conv.kernel_size // 2))
    return torch.cat(outs)


def _reference_render(G: sg.Generator, wplus: torch.Tensor, deltas=None) -> torch.Tensor:
    """Synthesis written as the paper reads: conv, + noise, + bias, leaky-ReLU * sqrt(2); toRGB + upsampled skip."""
    wplus = G.to_wplus(wplus)
    styles, rgb_styles = G.style_vectors(wplus), G.rgb_style_vectors(wplus)
    deltas = deltas or [None] * G.num_conv_layers
    noises = G.noises.as_list()

    def styled(j: int, x: torch.Tensor) -> torch.Tensor:
        layer = G.styled_convs()[j]
        y = _reference_conv(layer.conv, x, styles[j], deltas[j]) + layer.noise.weight * noises[j]
        return sg.fused_leaky_relu(y, layer.activate.bias)

    def rgb(k: int, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        layer = G.rgb_layers()[k]
        y = _reference_conv(layer.conv, x, rgb_styles[k]) + layer.bias
        if skip is None:
            return y
        up = layer.upsample
        return y + sg.upfirdn2d(skip, up.kernel, up=up.factor, pad=up.pad)

    x = styled(0, G.input.input.repeat(wplus.shape[0], 1, 1, 1))
    skip = rgb(0, x, None)
    for k in range(len(G.to_rgbs)):
        x = styled(2 * k + 2, styled(2 * k + 1, x))
        skip = rgb(k + 1, x, skip)
    return skip


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    diff = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    print(f"[fast path] {what}: max|diff| = {diff:.3g} (max|x| {scale:.3g})")
    assert actual.shape == expected.shape and actual.is_contiguous()
    assert diff <= FAST_TOL * scale, f"{what}: max|diff| {diff:.3g} > {FAST_TOL:g} * {scale:.3g}"


def test_fast_synthesis_matches_reference_inference_and_grad(g_small):
    wplus = torch.randn(1, g_small.n_latent, 512, generator=torch.Generator().manual_seed(21))
    with torch.no_grad():
        ref = _reference_render(g_small, wplus)
    with torch.inference_mode():
        fast = g_small.synthesis(wplus)  # in-place epilogues
    _close(fast, ref, "inference mode vs reference")

    # The autograd path (what FALCO runs) gives the same image as the in-place one.
    img = g_small.synthesis(wplus.clone().requires_grad_(True))
    assert img.requires_grad
    _close(img.detach(), fast, "grad path vs inference path")


def test_fast_synthesis_gradient_equals_reference_in_float64(g_small):
    """d(image . t)/dW+ through the fast path is the reference's gradient.

    Checked in float64: there the two agree to ~3e-14 (max|grad| ~ 8), which proves the same
    maths; in float32 the stand-in weights' large gains leave ~3e-4 relative rounding noise.
    """
    G = copy.deepcopy(g_small).double()
    wplus = torch.randn(1, G.n_latent, 512, generator=torch.Generator().manual_seed(21), dtype=torch.float64)
    w1, w2 = wplus.clone().requires_grad_(True), wplus.clone().requires_grad_(True)
    img = G.synthesis(w1)
    target = torch.randn(img.shape, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    (img * target).sum().backward()
    (_reference_render(G, w2) * target).sum().backward()
    diff, scale = (w1.grad - w2.grad).abs().max().item(), w2.grad.abs().max().item()
    print(f"[fast path] float64 d(image . t)/dW+ vs reference: max|diff| = {diff:.3g} (max|grad| {scale:.3g})")
    assert diff <= 1e-10 * scale


def test_batched_wplus_equals_per_code_renders(g_small):
    wplus = torch.randn(3, g_small.n_latent, 512, generator=torch.Generator().manual_seed(23))
    with torch.inference_mode():
        batched = g_small.synthesis(wplus)  # one shared-weight conv per layer for all three codes
        singles = torch.cat([g_small.synthesis(wplus[i:i + 1]) for i in range(3)])
        ref = _reference_render(g_small, wplus)
    _close(batched, singles, "batch of 3 vs per-code renders")
    _close(batched, ref, "batch of 3 vs reference")
    with torch.no_grad():
        _close(g_small.synthesis(wplus.clone().requires_grad_(False)), ref, "batch, no_grad")


def test_batched_weight_deltas_match_reference(g_small):
    """Per-sample HyperReenact offsets take the grouped-conv path; it still equals the reference."""
    gen = torch.Generator().manual_seed(24)
    wplus = torch.randn(2, g_small.n_latent, 512, generator=gen)
    deltas = [None] * g_small.num_conv_layers
    for j in (1, 4):
        conv = g_small.styled_convs()[j].conv
        deltas[j] = 0.3 * torch.randn(2, conv.out_ch, conv.in_ch, generator=gen)
    with torch.inference_mode():
        _close(g_small.synthesis(wplus, weight_deltas=deltas), _reference_render(g_small, wplus, deltas),
               "batch of 2 with per-sample weight deltas vs reference")


def test_fir_fast_paths_equal_upfirdn2d_and_follow_kernel_changes():
    x = torch.randn(2, 5, 9, 9, generator=torch.Generator().manual_seed(25))
    up, blur = sg.Upsample(2), sg.Blur(pad=(1, 1), gain=4.0)
    assert torch.allclose(up(x), sg.upfirdn2d(x, up.kernel, up=2, pad=up.pad), atol=1e-6)
    assert torch.allclose(blur(x), sg.upfirdn2d(x, blur.kernel, pad=(1, 1)), atol=1e-6)
    bias = torch.randn(5, generator=torch.Generator().manual_seed(26))
    assert torch.allclose(blur(x, bias), sg.upfirdn2d(x, blur.kernel, pad=(1, 1)) + bias.view(1, -1, 1, 1), atol=1e-6)
    # An asymmetric kernel changed in place (as load_state_dict does): the cached weight follows,
    # flipped for the blur (true convolution) and unflipped for the transposed upsampling.
    with torch.no_grad():
        up.kernel.copy_(torch.arange(16.0).reshape(4, 4))
        blur.kernel.copy_(torch.arange(16.0).reshape(4, 4).t())
    assert torch.allclose(up(x), sg.upfirdn2d(x, up.kernel, up=2, pad=up.pad), atol=1e-4)
    assert torch.allclose(blur(x), sg.upfirdn2d(x, blur.kernel, pad=(1, 1)), atol=1e-4)
    # Kernels cached inside inference mode still serve a forward pass that autograd records.
    with torch.inference_mode():
        sg.Blur(pad=(1, 1))(x)
    fresh = sg.Blur(pad=(1, 1))
    with torch.inference_mode():
        fresh(x)
    xg = x.clone().requires_grad_(True)
    fresh(xg).sum().backward()
    assert xg.grad is not None and xg.grad.shape == x.shape


@pytest.mark.parametrize("upsample", [False, True])
def test_autograd_activation_is_bit_identical_to_the_plain_graph(upsample: bool) -> None:
    """FALCO's path: noise + bias + leaky-ReLU * sqrt(2) as one autograd Function, forward and backward.

    Adam divides each gradient element by its own magnitude, so FALCO's parity needs the official
    rounding; the Function must give exactly the plain graph's values and gradients (for the
    input and styles, and for noise strength and bias when they are trained).
    """
    gen = torch.Generator().manual_seed(31)
    layer = sg.StyledConv(16, 8, 512, upsample=upsample)
    with torch.no_grad():
        layer.noise.weight.fill_(0.3)
        layer.activate.bias.copy_(torch.randn(8, generator=gen))
    x = torch.randn(1, 16, 8, 8, generator=gen)
    s = torch.randn(1, 16, generator=gen) + 1
    size = 16 if upsample else 8
    noise = torch.randn(1, 1, size, size, generator=gen)
    grad_out = torch.randn(1, 8, size, size, generator=gen)

    def run(fused: bool) -> tuple[torch.Tensor, ...]:
        xi, si = x.clone().requires_grad_(True), s.clone().requires_grad_(True)
        layer.zero_grad()
        if fused:
            out = layer.forward_styled(xi, si, noise)
        else:
            out = layer.conv._conv(xi, si) + layer.noise.weight * noise
            out = F.leaky_relu(out + layer.activate.bias.view(1, -1, 1, 1), sg.LEAKY_SLOPE) * sg.ACT_GAIN
        out.backward(grad_out)
        return out.detach(), xi.grad, si.grad, layer.noise.weight.grad.clone(), layer.activate.bias.grad.clone()

    fused, plain = run(True), run(False)
    for name, a, b in zip(("output", "grad x", "grad styles", "grad strength", "grad bias"), fused, plain, strict=True):
        assert torch.equal(a, b), f"{name}: max|diff| {(a - b).abs().max().item():.3g}"
    assert (fused[0] < 0).any() and (fused[0] > 0).any()  # both slopes of the activation are exercised
