"""Checkpoints of the PoS subspaces tab (the text-to-image model and its fast decoder)."""

from __future__ import annotations

from ..entry import Checkpoint, Source

ENTRIES = [
    Checkpoint(
        key="sd_turbo",
        filename="model_index.json",
        title="SD-Turbo text-to-image (diffusers folder: CLIP ViT-H text encoder, UNet, VAE; 1-4 steps, 512 px)",
        name="SD-Turbo text-to-image model",
        tabs=("pos_subspaces",),
        licence="Stability AI Community License (stabilityai/sd-turbo model card): research and "
                "non-commercial use; commercial use only under that licence's terms",
        sources=(Source(hub_repo="stabilityai/sd-turbo", hub_path="model_index.json"),),
        standin="backends.networks.text_to_image:standin_checkpoint_sd_turbo",
        how_to_get="The whole diffusers folder is needed: `huggingface-cli download stabilityai/sd-turbo`, "
                   "or copy it to $FACELAB_WEIGHTS_DIR/sd_turbo/.",
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
