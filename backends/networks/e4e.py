"""e4e (Encoder4Editing): an aligned 256x256 face -> StyleGAN2 W+ codes.

Architecture of omertov/encoder4editing ``Encoder4Editing(50, 'ir_se')``:
an IR-SE50 body (:mod:`backends.networks.irse`) tapped after units 6, 20 and
23 (c1 128ch@64, c2 256ch@32, c3 512ch@16), a small feature pyramid, and one
``GradualStyleBlock`` per W+ row. Row 0 is a full code ``w0``; every other row
is ``w0`` plus a learned delta. The checkpoint's ``latent_avg`` is added on
top, row by row, exactly as the official inference does.

``n_styles`` is 18 for the FFHQ 1024 generator and 14 for a 256 generator
(HyperReenact's VoxCeleb e4e).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load, strip_prefix
from ..errors import CheckpointError, InputError
from ..standin import Init, seeded_tensor
from .irse import make_body, make_input_layer

STYLE_DIM = 512
INPUT_SIZE = 256
CHANNELS_LAST_ENV = "FACELAB_E4E_CHANNELS_LAST"  # "0": keep conv weights in the file's NCHW layout
# Body units whose outputs feed the pyramid (for the 50-layer body: the last
# unit of stages 2, 3 and 4).
TAP_C1, TAP_C2, TAP_C3 = 6, 20, 23
# Rows below COARSE_END read c3 (16x16), rows below MIDDLE_END read p2 (32x32), the rest p1 (64x64).
COARSE_END, MIDDLE_END = 3, 7


def n_styles_for_resolution(resolution: int) -> int:
    """Number of W+ rows of a StyleGAN2 generator of this output size (1024 -> 18, 256 -> 14)."""
    return 2 * int(math.log2(resolution)) - 2


class EqualLinear(nn.Module):
    """StyleGAN2's equalised-lr linear layer with lr_mul 1: ``x @ (W / sqrt(in)).T + b``, no activation."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class GradualStyleBlock(nn.Module):
    """A feature map of size ``spatial`` -> one 512-d style vector.

    log2(spatial) stride-2 conv3x3 layers, each followed by LeakyReLU with
    PyTorch's default slope 0.01 (not StyleGAN's 0.2), bring the map to 1x1;
    an EqualLinear finishes.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial: int):
        super().__init__()
        self.out_channels = out_channels
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, stride=2, padding=1),
                       nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x).reshape(-1, self.out_channels)
        return self.linear(x)


def _style_spatial(index: int) -> int:
    """Input size of style block ``index``: coarse rows read 16x16, middle 32x32, fine 64x64."""
    if index < COARSE_END:
        return 16
    return 32 if index < MIDDLE_END else 64


def _run_unit(unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One IR-SE body unit; a parameter-free ``MaxPool2d(1, s)`` shortcut is read as a strided view.

    A 1x1 max-pool with stride s is ``x[:, :, ::s, ::s]`` (x itself for s = 1), so the copy it makes is
    skipped; the residual sum is then formed in place when autograd is not recording.
    """
    shortcut = unit.shortcut_layer
    if not isinstance(shortcut, nn.MaxPool2d) or shortcut.kernel_size not in (1, (1, 1)) or shortcut.padding:
        return unit(x)
    stride = shortcut.stride if isinstance(shortcut.stride, int) else shortcut.stride[0]
    skip = x if stride == 1 else x[:, :, ::stride, ::stride]
    res = unit.res_layer(x)
    if torch.is_grad_enabled() and (res.requires_grad or skip.requires_grad):
        return res + skip
    return res.add_(skip)


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear upsample ``x`` to ``y``'s size (align_corners=True, as the official code) and add ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder4Editing(nn.Module):
    """The e4e encoder; ``forward`` returns codes [B, n_styles, 512] *without* ``latent_avg``.

    State-dict keys equal the official ``encoder.*`` keys with the prefix removed.
    """

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18):
        super().__init__()
        if num_layers != 50 or mode != "ir_se":
            # The tap indices 6/20/23 are those of the 50-layer body.
            raise ValueError("Only the IR-SE50 e4e encoder (num_layers=50, mode='ir_se') is supported.")
        self.n_styles = n_styles
        self.input_layer = make_input_layer()
        self.body = make_body(num_layers)
        self.styles = nn.ModuleList(GradualStyleBlock(512, STYLE_DIM, _style_spatial(i)) for i in range(n_styles))
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1)

    def backbone_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The outputs (c1, c2, c3) of body units 6, 20 and 23."""
        if self.body[0].res_layer[1].weight.is_contiguous(memory_format=torch.channels_last):
            # Weights stored channels-last (the default, see encoder_from_state_dict): run NHWC so they are
            # never reordered.
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.input_layer(x)
        taps: dict[int, torch.Tensor] = {}
        for i, unit in enumerate(self.body):
            x = _run_unit(unit, x)
            if i in (TAP_C1, TAP_C2, TAP_C3):
                taps[i] = x
        return taps[TAP_C1], taps[TAP_C2], taps[TAP_C3]

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Codes [B, n_styles, 512] (no ``latent_avg``); with ``return_features`` also (c1, c2, c3)."""
        c1, c2, c3 = self.backbone_features(x)
        w0 = self.styles[0](c3)
        rows = [w0]
        features = p2 = c3  # p2 is really set at row COARSE_END, before row MIDDLE_END reads it
        # The official progressive stage at inference applies every delta.
        for i in range(1, self.n_styles):
            if i == COARSE_END:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_END:
                features = _upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        codes = torch.stack(rows, dim=1)
        return (codes, (c1, c2, c3)) if return_features else codes


