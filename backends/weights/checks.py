"""Structure checks for downloaded checkpoints: each runs the strict loader of its network.

A download whose sha256 nobody published is accepted only when the network's own strict
loader reads it (every key, every shape), so a quota page, a truncated file or another release
never takes the final name. Each function takes the file's path and raises
:class:`~backends.errors.CheckpointError` otherwise; the registry names them in ``Checkpoint.check``.
Imports are local: the weight manager must stay light to import.
"""

from __future__ import annotations

from pathlib import Path


def stylegan2_ffhq1024(path: Path) -> None:
    from ..networks.stylegan2 import load_rosinality_checkpoint

    load_rosinality_checkpoint(path, size=1024, channel_multiplier=2)


def stylegan2_vox256(path: Path) -> None:
    from ..networks.stylegan2 import load_rosinality_checkpoint

    load_rosinality_checkpoint(path, size=256, channel_multiplier=1)


def stylegan2_genforce_ffhq1024(path: Path) -> None:
    from ..networks.stylegan2 import load_genforce_checkpoint

    load_genforce_checkpoint(path)


def e4e_ffhq(path: Path) -> None:
    from ..networks.e4e import load_e4e_checkpoint

    load_e4e_checkpoint(path)


def arcface_ir_se50(path: Path) -> None:
    from ..networks.irse import load_arcface_checkpoint

    load_arcface_checkpoint(path)


def stylemask_1024(path: Path) -> None:
    from ..networks.stylemask import load_mask_network

    load_mask_network(path)


def deca_model(path: Path) -> None:
    """``deca_model.tar``: its ``E_flame`` encoder, strictly (the other two networks are not read)."""
    from ..networks.deca import load_deca_encoder

    load_deca_encoder(path)


def fan68(path: Path) -> None:
    """``2DFAN4-11f355bf06.pth.tar``: the bare FAN(4) state dict, with or without ``num_batches_tracked``."""
    from ..networks.fan68 import load_fan68_checkpoint

    load_fan68_checkpoint(path, channels_last=False)


def clip_vit_b32(path: Path) -> None:
    from ..checkpoints import load_state_dict_strict, safe_load
    from ..networks.dfer_clip import build_clip

    load_state_dict_strict(build_clip(), safe_load(path, what="CLIP ViT-B/32"), "CLIP ViT-B/32")


def dfer_clip(path: Path) -> None:
    """Any of the three DFER-CLIP checkpoints (the class count is read from the file)."""
    from ..networks.dfer_clip import load_dfer_clip_checkpoint

    load_dfer_clip_checkpoint(path)


def mini_xception(path: Path) -> None:
    from ..networks.mini_xception import load_mini_xception_hdf5

    load_mini_xception_hdf5(path)


def alexnet(path: Path) -> None:
    """torchvision's ``alexnet-owt-7be5be79.pth``: every features and classifier tensor at its shape."""
    from ..networks.lpips import check_alexnet

    check_alexnet(path, classifier=True)


def lpips_alex_linear(path: Path) -> None:
    """lpips' ``weights/v0.1/alex.pth``: exactly the five 1x1 linear layers."""
    from ..networks.lpips import check_linear_layers

    check_linear_layers(path)
