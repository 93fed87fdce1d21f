"""CLIP image and text towers through open_clip: the method-neutral part every CLIP user shares.

* :func:`build_clip` makes the OpenAI ViT-B/32 (QuickGELU) in OpenAI key naming (the layout of
  open_clip's ``open_clip_model.safetensors``), or a tiny configuration for CPU tests;
* :func:`load_clip` loads a state dict into it strictly;
* :class:`ClipEncoder` turns images and sentences into unit-norm embeddings, with the two
  preprocessings the methods use (CLIP's own on [0, 1] images, and the generator-output one);
* the stand-in builders give seeded tensors of the real size and layout.

DFER-CLIP (:mod:`backends.networks.dfer_clip`) and ContraCLIP (:mod:`backends.contraclip`) both
import from here.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_state_dict_strict
from ..standin import Init, seeded_tensor

CLIP_ARCH = "ViT-B-32-quickgelu"  # OpenAI ViT-B/32 uses QuickGELU
EMBED_DIM = 512
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LOGIT_SCALE = 100.0  # OpenAI's learned scale at the end of training (exp(4.6052))
CLIP_LOGIT_SCALE = LOGIT_SCALE


def tokenize(texts: Sequence[str]) -> torch.Tensor:
    """CLIP BPE token ids, (N, 77) int64, zero-padded (open_clip's tokenizer, same vocabulary)."""
    import open_clip

    return open_clip.tokenize(list(texts), context_length=CONTEXT_LENGTH).long()


@contextmanager
def quiet_open_clip() -> Iterator[None]:
    """Silence open_clip's 'no pretrained weights loaded' warning: we load weights ourselves."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def causal_mask(length: int) -> torch.Tensor:
    """The text tower's attention mask: −inf above the diagonal."""
    return torch.full((length, length), float("-inf")).triu_(1)


@dataclass(frozen=True)
class TinyClipConfig:
    """A small CLIP of the same structure (same tokenizer), for CPU tests of training code."""

    embed_dim: int = 32
    image_size: int = 32
    patch_size: int = 16
    vision_width: int = 32
    vision_layers: int = 1
    text_width: int = 32
    text_layers: int = 1
    heads: int = 2


def build_clip(device: str | torch.device = "cpu", tiny: TinyClipConfig | None = None) -> nn.Module:
    """An open_clip CLIP in OpenAI key naming with *uninitialised* weights (ViT-B/32, or ``tiny``).

    Built on the meta device and then given empty storage: random init of 150M values
    costs seconds and every caller loads a checkpoint into it right away. The one
    non-persistent buffer (the causal text mask) is recomputed.
    """
    import open_clip

    with quiet_open_clip():
        if tiny is None:
            model = open_clip.create_model(CLIP_ARCH, pretrained=None, device="meta")
        else:
            with torch.device("meta"):
                model = open_clip.model.CLIP(
                    tiny.embed_dim,
                    open_clip.model.CLIPVisionCfg(layers=tiny.vision_layers, width=tiny.vision_width,
                                                  patch_size=tiny.patch_size, image_size=tiny.image_size,
                                                  head_width=tiny.vision_width // tiny.heads),
                    open_clip.model.CLIPTextCfg(context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE,
                                                width=tiny.text_width, heads=tiny.heads, layers=tiny.text_layers),
                    quick_gelu=True,
                )
    sequence_first(model)
    if torch.device(device).type != "meta":
        model.to_empty(device=device)
        model.attn_mask = causal_mask(CONTEXT_LENGTH).to(device)
    return model


def sequence_first(model: nn.Module) -> nn.Module:
    """Run ``model``'s open_clip transformer stacks sequence-first ([L, N, D]), in place; same maths.

    open_clip 3 runs them batch-first, so ``nn.MultiheadAttention`` hands its input projection a
    transposed [L, N, D] view; torch cannot fold a non-contiguous 3-D input into one matrix
    product and broadcasts the weight into a batched product instead (a copy of the weight per
    token: the 4-prompt text tower took 3x its float32 floor, and bfloat16 three times longer
    than float32). Sequence-first, the stack transposes once at its entry and every projection
    reads contiguous rows. Residual blocks of other kinds are left as they are.
    """
    from open_clip.transformer import ResidualAttentionBlock, Transformer

    for module in model.modules():
        if isinstance(module, Transformer) and all(
                isinstance(block, ResidualAttentionBlock) and isinstance(block.attn, nn.MultiheadAttention)
                for block in module.resblocks):
            module.batch_first = False
            for block in module.resblocks:
                block.attn.batch_first = False
    return model


def load_clip(state: Mapping[str, torch.Tensor], device: str | torch.device = "cpu",
              tiny: TinyClipConfig | None = None) -> nn.Module:
    """A CLIP model with ``state`` (OpenAI names, no prefix) loaded strictly, in eval mode, frozen."""
    model = build_clip(tiny=tiny)
    load_state_dict_strict(model, state, "CLIP ViT-B/32" if tiny is None else "tiny CLIP")
    return model.to(device).eval().requires_grad_(False)


class ClipEncoder(nn.Module):
    """Unit-norm CLIP embeddings of images and sentences, with text features cached per sentence.

    The CLIP may be in a lower precision (bfloat16 on CPU, float16 on CUDA): resizing and CLIP's
    mean/std stay float32, the normalised pixels are cast to the tower's dtype at its entry, and the
    embeddings come back float32.
    """

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip
        size = clip.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self._text: dict[str, torch.Tensor] = {}

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        """Resize the short side to the input size, then centre-crop (torchvision's Resize + CenterCrop)."""
        h, w = images.shape[-2:]
        scale = self.image_size / min(h, w)
        if (h, w) != (self.image_size, self.image_size):
            size = (max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale)))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        top = (images.shape[-2] - self.image_size) // 2
        left = (images.shape[-1] - self.image_size) // 2
        return images[..., top: top + self.image_size, left: left + self.image_size]

    def encode_images(self, images: torch.Tensor, generator_range: bool = True) -> torch.Tensor:
        """(N, 3, H, W) → (N, E) unit embeddings.

        ``generator_range``: images are raw generator outputs in about [−1, 1], mapped to [0, 1]
        before CLIP's mean/std; otherwise they are already in [0, 1].
        """
        images = self._resize(images.float())
        if generator_range:
            images = (images.clamp(-1, 1) + 1) / 2
        return self._embed((images - self.mean) / self.std)

    @property
    def dtype(self) -> torch.dtype:
        return self.clip.visual.conv1.weight.dtype

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings (float32) of normalised float32 pixels, run in the tower's dtype."""
        return F.normalize(self.clip.encode_image(pixels.to(self.dtype)).float(), dim=-1)

    def encode_generator_output_official(self, images: torch.Tensor) -> torch.Tensor:
        """ContraCLIP's training transform: Resize/CenterCrop, then CLIP mean/std on the raw [−1, 1] output."""
        images = self._resize(images.float())
        return self._embed((images - self.mean) / self.std)

    def encode_texts(self, sentences: Sequence[str]) -> torch.Tensor:
        """(N, E) unit embeddings of sentences, each computed once."""
        todo = [s for s in dict.fromkeys(sentences) if s not in self._text]
        if todo:
            device = self.mean.device
            with torch.no_grad():
                feats = F.normalize(self.clip.encode_text(tokenize(todo).to(device)).float(), dim=-1)
            self._text.update(zip(todo, feats, strict=True))
        return torch.stack([self._text[s] for s in sentences])


