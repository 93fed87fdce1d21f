"""Checkpoints of the PoS subspaces tab (the text-to-image model and its fast decoder)."""

from __future__ import annotations

from ..entry import Checkpoint, Source

SD_TURBO_REVISION = "b261bac6fd2cf515557d5d0707481eafa0485ec2"  # stabilityai/sd-turbo, pinned
# The files the pipeline loads: configs, tokenizer, and the fp32 safetensors (the loader asks for no variant
# and casts to fp16 on a GPU itself), so neither the fp16 variant copies nor the single-file sd_turbo.safetensors
# are fetched. model_index.json comes last: its presence means the folder is complete and passed its check.
SD_TURBO_FILES = (
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/model.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "model_index.json",
)

ENTRIES = [
    Checkpoint(
        key="sd_turbo",
        filename="model_index.json",
        title="SD-Turbo text-to-image (diffusers folder: CLIP ViT-H text encoder, UNet, VAE; 1-4 steps, 512 px)",
        name="SD-Turbo text-to-image model",
        tabs=("pos_subspaces",),
        licence="Stability AI Community License (stabilityai/sd-turbo model card): research and "
                "non-commercial use; commercial use only under that licence's terms",
        sources=(Source(hub_repo="stabilityai/sd-turbo", hub_path="model_index.json", revision=SD_TURBO_REVISION),),
        standin="backends.networks.text_to_image:standin_checkpoint_sd_turbo",
        how_to_get="It is a diffusers folder of 12 files (5.2 GB, fp32): in your own hub repo put them under "
                   "sd-turbo/ (sd-turbo/model_index.json, sd-turbo/unet/..., as in stabilityai/sd-turbo), or "
                   "copy the folder to $FACELAB_WEIGHTS_DIR/sd_turbo/.",
        folder_files=SD_TURBO_FILES,
        host_folder="sd-turbo",
        params={"model_id": "stabilityai/sd-turbo", "steps": 1, "size": 512, "guidance_scale": 0.0},
    ),
    Checkpoint(
        key="taesd",
        filename="diffusion_pytorch_model.safetensors",
        title="TAESD tiny autoencoder for SD latents (fast decoder of the PoS tab on CPU)",
        name="TAESD fast image decoder",
        tabs=("pos_subspaces",),
        licence="MIT (madebyollin/taesd)",
        sources=(Source(hub_repo="madebyollin/taesd", hub_path="diffusion_pytorch_model.safetensors"),),
        standin="backends.networks.text_to_image:standin_checkpoint_taesd",
    ),
]
