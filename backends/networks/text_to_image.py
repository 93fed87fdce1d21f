"""The text-to-image model of the PoS-subspaces tab: a Stable-Diffusion-style diffusers pipeline.

Default: ``stabilityai/sd-turbo`` (SD 2.1 distilled by adversarial diffusion distillation: 1–4 steps,
no classifier-free guidance, 512 px). Its parts, as the diffusers folders store them:

* ``text_encoder``: a ``CLIPTextModel`` (OpenCLIP ViT-H/14 text tower, 1024 wide, 23 layers: the
  penultimate layer of the original 24, followed by the final layer norm); the UNet is conditioned on
  its ``last_hidden_state`` (1, 77, 1024) — the *token states* this tab edits;
* ``tokenizer``: CLIP BPE, 77 tokens, padded with id 0 (``!``);
* ``unet``: ``UNet2DConditionModel`` (320/640/1280/1280, linear attention projections, head dims 5/10/20/20);
* ``vae``: ``AutoencoderKL`` (128/256/512/512, scaling factor 0.18215);
* ``scheduler``: Euler discrete with "trailing" timestep spacing.

On a CPU the VAE decoder is most of the cost (≈ 2/3 of a 1-step request), so there the images are decoded
with **TAESD** (``madebyollin/taesd``, MIT: a distilled tiny autoencoder for SD latents, 2.4 M parameters,
diffusers ``AutoencoderTiny``), swapped in for ``vae`` after the pipeline is built.

Also here, for offline use:

* a **stand-in** pipeline built from these configs at the real size (1.3 G parameters) with seeded weights,
  given as ``{component: state_dict}`` (one state dict per diffusers folder) and loaded strictly;
* a **tiny** pipeline (a 2-layer CLIP text model, a 2-level UNet and VAE built from config dicts) for tests.

Both stand-in and tiny pipelines tokenize with open_clip's copy of the same CLIP BPE.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import load_state_dict_strict
from ..standin import Init, seeded_tensor

CONTEXT_LENGTH = 77
SD_TURBO_ID = "stabilityai/sd-turbo"
TINY_ID = "tiny-test"  # the tiny wiring pipeline (tests): not a model

# --------------------------------------------------------------------------- configs (facts of sd-turbo)

SD_TURBO_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
    "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    "projection_dim": 512, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
SD_TURBO_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True,
    "norm_num_groups": 32, "flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu",
}
SD_TURBO_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "norm_num_groups": 32, "act_fn": "silu", "sample_size": 512, "scaling_factor": 0.18215,
}
SD_TURBO_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon", "timestep_spacing": "trailing", "steps_offset": 1,
}

TINY_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    "projection_dim": 32, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": (32, 64), "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"), "cross_attention_dim": 32,
    "attention_head_dim": 8, "use_linear_projection": True, "norm_num_groups": 32,
}
TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "block_out_channels": (32, 32), "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2, "norm_num_groups": 32, "sample_size": 32,
    "scaling_factor": 0.18215,
}


TAESD_CONFIG: dict[str, Any] = {  # madebyollin/taesd in diffusers format
    "in_channels": 3, "out_channels": 3, "encoder_block_out_channels": (64, 64, 64, 64),
    "decoder_block_out_channels": (64, 64, 64, 64), "act_fn": "relu", "latent_channels": 4,
    "num_encoder_blocks": (1, 3, 3, 3), "num_decoder_blocks": (3, 3, 3, 1), "upsampling_scaling_factor": 2,
    "latent_magnitude": 3, "latent_shift": 0.5, "scaling_factor": 1.0,
}


@dataclass(frozen=True)
class PipelineSpec:
    """The configs of one diffusers pipeline and how it is run by default."""

    name: str
    text: Mapping[str, Any]
    unet: Mapping[str, Any]
    vae: Mapping[str, Any]
    scheduler: Mapping[str, Any]
    size: int
    steps: int
    guidance_scale: float


SD_TURBO = PipelineSpec("sd-turbo", SD_TURBO_TEXT_CONFIG, SD_TURBO_UNET_CONFIG, SD_TURBO_VAE_CONFIG,
                        SD_TURBO_SCHEDULER_CONFIG, size=512, steps=1, guidance_scale=0.0)
TINY = PipelineSpec("tiny", TINY_TEXT_CONFIG, TINY_UNET_CONFIG, TINY_VAE_CONFIG, SD_TURBO_SCHEDULER_CONFIG,
                    size=32, steps=2, guidance_scale=0.0)


# --------------------------------------------------------------------------- tokenizer

class ClipBpeTokenizer:
    """CLIP BPE ids (N, 77), zero-padded and truncated to end with the end token, plus untruncated lengths.

    Wraps the pipeline's own ``CLIPTokenizer`` when there is one, else open_clip's copy of the same BPE
    (which pads with 0 like the SD 2.x tokenizers).
    """

    def __init__(self, hf_tokenizer: Any = None):
        self.hf = hf_tokenizer

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, list[int]]:
        texts = list(texts)
        if self.hf is not None:
            ids = self.hf(texts, padding="max_length", max_length=CONTEXT_LENGTH, truncation=True,
                          return_tensors="pt").input_ids
            lengths = [len(x) for x in self.hf(texts).input_ids]
            return ids.long(), lengths
        import open_clip

        tokenizer = open_clip.tokenizer._tokenizer
        lengths = [len(tokenizer.encode(t)) + 2 for t in texts]
        return open_clip.tokenize(texts, context_length=CONTEXT_LENGTH).long(), lengths

    def decode_kept(self, text: str, n: int) -> str:
        """The text of the first ``n`` tokens of ``text`` (what survives truncation)."""
        if self.hf is not None:
            return self.hf.decode(self.hf(text, add_special_tokens=False).input_ids[:n]).strip()
        import open_clip

        tokenizer = open_clip.tokenizer._tokenizer
        return tokenizer.decode(tokenizer.encode(text)[:n]).strip()

    def pieces(self, word: str) -> list[str]:
        """The BPE pieces of one word (to tell whole-word tokens from sub-word splits)."""
        if self.hf is not None:
            return list(self.hf.tokenize(word))
        import open_clip

        tokenizer = open_clip.tokenizer._tokenizer
        return [tokenizer.decoder[i] for i in tokenizer.encode(word)]


# --------------------------------------------------------------------------- building

def _build_modules(spec: PipelineSpec, device: str | torch.device) -> dict[str, nn.Module]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device(device):
        return {
            "text_encoder": CLIPTextModel(CLIPTextConfig(**spec.text)),
            "unet": UNet2DConditionModel(**spec.unet),
            "vae": AutoencoderKL(**spec.vae),
        }


def _standin_init(name: str, tensor: torch.Tensor) -> Init | None:
    if not tensor.is_floating_point():
        return None
    if name.endswith("bias"):
        return Init("const", shift=0.0)
    if tensor.dim() == 1:  # norm scales
        return Init("const", shift=1.0)
    if "embedding" in name:
        return Init("normal", 0.02)
    fan_in = math.prod(tensor.shape[1:])
    return Init("normal", 1.0 / math.sqrt(fan_in))


def standin_components(spec: PipelineSpec = SD_TURBO, base_seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Seeded ``{component: state_dict}`` at the size of ``spec`` (the diffusers folder structure)."""
    modules = _build_modules(spec, "meta")
    out: dict[str, dict[str, torch.Tensor]] = {}
    for component, module in modules.items():
        state = {}
        for name, meta in module.state_dict().items():
            key = f"{spec.name}.{component}.{name}"
            init = _standin_init(name, meta)
            if init is None:
                raise RuntimeError(f"no stand-in rule for {key}")
            state[name] = seeded_tensor(key, tuple(meta.shape), init, base_seed, meta.dtype)
        out[component] = state
    return out