class E4EInverter(nn.Module):
    """An e4e encoder together with its ``latent_avg``: image in [-1, 1] -> W+ codes.

    ``forward``/``invert`` return ``encoder(x) + latent_avg`` with the full
    [n_styles, 512] average added row by row (the official
    ``codes + latent_avg.repeat(B, 1, 1)``).
    """

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("latent_avg", latent_avg.detach().clone().float())

    @property
    def n_styles(self) -> int:
        return self.encoder.n_styles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x) + self.latent_avg.unsqueeze(0)

    def invert(self, image: torch.Tensor) -> torch.Tensor:
        """W+ codes [B, n_styles, 512] of aligned 256x256 faces in [-1, 1] ([3,256,256] or [B,3,256,256])."""
        if image.ndim == 3:
            image = image.unsqueeze(0)
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise InputError(f"e4e expects aligned 3x{INPUT_SIZE}x{INPUT_SIZE} faces, got {tuple(image.shape)}.")
        param = self.latent_avg
        with torch.inference_mode():
            return self(image.to(device=param.device, dtype=param.dtype))


# --------------------------------------------------------------------------- preprocessing


def preprocess_aligned(pil_image: Image.Image) -> torch.Tensor:
    """The official e4e transform: Resize((256, 256)) bilinear, ToTensor, Normalize(0.5, 0.5).

    Returns a float32 [3, 256, 256] tensor in [-1, 1]. PIL's bilinear resize
    is what torchvision's ``Resize`` runs on PIL images (it antialiases when
    shrinking), so this matches the official pipeline.
    """
    img = pil_image.convert("RGB")
    if img.size != (INPUT_SIZE, INPUT_SIZE):
        img = img.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
    x = x.to(torch.float32).div(255)
    return x.sub(0.5).div(0.5)


# --------------------------------------------------------------------------- loading


def _count_styles(state_dict: Mapping[str, torch.Tensor]) -> int:
    """How many ``styles.{i}`` blocks a prefix-free encoder state dict holds."""
    indices = {int(k.split(".")[1]) for k in state_dict if k.startswith("styles.") and k.split(".")[1].isdigit()}
    return len(indices)


def encoder_from_state_dict(state_dict: Mapping[str, torch.Tensor], what: str = "e4e encoder",
                            assign: bool = False) -> Encoder4Editing:
    """An eval-mode CPU ``Encoder4Editing`` loaded strictly from prefix-free keys; ``n_styles`` is read from them.

    Also serves checkpoints without the ``encoder.`` prefix (HyperReenact's
    ``e4e-voxceleb.pt['e']``, 14 styles).
    """
    n_styles = _count_styles(state_dict)
    if n_styles == 0:
        raise CheckpointError(f"The {what} checkpoint holds no 'styles.*' tensors; it is not an e4e encoder.")
    with torch.device("meta"):
        encoder = Encoder4Editing(n_styles=n_styles)
    if assign:  # take the checkpoint's tensors over: no second copy of ~0.8 GB
        load_state_dict_strict(encoder, state_dict, what, assign=True)
    else:
        # Allocate without the random init (~267 M values): everything is overwritten by the load.
        encoder = encoder.to_empty(device="cpu")
        load_state_dict_strict(encoder, state_dict, what)
    if os.environ.get(CHANNELS_LAST_ENV, "1") != "0":
        # Conv weights channels-last once (one tensor at a time), so the NHWC forward pass never
        # reorders them and oneDNN's NHWC kernels run: 0.78x the one-thread CPU inversion (the
        # stride-2 512-channel convs of the style blocks ran at ~115 GFLOP/s in NCHW). The weights
        # then live in anonymous memory instead of the memory-mapped file's pages (same size, ~1 GB
        # for FFHQ); FACELAB_E4E_CHANNELS_LAST=0 keeps the file's layout.
        encoder = encoder.to(memory_format=torch.channels_last)
    return encoder.eval()


