"""DFER-CLIP (Zhao & Patras, BMVC 2023): dynamic facial expression recognition with CLIP.

Architecture, as the official checkpoints expect it:

* a CLIP ViT-B/32 visual tower (QuickGELU) encodes every frame of a 16-frame clip;
  it is fed raw ``[0, 1]`` pixels (the official loader applies no CLIP mean/std);
* a one-layer pre-LN temporal transformer with a learnable class token turns the
  16 frame features into one video feature (the class-token output);
* the CLIP text tower encodes one prompt per class, made of the start token,
  8 learnable class-specific context vectors ``ctx`` and the embedded tail of
  ``"X X X X X X X X <description>"`` (``token_prefix``/``token_suffix`` buffers);
* logits are ``100 * cos(video, text)`` with a fixed scale.

The official state dict (``module.`` prefix from DataParallel) stores the CLIP towers
twice: ``image_encoder.*``/``text_encoder.*`` and the whole model again under
``clip_model_.*``. :class:`DferClip` registers the very same modules under both names,
so the 618 keys load strictly and, as in the official ``load_state_dict``, the
``clip_model_`` copy (visited last) is the one that is kept.

Also here: the safe reader of the official ``*-model_best.pth`` files (which pickle a
``__main__.RecorderMeter``), the zero-shot CLIP classifier and the stand-in builders.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load
from ..errors import CheckpointError
from ..standin import Init, seeded_tensor
from .clip import (  # noqa: F401 - re-exported: the CLIP towers moved to .clip, older imports keep working
    CLIP_ARCH,
    CLIP_MEAN,
    CLIP_STD,
    CONTEXT_LENGTH,
    EMBED_DIM,
    build_clip,
    meta_shapes,
    standin_checkpoint_clip_vit_b32,
    standin_clip_state_dict,
    tokenize,
)
from .clip import causal_mask as _causal_mask

# --------------------------------------------------------------------------- constants

NUM_CONTEXT_TOKENS = 8
NUM_FRAMES = 16
LOGIT_SCALE = 100.0  # DFER-CLIP divides by a fixed temperature 0.01
CONTEXT_PLACEHOLDER = " ".join(["X"] * NUM_CONTEXT_TOKENS)
PLACEHOLDER_TOKEN_ID = 343  # BPE id of "x</w>" (the tokenizer lower-cases)
START_TOKEN_ID = 49406
END_TOKEN_ID = 49407

# Class order of the official label files (label - 1 -> index).
DFEW_CLASSES: tuple[str, ...] = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
FERV39K_CLASSES: tuple[str, ...] = DFEW_CLASSES
MAFW_CLASSES: tuple[str, ...] = DFEW_CLASSES + ("contempt", "anxiety", "helplessness", "disappointment")
CLASSES_BY_DATASET: dict[str, tuple[str, ...]] = {
    "dfew": DFEW_CLASSES,
    "ferv39k": FERV39K_CLASSES,
    "mafw": MAFW_CLASSES,
}

# Our own wording of what each expression looks like. A trained checkpoint carries its
# prompts already embedded (token_prefix/suffix), so these only shape the zero-shot mode
# and the stand-in checkpoints.
EXPRESSION_DESCRIPTIONS: dict[str, str] = {
    "happiness": "lifted mouth corners, puffed cheeks and crinkles around the eyes.",
    "sadness": "inner brows pulled up, lowered mouth corners and heavy eyelids.",
    "neutral": "a calm face with loose muscles, closed lips and level brows.",
    "anger": "brows drawn down and together, a hard stare and pressed lips.",
    "surprise": "eyes opened wide, brows lifted high and the jaw dropped open.",
    "disgust": "a scrunched nose, a raised upper lip and narrowed eyes.",
    "fear": "wide tense eyes, brows raised and pulled together and lips stretched back.",
    "contempt": "one mouth corner tightened and raised in a lopsided sneer.",
    "anxiety": "a tense worried look, darting eyes and tightly held lips.",
    "helplessness": "drooping brows, a slack open mouth and a resigned gaze.",
    "disappointment": "a downcast gaze, flattened lips and slightly lowered brows.",
}

ZERO_SHOT_TEMPLATE = "a photo of a face showing {name}: {description}"

# CLIP's image statistics; used by the zero-shot mode only (plain CLIP was trained with them).


# --------------------------------------------------------------------------- tokenisation

def prompt_texts(classes: Sequence[str], descriptions: Mapping[str, str] | None = None) -> list[str]:
    """The DFER-CLIP prompt of each class: 8 context placeholders, then the description."""
    descriptions = descriptions or EXPRESSION_DESCRIPTIONS
    return [f"{CONTEXT_PLACEHOLDER} {descriptions[name]}" for name in classes]


def prompt_token_ids(classes: Sequence[str], descriptions: Mapping[str, str] | None = None) -> torch.Tensor:
    """Token ids of :func:`prompt_texts` (positions 1..8 are the placeholder token)."""
    return tokenize(prompt_texts(classes, descriptions))


# --------------------------------------------------------------------------- CLIP towers

class PromptLearner(nn.Module):
    """Class-specific learnable context between the embedded start token and prompt tail."""

    def __init__(self, num_classes: int, num_context: int = NUM_CONTEXT_TOKENS, width: int = EMBED_DIM):
        super().__init__()
        tail = CONTEXT_LENGTH - 1 - num_context
        self.ctx = nn.Parameter(torch.zeros(num_classes, num_context, width))
        self.register_buffer("token_prefix", torch.zeros(num_classes, 1, width))
        self.register_buffer("token_suffix", torch.zeros(num_classes, tail, width))
        # Not part of the checkpoint (a plain attribute officially): recovered at load time.
        self.register_buffer("token_ids", torch.zeros(num_classes, CONTEXT_LENGTH, dtype=torch.long),
                             persistent=False)

    def forward(self) -> torch.Tensor:
        """(C, 77, width) prompt embeddings: prefix, context, suffix."""
        return torch.cat([self.token_prefix, self.ctx, self.token_suffix], dim=1)


class PromptTextEncoder(nn.Module):
    """The CLIP text transformer run on prompt embeddings instead of token ids.

    Holds the very modules/parameters of ``clip`` (shared, not copied), under the
    official attribute names.
    """

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.positional_embedding = clip.positional_embedding
        self.text_projection = clip.text_projection
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.register_buffer("causal_mask", _causal_mask(CONTEXT_LENGTH), persistent=False)

    def forward(self, prompts: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """(C, 77, width) prompts + (C, 77) ids -> (C, 512) features at the end-of-text token."""
        x = prompts + self.positional_embedding
        x = self.transformer(x, attn_mask=self.causal_mask)
        x = self.ln_final(x)
        eot = token_ids.argmax(dim=-1)  # the end token has the largest id
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection


# --------------------------------------------------------------------------- temporal model

class _Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class TemporalAttention(nn.Module):
    """Multi-head self-attention with a bias-free fused q/k/v projection."""

    def __init__(self, dim: int = EMBED_DIM, heads: int = 8, head_dim: int = 64):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.scale = head_dim ** -0.5
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        weights = ((q @ k.transpose(-1, -2)) * self.scale).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class TemporalFeedForward(nn.Module):
    """512 -> 1024 -> 512 MLP; the tanh approximation of GELU is what the checkpoints were trained with."""

    def __init__(self, dim: int = EMBED_DIM, hidden: int = 1024):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Dropout(0.0),
            nn.Linear(hidden, dim), nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TemporalEncoder(nn.Module):
    """A stack of pre-LN transformer blocks (no final norm)."""

    def __init__(self, dim: int = EMBED_DIM, depth: int = 1):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([
                _Residual(_PreNorm(dim, TemporalAttention(dim))),
                _Residual(_PreNorm(dim, TemporalFeedForward(dim))),
            ])
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, feed_forward in self.layers:
            x = feed_forward(attention(x))
        return x


class TemporalNet(nn.Module):
    """Frame features (B, T, 512) -> video feature (B, 512): the class-token output."""

    def __init__(self, num_frames: int = NUM_FRAMES, dim: int = EMBED_DIM, depth: int = 1):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, num_frames + 1, dim))
        self.temporal_transformer = TemporalEncoder(dim, depth)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, _ = frames.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), frames], dim=1)
        x = x + self.pos_embedding[:, : t + 1]
        return self.temporal_transformer(x)[:, 0]


# --------------------------------------------------------------------------- DFER-CLIP

class DferClip(nn.Module):
    """DFER-CLIP with the official module names (see the module docstring)."""

    def __init__(self, num_classes: int, device: str | torch.device = "cpu"):
        super().__init__()
        clip = build_clip(device)
        with torch.device(device):
            # Registration order = official state-dict order; clip_model_ last so its copy wins on load.
            self.prompt_learner = PromptLearner(num_classes)
            self.text_encoder = PromptTextEncoder(clip)
            self.image_encoder = clip.visual
            self.temporal_net = TemporalNet()
        self.clip_model_ = clip
        # The CLIP weights are uninitialised until a checkpoint is loaded (see build_clip).
        self._text_cache: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.prompt_learner.ctx.shape[0]

    def clear_text_cache(self) -> None:
        """Forget cached text features (call after changing the weights)."""
        self._text_cache = None

    @property
    def dtype(self) -> torch.dtype:
        """The weights' precision (bfloat16 on CPUs with units, see backends.device); results are float32."""
        return self.prompt_learner.ctx.dtype

    def encode_frames(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, 224, 224) pixels in [0, 1] -> (B, T, 512) frame features (unnormalised, float32)."""
        b, t = clip.shape[:2]
        frames = clip.reshape(b * t, *clip.shape[2:]).to(self.dtype)
        return self.image_encoder(frames).float().reshape(b, t, -1)

    def encode_text(self) -> torch.Tensor:
        """(C, 512) unnormalised class text features, computed afresh."""
        return self.text_encoder(self.prompt_learner(), self.prompt_learner.token_ids)

    def text_features(self) -> torch.Tensor:
        """(C, 512) L2-normalised text features, cached: they do not depend on the video."""
        device = self.prompt_learner.ctx.device
        if self._text_cache is None or self._text_cache.device != device:
            with torch.no_grad():
                self._text_cache = F.normalize(self.encode_text().float(), dim=-1)
        return self._text_cache

    def logits_from_frame_features(self, frame_features: torch.Tensor) -> torch.Tensor:
        """(B, T, 512) frame features -> (B, C) float32 logits, 100 * cos(video, text)."""
        video = F.normalize(self.temporal_net(frame_features.to(self.dtype)).float(), dim=-1)
        return LOGIT_SCALE * video @ self.text_features().t()

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, 224, 224) in [0, 1] -> (B, C) logits."""
        return self.logits_from_frame_features(self.encode_frames(clip))

    def forward_with_intermediates(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits and every intermediate the parity fixture records (text features not cached)."""
        frames = self.encode_frames(clip)
        video = self.temporal_net(frames)
        text = self.encode_text()
        video_n, text_n = F.normalize(video, dim=-1), F.normalize(text, dim=-1)
        return {
            "frame_features": frames,
            "video_feature": video,
            "video_feature_normalised": video_n,
            "text_features": text,
            "text_features_normalised": text_n,
            "logits": LOGIT_SCALE * video_n @ text_n.t(),
        }


def official_alias_target(name: str) -> str | None:
    """The ``clip_model_.*`` key an aliased official key shares its tensor with (no ``module.``)."""
    if name.startswith("image_encoder."):
        return "clip_model_.visual." + name[len("image_encoder."):]
    if name.startswith("text_encoder."):
        return "clip_model_." + name[len("text_encoder."):]
    return None


# --------------------------------------------------------------------------- safe reading

class RecorderMeterStandIn:
    """Inert placeholder for the training recorder pickled in official checkpoints.

    The official ``main.py`` ran as a script, so its ``RecorderMeter`` is pickled as
    ``__main__.RecorderMeter``. Allow-listing *this* class under that exact name lets
    ``torch.load(weights_only=True)`` rebuild it as a plain attribute bag; it has no
    methods that could run, and nothing else in the file may be an object.
    """

    def __repr__(self) -> str:
        return f"RecorderMeterStandIn({sorted(vars(self))})"


def _numpy_array_globals() -> list[tuple[Any, str]]:
    """The numpy globals a pickled numeric array needs; none of them can run code.

    ``_reconstruct`` only allocates an empty array, ``ndarray``/``dtype`` state setters
    copy raw bytes, ``scalar`` wraps bytes. Object dtype is deliberately not allowed.
    Both module spellings are listed: numpy 1.x files say ``numpy.core``, 2.x ``numpy._core``.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    allow: list[tuple[Any, str]] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allow += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    for kind in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                 np.float16, np.float32, np.float64):
        dtype_class = type(np.dtype(kind))
        if dtype_class is not np.dtype:  # numpy >= 1.25 has one class per dtype
            allow.append((dtype_class, f"numpy.dtypes.{dtype_class.__name__}"))
    return allow


