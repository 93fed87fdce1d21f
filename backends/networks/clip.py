"""The CLIP ViT-B/32 tower (OpenAI weights, open_clip, QuickGELU), shared by every tab that needs it.

Method-neutral parts only: building the model in OpenAI key naming, tokenising, text embeddings on a
cut context, and the stand-in weights of the registry's ``clip_vit_b32`` entry. The Expression tab's
DFER-CLIP (``dfer_clip.py``) and the PoS-subspaces tab both import from here.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..standin import Init, seeded_tensor

CLIP_ARCH = "ViT-B-32-quickgelu"  # OpenAI ViT-B/32 uses QuickGELU
CONTEXT_LENGTH = 77
CLIP_LOGIT_SCALE = 100.0  # exp(logit_scale) of the released OpenAI weights

# CLIP's image statistics (plain CLIP was trained with them).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------- building and text encoding

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


def build_clip(device: str | torch.device = "cpu") -> nn.Module:
    """An open_clip ViT-B/32 (QuickGELU) in OpenAI key naming, with *uninitialised* weights.

    Built on the meta device and then given empty storage: random init of 150M values
    costs seconds and every caller loads a checkpoint into it right away. The one
    non-persistent buffer (the causal text mask) is recomputed.
    """
    import open_clip

    with quiet_open_clip():
        model = open_clip.create_model(CLIP_ARCH, pretrained=None, device="meta")
    if torch.device(device).type != "meta":
        model.to_empty(device=device)
        model.attn_mask = causal_mask(CONTEXT_LENGTH).to(device)
    return model


def causal_mask(length: int) -> torch.Tensor:
    """The text tower's additive attention mask: -inf above the diagonal."""
    return torch.full((length, length), float("-inf")).triu_(1)


def load_clip(state: Mapping[str, torch.Tensor], device: str | torch.device = "cpu") -> nn.Module:
    """A ViT-B/32 in eval mode with ``state`` (OpenAI key naming, e.g. the registry's ``clip_vit_b32``) loaded
    strictly."""
    from ..checkpoints import load_state_dict_strict

    clip = build_clip()
    load_state_dict_strict(clip, state, "CLIP ViT-B/32")
    return clip.to(device).eval()


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

def meta_shapes(module: nn.Module) -> OrderedDict[str, tuple[int, ...]]:
    return OrderedDict((k, tuple(v.shape)) for k, v in module.state_dict().items())


def standin_clip_state_dict(base_seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    """Seeded CLIP ViT-B/32 tensors, keys ``prefix + <OpenAI name>``, real size."""
    shapes = meta_shapes(build_clip("meta"))
    return {prefix + k: seeded_tensor(prefix + k, s, clip_init(k, s), base_seed) for k, s in shapes.items()}


def clip_init(name: str, shape: tuple[int, ...]) -> Init:
    """OpenAI-style init scales for one CLIP tensor (name without any prefix)."""
    visual = name.startswith("visual.")
    width = 768 if visual else 512
    layers = 12
    if name.endswith("logit_scale"):
        return Init("const", shift=math.log(CLIP_LOGIT_SCALE))
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
        return Init("normal", (3 * 32 * 32) ** -0.5)
    if name == "text_projection":
        return Init("normal", width ** -0.5)
    if "in_proj_weight" in name:
        return Init("normal", width ** -0.5)
    if "out_proj.weight" in name or "c_proj.weight" in name:
        return Init("normal", width ** -0.5 * (2 * layers) ** -0.5)
    if "c_fc.weight" in name:
        return Init("normal", (2 * width) ** -0.5)
    return Init("normal", 0.02)


def standin_checkpoint_clip_vit_b32() -> dict[str, torch.Tensor]:
    """Stand-in for open_clip's ViT-B/32 OpenAI safetensors (OpenAI key naming, no prefix)."""
    return standin_clip_state_dict(base_seed=0)