def _tiny_autoencoder(device: str | torch.device) -> nn.Module:
    from diffusers import AutoencoderTiny

    with torch.device(device):
        return AutoencoderTiny(**TAESD_CONFIG)


def standin_checkpoint_taesd(base_seed: int = 0) -> dict[str, torch.Tensor]:
    """Stand-in for TAESD's ``diffusion_pytorch_model.safetensors`` (diffusers ``AutoencoderTiny`` keys)."""
    module = _tiny_autoencoder("meta")
    return {name: seeded_tensor(f"taesd.{name}", tuple(t.shape), _standin_init(name, t), base_seed, t.dtype)
            for name, t in module.state_dict().items()}


def load_tiny_autoencoder(state: Mapping[str, torch.Tensor], device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> nn.Module:
    """TAESD (``AutoencoderTiny``) with ``state`` loaded strictly."""
    module = _tiny_autoencoder("cpu")
    load_state_dict_strict(module, state, "TAESD")
    module.to(device=device)
    if dtype != torch.float32:
        module.to(dtype=dtype)
    return module.eval().requires_grad_(False)


def use_tiny_decoder(pipe: Any, autoencoder: nn.Module) -> Any:
    """Decode with ``autoencoder`` (TAESD) instead of the full VAE. ``vae_scale_factor`` stays 8: the
    latents are the same; only the decoder changes."""
    scale = pipe.vae_scale_factor
    pipe.vae = autoencoder
    pipe.vae_scale_factor = scale
    return pipe


def standin_checkpoint_sd_turbo() -> dict[str, dict[str, torch.Tensor]]:
    """Stand-in for the ``stabilityai/sd-turbo`` diffusers folders (text encoder, UNet, VAE), real size."""
    return standin_components(SD_TURBO)


def _restore_non_persistent(module: nn.Module) -> None:
    """Recompute buffers a state dict does not carry (CLIP's position ids) after a meta build."""
    for name, buffer in list(module.named_buffers()):
        if buffer.is_meta:
            if name.endswith("position_ids"):
                owner = module.get_submodule(name.rsplit(".", 1)[0])
                owner.register_buffer("position_ids", torch.arange(buffer.shape[-1]).expand(1, -1),
                                      persistent=False)
            else:
                raise RuntimeError(f"cannot restore the non-persistent buffer {name}")


def pipeline_from_components(spec: PipelineSpec, components: Mapping[str, Mapping[str, torch.Tensor]],
                             device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """A ``StableDiffusionPipeline`` built from ``spec`` with ``components`` loaded strictly.

    The modules are built on the meta device and take the given tensors as their own (no copy), so a
    real-size stand-in costs its size once.
    """
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    modules = _build_modules(spec, "meta")
    for name, module in modules.items():
        if name not in components:
            raise KeyError(f"no weights for the {name} component")
        with warnings.catch_warnings():  # on meta modules the strict loader only checks keys and shapes
            warnings.simplefilter("ignore", UserWarning)
            load_state_dict_strict(module, components[name], f"{spec.name} {name}")
        module.load_state_dict(dict(components[name]), strict=True, assign=True)
        _restore_non_persistent(module)
        module.to(device=device)
        if dtype != torch.float32:
            module.to(dtype=dtype)
        module.eval().requires_grad_(False)
    pipe = StableDiffusionPipeline(
        vae=modules["vae"], text_encoder=modules["text_encoder"], tokenizer=None, unet=modules["unet"],
        scheduler=EulerDiscreteScheduler(**spec.scheduler), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pipeline(base_seed: int = 0, device: str | torch.device = "cpu") -> Any:
    """The tiny wiring pipeline (seeded), for tests: 32 px images from a 32-wide text encoder."""
    return pipeline_from_components(TINY, standin_components(TINY, base_seed), device)


def load_pretrained_pipeline(model_id: str, device: str | torch.device, dtype: torch.dtype,
                             revision: str | None = None) -> Any:
    """A diffusers text-to-image pipeline from the hub cache or a local folder (no safety checker).

    No variant is asked for: the plain (fp32) safetensors are read and cast to ``dtype``, which is what the
    weight manager fetches for SD-Turbo (backends/weights/data/pos_subspaces.py). A local folder is read
    with ``local_files_only``: the hub is not contacted.
    """
    from diffusers import AutoPipelineForText2Image

    local = Path(model_id).is_dir()
    pipe = AutoPipelineForText2Image.from_pretrained(model_id, revision=None if local else revision,
                                                     torch_dtype=dtype, use_safetensors=True,
                                                     local_files_only=local)
    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None  # images are shown side by side to compare; the host adds moderation
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


# --------------------------------------------------------------------------- conditioning

def token_states(text_encoder: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The UNet conditioning of token ids: the text encoder's ``last_hidden_state`` (N, 77, width)."""
    device = next(text_encoder.parameters()).device
    return text_encoder(ids.to(device), attention_mask=None)[0]


def end_token_states(text_encoder: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The conditioning state at each sequence's end token (N, width), on a context cut to the longest text.

    With the causal mask, states up to the end token do not depend on what follows it, so cutting the
    padding changes nothing and saves most of the work for single words.
    """
    length = int(ids.argmax(dim=-1).max()) + 1
    states = token_states(text_encoder, ids[:, :length])
    eot = ids[:, :length].argmax(dim=-1).to(states.device)
    return states[torch.arange(states.shape[0], device=states.device), eot]


__all__ = [
    "CONTEXT_LENGTH",
    "SD_TURBO",
    "SD_TURBO_ID",
    "TINY",
    "TINY_ID",
    "ClipBpeTokenizer",
    "PipelineSpec",
    "end_token_states",
    "load_pretrained_pipeline",
    "pipeline_from_components",
    "standin_checkpoint_sd_turbo",
    "standin_checkpoint_taesd",
    "load_tiny_autoencoder",
    "use_tiny_decoder",
    "standin_components",
    "tiny_pipeline",
    "token_states",
]
