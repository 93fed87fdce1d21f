"""The text-to-image model (SD-Turbo; TAESD on a CPU), loaded once, or its stand-in."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import memory
from ..device import get_device, get_dtype
from ..errors import CheckpointError, InputError, MissingWeightsError
from ..networks.text_to_image import (
    SD_TURBO,
    SD_TURBO_ID,
    TINY,
    TINY_ID,
    ClipBpeTokenizer,
    load_pretrained_pipeline,
    load_tiny_autoencoder,
    pipeline_from_components,
    tiny_pipeline,
    use_tiny_decoder,
)
from ..standin import standin_enabled
from .encoders import ConditioningEncoder

T2I_MODEL_ENV = "FACELAB_POS_T2I_MODEL"
DECODER_ENV = "FACELAB_POS_DECODER"  # auto (TAESD on a CPU, the full VAE on a GPU), taesd or vae


T2I_MODELS_ENV = "FACELAB_POS_T2I_MODELS"  # extra model ids the host lets visitors pick (comma separated)


def default_model_id() -> str:
    """The text-to-image model: ``$FACELAB_POS_T2I_MODEL``, else SD-Turbo."""
    return os.environ.get(T2I_MODEL_ENV, "").strip() or SD_TURBO_ID


def allowed_model_ids() -> list[str]:
    """The models the UI and API offer: the default, the host's extras, and the tiny wiring model when
    stand-in weights are on. Anything else would make the server download a visitor's choice."""
    ids = [default_model_id()]
    ids += [m.strip() for m in os.environ.get(T2I_MODELS_ENV, "").split(",") if m.strip()]
    if standin_enabled():
        ids.append(TINY_ID)
    return list(dict.fromkeys(ids))


def check_model_id(model_id: str | None) -> str:
    """``model_id`` if this server offers it (empty: the default), else an InputError."""
    model_id = (model_id or "").strip() or default_model_id()
    allowed = allowed_model_ids()
    if model_id not in allowed:
        raise InputError(f"The text-to-image model '{model_id}' is not offered here. Choose one of: "
                         f"{', '.join(allowed)}.")
    return model_id


@dataclass
class T2IModel:
    """A loaded text-to-image pipeline and how to run it."""

    model_id: str
    pipe: Any
    encoder: ConditioningEncoder
    size: int
    default_steps: int
    guidance_scale: float
    standin: bool
    notices: list[str] = field(default_factory=list)
    decoder: str = "vae"


def decoder_choice(device: torch.device | None = None) -> str:
    """``taesd`` or ``vae``: ``$FACELAB_POS_DECODER``, else TAESD on a CPU (the full VAE decoder is most of a
    CPU request) and the full VAE on a GPU."""
    choice = os.environ.get(DECODER_ENV, "auto").strip().lower() or "auto"
    if choice not in {"auto", "taesd", "vae"}:
        raise InputError(f"{DECODER_ENV} must be auto, taesd or vae, not '{choice}'.")
    if choice == "auto":
        return "vae" if (device or get_device()).type == "cuda" else "taesd"
    return choice


def _with_decoder(model: T2IModel, decoder: str, device: torch.device) -> T2IModel:
    """Swap in TAESD when asked; without its weights keep the full VAE and say so."""
    if decoder != "taesd":
        return model
    from ..weights import load_checkpoint

    try:
        loaded = load_checkpoint("taesd")
    except (MissingWeightsError, CheckpointError) as exc:
        model.notices.append(f"The fast TAESD decoder is not available ({str(exc).split('.')[0]}); the full VAE "
                             "decoder was used, which is slower on a CPU.")
        return model
    use_tiny_decoder(model.pipe, load_tiny_autoencoder(loaded.obj, device, get_dtype(device)))
    model.decoder = "taesd"
    return model


def _hub_reason(exc: BaseException) -> str:
    """Why a hub model did not load: an unreachable hub first (diffusers then says a file does not exist)."""
    from ..weights import Source, download

    host, port = download.source_host(Source(hub_repo="-"))
    why = download.unreachable(host, port)
    if why:
        return f"The hub cannot be reached from this machine ({why})."
    return f"Loading failed: {download.plain_words(str(exc).strip().splitlines()[0] if str(exc).strip() else '')}"


