"""Words to CLIP features: the joint image-text space and SD-Turbo's conditioning space, cached on disk."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import memory
from ..device import get_device, get_dtype
from ..networks.clip import clip_text_embeddings
from ..networks.text_to_image import (
    ClipBpeTokenizer,
    end_token_states,
    token_states,
)
from ..standin import standin_enabled
from .vocabulary import words_hash

SPACES = ("joint", "t2i")
ENCODE_BATCH = 256

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    return None


# --------------------------------------------------------------------------- encoders

class WordEncoder:
    """Maps texts to vectors of one space; ``identity`` names the weights (for the disk cache)."""

    space: str = ""
    identity: str = ""
    standin: bool = False
    tokenizer: ClipBpeTokenizer

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, texts: Sequence[str], progress: Progress = _no_progress, what: str = "words",
               batch_size: int = ENCODE_BATCH) -> torch.Tensor:
        """(N, d) float32 CPU vectors, batched; texts of equal token length are batched together."""
        texts = list(texts)
        lengths = self.tokenizer(texts)[1] if texts else []
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        parts: list[torch.Tensor] = []
        for start in range(0, len(order), batch_size):
            chunk = [texts[i] for i in order[start:start + batch_size]]
            parts.append(self.encode_batch(chunk).float().cpu())
            progress(min(1.0, (start + len(chunk)) / max(1, len(order))), f"Encoding {what}")
        if not parts:
            return torch.zeros(0, 0)
        out = torch.empty(len(texts), parts[0].shape[1])
        out[torch.tensor(order)] = torch.cat(parts)
        return out


class JointSpaceEncoder(WordEncoder):
    """CLIP ViT-B/32 text embeddings in the joint image-text space (open_clip, OpenAI weights)."""

    space = "joint"

    def __init__(self, clip: torch.nn.Module, standin: bool):
        self.clip, self.standin = clip, standin
        self.identity = "clip_vit_b32" + ("-standin" if standin else "")
        self.tokenizer = ClipBpeTokenizer()

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        ids, _ = self.tokenizer(texts)
        return clip_text_embeddings(self.clip, ids)


class ConditioningEncoder(WordEncoder):
    """The text-to-image model's text encoder: end-token states of words, all token states of prompts."""

    space = "t2i"

    def __init__(self, pipe: Any, tokenizer: ClipBpeTokenizer, identity: str, standin: bool):
        self.pipe, self.tokenizer, self.identity, self.standin = pipe, tokenizer, identity, standin

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        ids, _ = self.tokenizer(texts)
        return end_token_states(self.pipe.text_encoder, ids)

    @torch.no_grad()
    def prompt_states(self, prompt: str) -> torch.Tensor:
        ids, _ = self.tokenizer([prompt])
        return token_states(self.pipe.text_encoder, ids)


def _cache_root() -> Path:
    from ..weights import cache_dir

    return cache_dir() / "pos_subspaces"


def encode_cached(encoder: WordEncoder, words: Sequence[str], progress: Progress = _no_progress,
                  what: str = "words") -> torch.Tensor:
    """Encodings of ``words``, from the disk cache (keyed by encoder and word-list hash) when present."""
    from safetensors.torch import load_file, save_file

    path = _cache_root() / f"{encoder.identity.replace('/', '--')}-{words_hash(words)}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["encodings"]
        except Exception:  # a damaged cache file is rebuilt
            path.unlink(missing_ok=True)
    out = encoder.encode(words, progress, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    save_file({"encodings": out.contiguous()}, str(tmp), metadata={"encoder": encoder.identity, "n": str(len(words))})
    tmp.replace(path)
    return out


@memory.managed("CLIP ViT-B/32 (PoS joint space)")
@functools.lru_cache(maxsize=1)
def _joint_encoder(standin: bool, device: str) -> JointSpaceEncoder:
    from ..networks.clip import load_clip
    from ..weights import load_checkpoint

    loaded = load_checkpoint("clip_vit_b32")
    clip = load_clip(loaded.obj, device).to(dtype=get_dtype(torch.device(device)))
    return JointSpaceEncoder(clip, loaded.standin)


def joint_encoder() -> JointSpaceEncoder:
    """The cached CLIP ViT-B/32 joint-space encoder (stand-in weights when enabled)."""
    return _joint_encoder(standin_enabled(), str(get_device()))