def _latent_avg_rows(latent_avg: Any, n_styles: int) -> torch.Tensor:
    """``latent_avg`` as [n_styles, 512]: a [512] (or [1, 512]) average is broadcast to every row."""
    if not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError("The e4e checkpoint's 'latent_avg' is not a tensor.")
    if latent_avg.ndim == 1:
        latent_avg = latent_avg.unsqueeze(0)
    if latent_avg.ndim != 2 or latent_avg.shape[-1] != STYLE_DIM or latent_avg.shape[0] not in (1, n_styles):
        raise CheckpointError(
            f"The e4e checkpoint's 'latent_avg' has shape {tuple(latent_avg.shape)}; "
            f"expected [{n_styles}, {STYLE_DIM}] or [{STYLE_DIM}]."
        )
    return latent_avg.float().expand(n_styles, STYLE_DIM).clone()


def load_e4e_checkpoint(obj_or_path: str | Path | Mapping[str, Any]) -> E4EInverter:
    """Build an :class:`E4EInverter` from ``e4e_ffhq_encode.pt`` (a path or the loaded dict).

    Reads ``{'state_dict': {encoder.*, decoder.*}, 'latent_avg', 'opts', ...}``:
    the ``encoder.*`` tensors are loaded strictly, ``decoder.*`` and any other
    top-level entries (opts, global_step, optimizer...) are ignored. Returns
    the inverter in eval mode on CPU; move it with ``.to(device)``.
    """
    ckpt = safe_load(obj_or_path, what="e4e") if isinstance(obj_or_path, (str, Path)) else obj_or_path
    if not isinstance(ckpt, Mapping):
        raise CheckpointError("The e4e checkpoint is not a dict; expected {'state_dict', 'latent_avg', 'opts'}.")
    state_dict = ckpt.get("state_dict")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError("The e4e checkpoint has no 'state_dict' entry; it is not an e4e/pSp checkpoint.")
    if "latent_avg" not in ckpt:
        raise CheckpointError(
            "The e4e checkpoint has no 'latent_avg'; the W+ codes cannot be formed without it "
            "(expected a [18, 512] or [512] tensor next to 'state_dict')."
        )
    encoder_sd = strip_prefix(state_dict, "encoder.")
    if not encoder_sd:
        raise CheckpointError("The e4e checkpoint's state_dict has no 'encoder.*' tensors.")
    encoder = encoder_from_state_dict(encoder_sd, "e4e encoder")
    latent_avg = _latent_avg_rows(ckpt["latent_avg"], encoder.n_styles)
    return E4EInverter(encoder, latent_avg).eval()


# --------------------------------------------------------------------------- stand-in weights


def _e4e_init(name: str, shape: tuple[int, ...]) -> Init | None:
    """Init of one ``encoder.*`` tensor, as the e4e_ffhq parity fixture's table.

    Body/SE/lateral convs N(0, 1/fan_in), style-block convs He N(0, 2/fan_in),
    BN gamma 1 + N(0, 0.1^2) except the residual branch's last BN
    0.25 + N(0, 0.05^2) (keeps 24 uncalibrated units from blowing up),
    EqualLinear of styles.0 N(0, 1) and of the other rows N(0, 0.25^2) so the
    deltas stay small next to w0, as in a trained e4e.
    """
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return None
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        gain = 2.0 if ".convs." in name else 1.0
        return Init("normal", (gain / fan_in) ** 0.5)
    if len(shape) == 2:  # EqualLinear weights
        return Init("normal", 1.0 if name.startswith("encoder.styles.0.") else 0.25)
    if ".convs." in name or ".latlayer" in name:
        return Init("normal", 0.05)  # conv biases
    if ".linear." in name:
        return Init("normal", 0.1)
    if name.endswith(("input_layer.2.weight", "res_layer.2.weight")):
        return Init("normal", 0.05, 0.25)  # PReLU slopes
    if leaf == "weight":
        return Init("normal", 0.05, 0.25) if name.endswith("res_layer.4.weight") else Init("normal", 0.1, 1.0)
    if leaf in ("bias", "running_mean"):
        return Init("normal", 0.1)
    if leaf == "running_var":
        return Init("uniform", 1.0, 0.75)
    raise KeyError(f"no stand-in init rule for {name}")