def _load_real_pipeline(model_id: str, device: torch.device) -> Any:
    """SD-Turbo from its folder fetched and checked by the weight manager; another model id through diffusers."""
    if model_id == SD_TURBO_ID:
        return _load_folder(_sd_turbo_folder(), device)
    from ..weights import offline

    try:
        return load_pretrained_pipeline(model_id, device, get_dtype(device))
    except (OSError, ValueError) as exc:
        reason = "Downloads are off (HF_HUB_OFFLINE=1)." if offline() else _hub_reason(exc)
        raise MissingWeightsError(f"The text-to-image model '{model_id}' could not be loaded. {reason}") from None


def _sd_turbo_folder() -> Path:
    """SD-Turbo's diffusers folder: found or downloaded ($FACELAB_HUB_REPO first, with progress), then checked.

    Raises MissingWeightsError (the weight manager's account of every source) or CheckpointError naming the
    file that is missing or unreadable.
    """
    from ..weights import weights_path
    from ..weights.folders import check_folder

    folder = weights_path("sd_turbo").parent
    try:
        check_folder(folder)
    except CheckpointError as exc:
        raise CheckpointError(f"The text-to-image folder {folder} is incomplete: {exc}.") from None
    return folder


def _load_folder(folder: Path, device: torch.device) -> Any:
    """The pipeline from a local folder only: diffusers reads it from disk and never contacts the hub."""
    try:
        return load_pretrained_pipeline(str(folder), device, get_dtype(device))
    except (OSError, ValueError) as exc:  # the folder is there but does not load: say why, it is not "missing"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"The text-to-image folder {folder} could not be loaded: {first}") from None


@memory.managed("SD-Turbo text-to-image")
@functools.lru_cache(maxsize=1)
def _t2i_model(model_id: str, standin: bool, device: str, decoder: str = "vae") -> T2IModel:
    dev = torch.device(device)
    return _with_decoder(_build_t2i_model(model_id, standin, dev), decoder, dev)


def _build_t2i_model(model_id: str, standin: bool, dev: torch.device) -> T2IModel:
    from ..weights import load_checkpoint

    if model_id == TINY_ID:
        pipe = tiny_pipeline(device=dev)
        encoder = ConditioningEncoder(pipe, ClipBpeTokenizer(), "t2i-tiny", True)
        return T2IModel(model_id, pipe, encoder, TINY.size, TINY.steps, TINY.guidance_scale, True,
                        ["The tiny test pipeline was used: it checks the wiring and draws no real image."])
    if standin:
        notices = []
        if model_id != SD_TURBO_ID:
            notices.append(f"Stand-in weights: the SD-Turbo architecture was used in place of '{model_id}'.")
        loaded = load_checkpoint("sd_turbo")
        pipe = pipeline_from_components(SD_TURBO, loaded.obj, dev, get_dtype(dev))
        encoder = ConditioningEncoder(pipe, ClipBpeTokenizer(), "sd-turbo-standin", True)
        return T2IModel(SD_TURBO_ID, pipe, encoder, SD_TURBO.size, SD_TURBO.steps, SD_TURBO.guidance_scale,
                        True, notices)
    pipe = _load_real_pipeline(model_id, dev)
    if type(pipe).__name__ != "StableDiffusionPipeline":  # SDXL & co. need pooled states from two encoders
        raise CheckpointError(f"'{model_id}' loads as {type(pipe).__name__}; this tab needs a Stable Diffusion "
                              "1.x/2.x pipeline (one CLIP text encoder), such as stabilityai/sd-turbo.")
    turbo = model_id == SD_TURBO_ID or "turbo" in model_id.lower()
    size = int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
    encoder = ConditioningEncoder(pipe, ClipBpeTokenizer(pipe.tokenizer), model_id, False)
    return T2IModel(model_id, pipe, encoder, size, 1 if turbo else 25, 0.0 if turbo else 7.5, False)


def t2i_model(model_id: str | None = None) -> T2IModel:
    """The cached text-to-image model (stand-in at real size when stand-in weights are on)."""
    model_id = model_id or default_model_id()
    if model_id == TINY_ID:  # the wiring model keeps its own tiny VAE
        return _t2i_model(model_id, True, str(get_device()), "vae")
    return _t2i_model(model_id, standin_enabled(), str(get_device()), decoder_choice())