OFFICIAL_CHECKPOINT_ALLOW: list[tuple[Any, str]] = [
    (RecorderMeterStandIn, "__main__.RecorderMeter"),
    *_numpy_array_globals(),
]


def read_official_checkpoint(path: str | Path) -> Any:
    """Read a ``*-model_best.pth`` without executing code from it (recorder allow-listed)."""
    return safe_load(path, allow=OFFICIAL_CHECKPOINT_ALLOW, what="DFER-CLIP checkpoint")


# --------------------------------------------------------------------------- strict loading

def official_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The model weights of an official checkpoint object, without the ``module.`` prefix.

    Accepts the full checkpoint dict (``{'state_dict': ...}``) or a bare state dict, with
    the DataParallel prefix on every key or on none.
    """
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError("The DFER-CLIP checkpoint holds no 'state_dict' of tensors.")
    keys = list(state)
    prefixed = [k.startswith("module.") for k in keys]
    if any(prefixed) and not all(prefixed):
        raise CheckpointError("The DFER-CLIP checkpoint mixes keys with and without the 'module.' prefix.")
    out = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"The DFER-CLIP checkpoint has non-tensor entries: {', '.join(bad[:5])}.")
    return out


def recover_token_ids(prefix: torch.Tensor, suffix: torch.Tensor, token_embedding: torch.Tensor,
                      atol: float = 1e-5) -> torch.Tensor:
    """Rebuild the (C, 77) prompt token ids from the embedded prompt buffers.

    The official model keeps the ids as a plain attribute (not saved), but ``token_prefix``
    and ``token_suffix`` are rows of the frozen token embedding, so every id is found by
    exact nearest-neighbour lookup. The context positions hold the placeholder ``X``.
    """
    num_classes, width = prefix.shape[0], prefix.shape[-1]
    embedded = torch.cat([prefix, suffix], dim=1).reshape(-1, width).float()
    unique_rows, inverse = torch.unique(embedded, dim=0, return_inverse=True)
    vocab = token_embedding.float()
    distances = torch.cdist(unique_rows, vocab)
    ids = distances.argmin(dim=1)
    error = (unique_rows - vocab[ids]).abs().amax().item() if len(ids) else 0.0
    if error > atol:
        raise CheckpointError(
            "The DFER-CLIP prompt buffers (token_prefix/token_suffix) are not rows of the token "
            f"embedding (max difference {error:.2e}); the checkpoint is damaged or not DFER-CLIP."
        )
    known = ids[inverse].reshape(num_classes, -1)
    context = torch.full((num_classes, CONTEXT_LENGTH - known.shape[1]), PLACEHOLDER_TOKEN_ID, dtype=torch.long)
    token_ids = torch.cat([known[:, :1], context, known[:, 1:]], dim=1)
    if not bool((token_ids.argmax(dim=1) > NUM_CONTEXT_TOKENS).all()) or not bool(
            (token_ids.max(dim=1).values == END_TOKEN_ID).all()):
        raise CheckpointError("The DFER-CLIP prompt buffers hold no end-of-text token after the context.")
    return token_ids


def load_dfer_clip_checkpoint(obj_or_path: Any, num_classes: int | None = None,
                              device: str | torch.device = "cpu") -> DferClip:
    """A DFER-CLIP in eval mode, strictly loaded from an official checkpoint (object or file path)."""
    obj = read_official_checkpoint(obj_or_path) if isinstance(obj_or_path, (str, Path)) else obj_or_path
    state = official_state_dict(obj)
    ctx = state.get("prompt_learner.ctx")
    if ctx is None or ctx.dim() != 3:
        raise CheckpointError("The DFER-CLIP checkpoint has no prompt_learner.ctx of shape (classes, 8, 512).")
    found = ctx.shape[0]
    if num_classes is not None and found != num_classes:
        raise CheckpointError(f"The DFER-CLIP checkpoint has {found} classes, expected {num_classes}.")
    model = DferClip(found)
    load_state_dict_strict(model, state, "DFER-CLIP")
    token_ids = recover_token_ids(
        state["prompt_learner.token_prefix"], state["prompt_learner.token_suffix"],
        state["clip_model_.token_embedding.weight"],
    )
    model.prompt_learner.token_ids.copy_(token_ids)
    model.clear_text_cache()
    return model.to(device).eval()


# --------------------------------------------------------------------------- zero-shot CLIP

class ZeroShotClip(nn.Module):
    """Plain CLIP ViT-B/32: mean of normalised frame features against described-expression prompts."""

    def __init__(self, clip: nn.Module, classes: Sequence[str], descriptions: Mapping[str, str] | None = None):
        super().__init__()
        self.clip = clip
        self.classes = tuple(classes)
        descriptions = descriptions or EXPRESSION_DESCRIPTIONS
        texts = [ZERO_SHOT_TEMPLATE.format(name=c, description=descriptions[c]) for c in self.classes]
        self.register_buffer("token_ids", tokenize(texts), persistent=False)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self._text_cache: torch.Tensor | None = None

    def text_features(self) -> torch.Tensor:
        """(C, 512) normalised prompt features, cached."""
        if self._text_cache is None or self._text_cache.device != self.token_ids.device:
            with torch.no_grad():
                self._text_cache = F.normalize(self.clip.encode_text(self.token_ids).float(), dim=-1)
        return self._text_cache

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, 224, 224) in [0, 1] -> (N, 512) normalised float32 features (CLIP normalisation applied).

        The CLIP may be bfloat16 (CPU policy): normalisation stays float32, the tower runs in its dtype.
        """
        pixels = ((frames - self.mean) / self.std).to(self.clip.visual.conv1.weight.dtype)
        return F.normalize(self.clip.encode_image(pixels).float(), dim=-1)

    def logits_from_frame_features(self, frame_features: torch.Tensor) -> torch.Tensor:
        """(B, T, 512) normalised frame features -> (B, C) logits of the mean feature."""
        video = F.normalize(frame_features.mean(dim=1), dim=-1)
        return LOGIT_SCALE * video @ self.text_features().t()

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        feats = self.encode_frames(clip.reshape(b * t, *clip.shape[2:])).reshape(b, t, -1)
        return self.logits_from_frame_features(feats)


