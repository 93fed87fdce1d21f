"""FaRL ViT-B/16 (Zheng et al., CVPR 2022): the face-representation image tower FALCO uses.

The official checkpoint ``FaRL-Base-Patch16-LAIONFace20M-ep64.pth`` is
``{'state_dict': {...CLIP-named tensors...}}``: the image tower under ``visual.``
(152 tensors, 86.2 M values), plus the text tower and possibly pre-training heads,
which nothing here reads. The architecture is OpenAI CLIP's ViT-B/16: width 768,
12 pre-LN blocks of 12 heads, patch 16 on 224 inputs (197 tokens, CLS first),
QuickGELU MLPs, an embedding of 512. We build it as open_clip's
``ViT-B-16-quickgelu`` visual tower, whose key names are CLIP's, and load the
``visual.*`` entries into it strictly (every image-tower key must be present,
as FaRL's own loader asserts).

Two outputs, as FALCO reads them:

* :meth:`FarlVisual.encode_image`: ``ln_post(CLS) @ proj``, **not** L2-normalised
  (FALCO's nearest-neighbour search uses a cosine metric on these vectors);
* :meth:`FarlVisual.tokens`: the 197x768 outputs of the last residual block,
  taken **before** ``ln_post`` and ``proj`` (``AttrLoss.extract_visual``).

fp16 quirk of FALCO's CUDA run: ``clip.load(device='cuda')`` has already cast the
model to fp16 when FaRL's fp32 tensors are copied in, and ``.float()`` comes
afterwards, so conv1, the attention and MLP matrices (with the in-projection
bias) and ``proj`` end up rounded to fp16 precision. :func:`round_like_falco_cuda`
reproduces this; the loader keeps exact fp32 values unless asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load, strip_prefix
from ..errors import CheckpointError, InputError
from ..standin import Init, seeded_tensor
from .clip import quiet_open_clip
from .transforms import center_crop, clip_normalize, resize_shorter_side

OPEN_CLIP_ARCH = "ViT-B-16-quickgelu"  # OpenAI's ViT-B/16 uses QuickGELU
IMAGE_SIZE = 224
WIDTH = 768
NUM_TOKENS = 197
EMBED_DIM = 512
VISUAL_PREFIX = "visual."
NUM_VISUAL_TENSORS = 152


def build_visual_tower(device: str | torch.device = "cpu") -> nn.Module:
    """open_clip's ViT-B/16 (QuickGELU) image tower with *uninitialised* storage (a loader fills it)."""
    import open_clip

    with quiet_open_clip():
        model = open_clip.create_model(OPEN_CLIP_ARCH, pretrained=None, device="meta")
    visual = model.visual
    del model  # the text tower is never materialised
    if torch.device(device).type != "meta":
        visual = visual.to_empty(device=device)
    return visual