def standin_opts(stylegan_size: int = 1024) -> dict[str, Any]:
    """Plausible training options of an FFHQ e4e run (the fields inference reads, plus a few more)."""
    return {
        "encoder_type": "Encoder4Editing",
        "dataset_type": "ffhq_encode",
        "stylegan_size": stylegan_size,
        "start_from_latent_avg": True,
        "train_decoder": False,
        "lpips_type": "alex",
        "checkpoint_path": None,
    }


def standin_checkpoint_e4e_ffhq(base_seed: int = 0) -> dict[str, Any]:
    """A deterministic, real-size stand-in for ``e4e_ffhq_encode.pt`` in the official structure.

    ``{'state_dict': {encoder.*: ...}, 'latent_avg': [18, 512], 'opts': {...}}``.
    The ``decoder.*`` generator tensors are left out to save ~120 MB (the
    loader ignores them anyway); Face Lab loads the generator separately.
    Every tensor is seeded by its full key, so with ``base_seed=0`` the values
    equal the e4e_ffhq parity fixture's weights. About 267 M values (~1.1 GB).
    """
    with torch.device("meta"):
        template = Encoder4Editing(n_styles=18).state_dict()
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in template.items():
        name = "encoder." + key
        init = _e4e_init(name, tuple(value.shape))
        if init is None:
            state_dict[name] = torch.zeros(value.shape, dtype=value.dtype)
        else:
            state_dict[name] = seeded_tensor(name, tuple(value.shape), init, base_seed, value.dtype)
    latent_avg = seeded_tensor("latent_avg", (18, STYLE_DIM), Init("normal", 0.5), base_seed)
    return {"state_dict": state_dict, "latent_avg": latent_avg, "opts": standin_opts(1024)}


# --------------------------------------------------------------------------- the VoxCeleb e4e (HyperReenact)

VOX_STYLES = 14  # 256-px VoxCeleb generator


def load_e4e_voxceleb_checkpoint(obj_or_path: str | Path | Mapping[str, Any]) -> E4EInverter:
    """The e4e of the VoxCeleb generator from ``e4e-voxceleb.pt`` (a path or the loaded dict).

    The file is ``{'e': <bare Encoder4Editing state dict, no prefix, 14 styles>}`` and, unlike the FFHQ
    e4e, carries no ``latent_avg``: the official HyperReenact and GAN-directions code feed the raw
    encoder output to the generator. The returned inverter therefore adds a zero average, so
    ``invert`` gives exactly those raw codes.
    """
    ckpt = safe_load(obj_or_path, what="e4e VoxCeleb") if isinstance(obj_or_path, (str, Path)) else obj_or_path
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("e"), Mapping):
        keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(
            f"The e4e VoxCeleb checkpoint has no 'e' state dict (found: {keys}); expected e4e-voxceleb.pt.")
    encoder = encoder_from_state_dict(ckpt["e"], "e4e VoxCeleb encoder", assign=True)
    if encoder.n_styles != VOX_STYLES:
        raise CheckpointError(
            f"The e4e VoxCeleb checkpoint has {encoder.n_styles} style blocks; the 256-px generator needs "
            f"{VOX_STYLES}.")
    return E4EInverter(encoder, torch.zeros(VOX_STYLES, STYLE_DIM)).eval()


def standin_checkpoint_e4e_voxceleb(base_seed: int = 0) -> dict[str, Any]:
    """A real-size stand-in ``e4e-voxceleb.pt``: ``{'e': bare state dict, 14 styles}`` (~209 M values).

    Same per-tensor rule as the FFHQ stand-in, seeded by the unprefixed key, so with base_seed 0 it
    equals the hyperreenact fixture's e4e manifest.
    """
    with torch.device("meta"):
        template = Encoder4Editing(n_styles=VOX_STYLES).state_dict()
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in template.items():
        init = _e4e_init("encoder." + key, tuple(value.shape))
        if init is None:
            state_dict[key] = torch.zeros(value.shape, dtype=value.dtype)
        else:
            state_dict[key] = seeded_tensor(key, tuple(value.shape), init, base_seed, value.dtype)
    return {"e": state_dict}