def load_zero_shot_clip(state: Mapping[str, torch.Tensor], classes: Sequence[str],
                        device: str | torch.device = "cpu") -> ZeroShotClip:
    """A :class:`ZeroShotClip` from an open_clip/OpenAI-named ViT-B/32 state dict, loaded strictly."""
    clip = build_clip()
    load_state_dict_strict(clip, state, "CLIP ViT-B/32")
    return ZeroShotClip(clip, classes).to(device).eval()


# --------------------------------------------------------------------------- stand-ins

def _temporal_init(name: str, shape: tuple[int, ...]) -> Init:
    if name.endswith(("cls_token", "pos_embedding")):
        return Init("normal", 1.0)
    if ".norm." in name:
        return Init("const", shift=1.0) if name.endswith("weight") else Init("const", shift=0.0)
    if name.endswith("bias"):
        return Init("normal", 0.02)
    return Init("normal", shape[-1] ** -0.5)


def standin_dfer_clip_state(classes: Sequence[str], base_seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A seeded DFER-CLIP state dict in the official layout (``module.`` keys, shared aliases).

    Unique tensors are drawn once (the ``clip_model_`` copy); ``image_encoder``/``text_encoder``
    keys point at the same tensors, and the prompt buffers are the token embeddings of our
    own prompts, so the structure is that of a real file.
    """
    shapes = meta_shapes(DferClip(len(classes), device="meta"))
    clip = standin_clip_state_dict(base_seed, prefix="module.clip_model_.")
    token_ids = prompt_token_ids(classes)
    embedding = clip["module.clip_model_.token_embedding.weight"]
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, shape in shapes.items():
        key = "module." + name
        alias = official_alias_target(name)
        if alias is not None:
            state[key] = clip["module." + alias]
        elif name.startswith("clip_model_."):
            state[key] = clip[key]
        elif name == "prompt_learner.token_prefix":
            state[key] = embedding[token_ids[:, :1]].clone()
        elif name == "prompt_learner.token_suffix":
            state[key] = embedding[token_ids[:, 1 + NUM_CONTEXT_TOKENS:]].clone()
        elif name == "prompt_learner.ctx":
            state[key] = seeded_tensor(key, shape, Init("normal", 0.02), base_seed)
        else:
            state[key] = seeded_tensor(key, shape, _temporal_init(name, shape), base_seed)
    return state


def _standin_checkpoint(classes: Sequence[str]) -> dict[str, Any]:
    # Optimizer state and the training recorder are left out: nothing reads them.
    return {"epoch": 0, "state_dict": standin_dfer_clip_state(classes), "best_acc": torch.tensor(0.0)}


def standin_checkpoint_dfer_clip_dfew() -> dict[str, Any]:
    """Stand-in for ``DFEW-set1-model_best.pth`` (7 classes), official structure."""
    return _standin_checkpoint(DFEW_CLASSES)


def standin_checkpoint_dfer_clip_ferv39k() -> dict[str, Any]:
    """Stand-in for ``FERV39K-model_best.pth`` (7 classes), official structure."""
    return _standin_checkpoint(FERV39K_CLASSES)


def standin_checkpoint_dfer_clip_mafw() -> dict[str, Any]:
    """Stand-in for ``MAFW-set1-model_best.pth`` (11 classes), official structure."""
    return _standin_checkpoint(MAFW_CLASSES)