def clip_text_embeddings(clip: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """open_clip ``encode_text`` (joint-space text embeddings, not normalised) on a context cut to the
    longest sequence of the batch.

    The text tower is causal and pools at the end token, so positions after it never reach the result:
    cutting them gives the same numbers for a fraction of the cost (single words are 3-8 tokens of 77).
    """
    length = int(ids.argmax(dim=-1).max()) + 1
    ids = ids[:, :length].to(clip.positional_embedding.device)
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(ids).to(cast) + clip.positional_embedding[:length].to(cast)
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
    x = clip.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
    return x @ clip.text_projection


# --------------------------------------------------------------------------- stand-ins

def clip_init(name: str, shape: tuple[int, ...], width_visual: int = 768, width_text: int = 512,
              layers: int = 12) -> Init:
    """OpenAI-style init scales for one CLIP tensor (name without any prefix)."""
    width = width_visual if name.startswith("visual.") else width_text
    if name.endswith("logit_scale"):
        return Init("const", shift=math.log(LOGIT_SCALE))
    if ".ln_" in name or name.startswith("ln_") or "ln_final" in name or "ln_pre" in name or "ln_post" in name:
        return Init("const", shift=1.0) if name.endswith("weight") else Init("const", shift=0.0)
    if name.endswith("bias"):
        return Init("normal", 0.02)
    if name == "token_embedding.weight":
        return Init("normal", 0.02)
    if name == "positional_embedding":
        return Init("normal", 0.01)
    if name in ("visual.class_embedding", "visual.positional_embedding", "visual.proj"):
        return Init("normal", width ** -0.5)
    if name == "visual.conv1.weight":
        return Init("normal", (3 * shape[-1] * shape[-2]) ** -0.5)
    if name == "text_projection":
        return Init("normal", width ** -0.5)
    if "in_proj_weight" in name:
        return Init("normal", width ** -0.5)
    if "out_proj.weight" in name or "c_proj.weight" in name:
        return Init("normal", width ** -0.5 * (2 * layers) ** -0.5)
    if "c_fc.weight" in name:
        return Init("normal", (2 * width) ** -0.5)
    return Init("normal", 0.02)


def meta_shapes(module: nn.Module) -> OrderedDict[str, tuple[int, ...]]:
    """Every state-dict entry of ``module`` with its shape (works on the meta device)."""
    return OrderedDict((k, tuple(v.shape)) for k, v in module.state_dict().items())


def standin_clip_state_dict(base_seed: int = 0, prefix: str = "",
                            tiny: TinyClipConfig | None = None) -> dict[str, torch.Tensor]:
    """Seeded CLIP tensors, keys ``prefix + <OpenAI name>``: ViT-B/32 at real size, or ``tiny``."""
    shapes = meta_shapes(build_clip("meta", tiny=tiny))
    if tiny is None:
        widths = {}
    else:
        widths = {"width_visual": tiny.vision_width, "width_text": tiny.text_width,
                  "layers": max(tiny.vision_layers, tiny.text_layers)}
    return {prefix + k: seeded_tensor(prefix + k, s, clip_init(k, s, **widths), base_seed) for k, s in shapes.items()}


def standin_checkpoint_clip_vit_b32() -> dict[str, torch.Tensor]:
    """Stand-in for open_clip's ViT-B/32 OpenAI safetensors (OpenAI key naming, no prefix)."""
    return standin_clip_state_dict(base_seed=0)


__all__ = [
    "CLIP_ARCH",
    "CLIP_MEAN",
    "CLIP_STD",
    "CONTEXT_LENGTH",
    "EMBED_DIM",
    "ClipEncoder",
    "TinyClipConfig",
    "build_clip",
    "sequence_first",
    "causal_mask",
    "clip_init",
    "load_clip",
    "meta_shapes",
    "quiet_open_clip",
    "standin_checkpoint_clip_vit_b32",
    "standin_clip_state_dict",
    "tokenize",
]