class FarlVisual(nn.Module):
    """The FaRL image tower with FALCO's two read-outs (embedding and pre-``ln_post`` tokens).

    ``visual`` is an open_clip ``VisionTransformer`` (any width/depth; the real
    one is ViT-B/16). Its state dict keys are CLIP's ``visual.*`` names without
    the prefix.
    """

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def _check(self, x: torch.Tensor) -> None:
        s = self.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise InputError(f"FaRL expects a Bx3x{s}x{s} tensor, got {tuple(x.shape)}.")

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens [B, 197, 768] after the last residual block, before ``ln_post`` (CLS first)."""
        self._check(x)
        v = self.visual
        x = v.conv1(x.to(v.conv1.weight.dtype))  # [B, width, 14, 14]
        x = x.flatten(2).transpose(1, 2)  # [B, 196, width], row-major patches
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        return v.transformer(x)  # open_clip's transformer is batch-first

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln_post(CLS) @ proj`` of precomputed tokens: the 512-d image embedding."""
        return self.visual.ln_post(tokens[:, 0]) @ self.visual.proj

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP's ``encode_image``: [B, 512], not L2-normalised."""
        return self.embed_tokens(self.tokens(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_image(x)


# --------------------------------------------------------------------------- FALCO's preprocessings


def attr_transform(img: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """``AttrLoss.feat_ext_transform``: Resize(224, antialias) + CenterCrop(224), **no** Normalize."""
    if img.ndim != 4 or img.shape[1] != 3:
        raise InputError(f"Expected a Bx3xHxW image tensor, got {tuple(img.shape)}.")
    return center_crop(resize_shorter_side(img, size), size)


def pool_transform(img: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """The feature path of FALCO's fake pool and real images: Resize + CenterCrop + CLIP Normalize.

    The normalisation is applied to whatever range ``img`` is in (FALCO passes
    [-1, 1] generator outputs and [0, 1] photos alike).
    """
    return clip_normalize(attr_transform(img, size))


# --------------------------------------------------------------------------- loading


def _visual_state(obj: Any) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of a FaRL checkpoint, prefix stripped; everything else is ignored."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            "The FaRL checkpoint must be a dict with a 'state_dict' entry of CLIP-named tensors "
            f"(FaRL-Base-Patch16-LAIONFace20M-ep64.pth); found {keys}."
        )
    state = obj["state_dict"]
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = strip_prefix(state, "module.")
    visual = strip_prefix(state, VISUAL_PREFIX)
    if not visual:
        raise CheckpointError("The FaRL checkpoint's 'state_dict' holds no 'visual.*' image-tower tensors.")
    if not all(isinstance(v, torch.Tensor) for v in visual.values()):
        raise CheckpointError("The FaRL checkpoint's 'visual.*' entries must all be tensors.")
    return visual


def round_like_falco_cuda(farl: FarlVisual) -> FarlVisual:
    """Round the weights FALCO's CUDA run rounds (conv1, attention/MLP matrices, in-proj bias, ``proj``) to fp16.

    ``clip.load(device='cuda')`` converts exactly these to fp16 before FaRL's
    tensors are copied in; ``.float()`` afterwards keeps the rounded values.
    Class/positional embeddings, LayerNorms and the other biases stay exact.
    """
    with torch.no_grad():
        for name, tensor in farl.visual.state_dict(keep_vars=True).items():
            if _rounded_on_cuda(name):
                tensor.copy_(tensor.half().float())
    return farl


def _rounded_on_cuda(name: str) -> bool:
    """Which tensors CLIP's ``convert_weights`` turns to fp16 (Conv/Linear weights+biases, MHA in-proj, proj)."""
    if name in ("conv1.weight", "proj"):
        return True
    return name.endswith(("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
                          "attn.out_proj.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                          "mlp.c_proj.weight", "mlp.c_proj.bias"))


def load_farl_checkpoint(obj_or_path: str | Path | Mapping[str, Any], *, fp16_rounding: bool = False,
                         device: str | torch.device = "cpu") -> FarlVisual:
    """The FaRL image tower from ``FaRL-Base-Patch16-LAIONFace20M-ep64.pth`` (a path or the loaded dict).

    Reads only ``state_dict['visual.*']`` and loads those 152 tensors strictly
    (a missing, extra or misshapen image-tower key is a :class:`CheckpointError`).
    ``fp16_rounding`` applies FALCO's CUDA-path rounding (:func:`round_like_falco_cuda`).
    Returns the network in eval mode, float32.
    """
    obj = safe_load(obj_or_path, what="FaRL ViT-B/16") if isinstance(obj_or_path, (str, Path)) else obj_or_path
    state = {k: v.float() for k, v in _visual_state(obj).items()}
    farl = FarlVisual(build_visual_tower("cpu"))
    load_state_dict_strict(farl.visual, state, "FaRL ViT-B/16 (visual.*)")
    if fp16_rounding:
        round_like_falco_cuda(farl)
    return farl.eval().to(device)


# --------------------------------------------------------------------------- stand-in weights


def _farl_init(name: str, shape: tuple[int, ...]) -> Init:
    """The farl_vitb16 fixture's recipe (official-like scales), so base_seed 0 reproduces its weights."""
    leaf = name.rsplit(".", 1)[-1]
    if name in ("class_embedding", "positional_embedding", "proj"):
        return Init("normal", (1.0 / WIDTH) ** 0.5)
    if ".ln_" in f".{name}":  # ln_pre, ln_post, ln_1, ln_2
        return Init("normal", 0.1, 1.0) if leaf == "weight" else Init("normal", 0.02)
    if name.endswith("attn.in_proj_weight"):
        return Init("normal", 0.05)
    if leaf == "bias" or name.endswith("in_proj_bias"):
        return Init("normal", 0.02)
    if leaf == "weight":  # conv1, out_proj, c_fc, c_proj: N(0, 1/fan_in)
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        return Init("normal", 1.0 / fan_in ** 0.5)
    raise KeyError(f"no stand-in init rule for {name}")


_BLOCK_PART_ORDER = {"attn": 0, "ln_1": 1, "mlp": 2, "ln_2": 3}  # CLIP's ResidualAttentionBlock


def _official_rank(name: str) -> tuple[int, int, int]:
    """Sort key giving CLIP's key order: direct parameters, conv1/ln_pre, blocks (attn, ln_1, mlp, ln_2), ln_post."""
    if "." not in name:
        return (0, 0, 0)
    if name.startswith("transformer.resblocks."):
        block, part = name.split(".")[2:4]
        return (2, int(block), _BLOCK_PART_ORDER[part])
    return (3, 0, 0) if name.startswith("ln_post") else (1, 0, 0)


def standin_farl_state_dict(base_seed: int = 0) -> dict[str, torch.Tensor]:
    """The 152 ``visual.*`` tensors, deterministic and at real size, in the official key order."""
    shapes = {k: tuple(v.shape) for k, v in build_visual_tower("meta").state_dict().items()}
    shapes = {k: shapes[k] for k in sorted(shapes, key=_official_rank)}
    return {
        f"{VISUAL_PREFIX}{name}": seeded_tensor(f"{VISUAL_PREFIX}{name}", shape, _farl_init(name, shape), base_seed)
        for name, shape in shapes.items()
    }


def standin_checkpoint_farl(base_seed: int = 0) -> dict[str, Any]:
    """Stand-in ``FaRL-Base-Patch16-LAIONFace20M-ep64.pth``: ``{'state_dict': visual.* tensors}``.

    With base_seed 0 the tensors equal the farl_vitb16 parity fixture's weights.
    The text tower is left out: nothing in Face Lab reads it.
    """
    return {"state_dict": standin_farl_state_dict(base_seed)}
