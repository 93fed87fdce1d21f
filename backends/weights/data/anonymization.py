"""Checkpoints of the Anonymization tab (FALCO's attribute network)."""

from __future__ import annotations

from ..entry import Checkpoint, Source
from . import FALCO_DROPBOX, GH, ORIGIN_FALCO

ENTRIES = [
    Checkpoint(
        key="farl_ep64",
        filename="FaRL-Base-Patch16-LAIONFace20M-ep64.pth",
        title="FaRL ViT-B/16 face representation (epoch 64)",
        tabs=("anonymization",),
        licence="MIT (FacePerceiver/FaRL)",
        sources=(
            Source(url=f"{GH}/FacePerceiver/FaRL/releases/download/pretrained_weights/"
                   "FaRL-Base-Patch16-LAIONFace20M-ep64.pth",
                   origin="FacePerceiver/FaRL GitHub release 'pretrained_weights'"),
            Source(url=f"{FALCO_DROPBOX}/xxhmvo3q7avlcac/farl.tar?dl=1",
                   member="farl/FaRL-Base-Patch16-LAIONFace20M-ep64.pth",
                   archive_sha256="1d67cc6fd3cea9fdd7ec6af812a32e6b02374162d02137dd80827283d496b2d8",
                   origin=ORIGIN_FALCO + ", FARL"),
        ),
        expect_keys=("state_dict",),
        standin="backends.networks.farl:standin_checkpoint_farl",
    ),
]
