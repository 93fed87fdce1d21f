"""The files the first-run test serves: every registry file, in its official structure and container.

Each checkpoint is written from its ``standin`` builder (seeded tensors in the official structure) in the
format its file name says (``torch.save``, safetensors, ``.npy``), then put in the container its first
public source serves: as is (hub files, Drive files, GitHub releases, the ``.pth.tar`` of FAN and the
``.tar`` of DECA, which are torch files under those names) or inside a ``.tar`` archive at its member's
nested path (FALCO's and ContraCLIP's Dropbox archives), next to a sibling file as in the real archives.

Sizes: every checkpoint is at its real size (its strict loader accepts nothing else) except SD-Turbo,
whose diffusers folder carries its own configs: it is served as a tiny pipeline of the same classes and
layout (see :func:`sd_turbo_folder`). YuNet and mini-XCEPTION are the real files (their real sha256).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch

from backends.standin import Init, seeded_tensor
from backends.weights import REGISTRY, Checkpoint, Source
from tests.conftest import SHARED_WEIGHTS
from tests.loopback_hosts import HubFile, file_sha256

REPO = Path(__file__).resolve().parents[1]
REAL_FILES = {  # files small and public enough to serve as the real bytes
    "yunet": REPO / "assets" / "weights" / "face_detection_yunet_2026may.onnx",
    "fer_mini_xception": SHARED_WEIGHTS / "fer2013_mini_xception.hdf5",  # ../shared/weights (tests/conftest.py)
}
SD_TURBO_REPO = "stabilityai/sd-turbo"


class ServedFile:
    """One registry file as its first public source serves it, built under ``folder`` on first use.

    Built lazily (the server asks when the app does) and once (a lock: the server answers in threads);
    ``payload_sha256`` is the checkpoint's own digest, what must arrive in the app's cache.
    """

    def __init__(self, entry: Checkpoint, source: Source, folder: Path):
        self.key, self.entry, self.source, self.folder = entry.key, entry, source, folder
        self.payload_bytes = 0
        self.payload_sha256 = ""
        self.seconds = 0.0
        self._path: Path | None = None
        self._hub: dict[str, HubFile] = {}
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._path is not None

    def path(self) -> Path:
        """The served file (the archive, for a source with a member; the folder, for SD-Turbo)."""
        with self._lock:
            if self._path is None:
                started = time.monotonic()
                self._path = self._build()
                self.seconds = time.monotonic() - started
            return self._path

    def hub_files(self) -> dict[str, HubFile]:
        """The files a hub source serves, by path in the repo (SD-Turbo: its whole folder)."""
        self.path()
        return self._hub

    def _build(self) -> Path:
        entry, source = self.entry, self.source
        if entry.key == "sd_turbo":
            out = sd_turbo_folder(self.folder / "repo")
            self._hub = {name: HubFile.of(path) for name, path in folder_files(out)}
            self.payload_bytes = sum(f.size for f in self._hub.values())
            self.payload_sha256 = self._hub[entry.filename].sha256
            return out
        payload = write_payload(entry, self.folder / Path(entry.filename).name)
        self.payload_bytes, self.payload_sha256 = payload.stat().st_size, file_sha256(payload)
        if source.kind == "hub":
            self._hub = {source.hub_path: HubFile.of(payload, self.payload_sha256)}
        if not source.member:
            return payload
        archive = wrap_in_archive(payload, source.member, self.folder / Path(urlsplit(source.url).path).name)
        payload.unlink()
        return archive


def first_public_source(entry: Checkpoint) -> Source | None:
    """The source a first download tries first: hub mirrors, then the authors' links, in registry order."""
    hub = [s for s in entry.sources if s.kind == "hub"]
    other = [s for s in entry.sources if s.kind in {"gdrive", "url"}]
    return (hub + other)[0] if hub + other else None


# --------------------------------------------------------------------------- checkpoints


def write_payload(entry: Checkpoint, out: Path) -> Path:
    """Write ``entry``'s file in its official format at ``out``; its builder's tensors are freed after."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if entry.key in REAL_FILES:
        out.write_bytes(REAL_FILES[entry.key].read_bytes())
        return out
    obj = retinaface_standin() if entry.key == "retinaface_resnet50" else entry.standin_builder()()
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in obj.items()}, str(out))
    elif out.suffix == ".npy":
        np.save(out, obj)
    else:
        torch.save(obj, out)
    return out


def retinaface_standin(base_seed: int = 0) -> dict[str, torch.Tensor]:
    """facexlib's RetinaFace ResNet-50 state dict with seeded weights and heads that always find one face shape.

    The registry keeps no stand-in for the detector (detectors run on real weights), so the test makes
    one: seeded backbone, and heads whose weights are zero and whose biases say "face, here, with eyes,
    nose and mouth where a face has them" at every anchor, so the detector returns well-formed boxes and
    landmarks on any photo.
    """
    from facexlib.detection.retinaface import RetinaFace

    with torch.device("meta"):
        model = RetinaFace(network_name="resnet50", half=False, device="meta")
    # Per anchor: background/face logits; 5 landmarks as offsets from the anchor centre in 0.1 anchor sizes.
    heads = {"ClassHead": [-6.0, 6.0], "BboxHead": [0.0] * 4,
             "LandmarkHead": [-1.8, -1.0, 1.8, -1.0, 0.0, 0.5, -1.5, 2.2, 1.5, 2.2]}
    state = {}
    for name, meta in model.state_dict().items():
        shape = tuple(meta.shape)
        head = name.split(".")[0]
        if head in heads:
            pattern = torch.tensor(heads[head])
            state[name] = pattern.repeat(shape[0] // len(pattern)) if name.endswith("bias") else torch.zeros(shape)
            continue
        state[name] = seeded_tensor(f"retinaface.{name}", shape, _retinaface_init(name, shape), base_seed,
                                    meta.dtype)
    return state


def _retinaface_init(name: str, shape: tuple[int, ...]) -> Init:
    if name.endswith(("running_var", "weight")) and len(shape) == 1:
        return Init("const", shift=1.0)
    if len(shape) <= 1:  # biases, running means, batch counters
        return Init("const", shift=0.0)
    fan_in = int(np.prod(shape[1:]))
    return Init("normal", scale=1.0 / fan_in ** 0.5)


# --------------------------------------------------------------------------- SD-Turbo


def sd_turbo_folder(out: Path) -> Path:
    """A diffusers ``StableDiffusionPipeline`` folder laid out like ``stabilityai/sd-turbo``, but tiny.

    The same classes, file names and folders (model_index.json; text_encoder, tokenizer, unet, vae,
    scheduler; the 12 files the weight manager fetches), the real CLIP BPE vocabulary and SD-Turbo's
    scheduler; the networks are the tiny wiring
    configs (32-wide text encoder, 2-level UNet and VAE), which the folder's own config.json files
    describe: diffusers builds what the folder says, and nothing pins the folder's size or digests.
    """
    from transformers import CLIPTokenizer

    from backends.networks.text_to_image import TINY, pipeline_from_components, standin_components

    vocab = out.parent / "clip-bpe"
    tokenizer = CLIPTokenizer(*clip_bpe_files(vocab), pad_token="!")
    pipe = pipeline_from_components(TINY, standin_components(TINY))
    pipe.tokenizer = tokenizer
    pipe.register_modules(tokenizer=tokenizer)
    pipe.save_pretrained(out, safe_serialization=True)
    sd_turbo_tokenizer_files(out / "tokenizer", vocab)
    return out


def sd_turbo_tokenizer_files(folder: Path, vocab: Path) -> None:
    """The tokenizer files as stabilityai/sd-turbo has them (vocab.json, merges.txt, special_tokens_map.json,
    tokenizer_config.json), not the single tokenizer.json that recent transformers releases save."""
    for name in ("vocab.json", "merges.txt"):
        (folder / name).write_bytes((vocab / name).read_bytes())
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!",
               "unk_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (folder / "tokenizer.json").unlink(missing_ok=True)


def clip_bpe_files(folder: Path) -> tuple[str, str]:
    """``vocab.json`` and ``merges.txt`` of the CLIP BPE, written from open_clip's copy of it."""
    import open_clip.tokenizer as oc

    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(oc.default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(oc.bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return str(vocab_file), str(merges_file)


def folder_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(path in the repo, file) for every file under ``folder``."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path.relative_to(folder).as_posix(), path


# --------------------------------------------------------------------------- containers


def wrap_in_archive(payload: Path, member: str, out: Path) -> Path:
    """A ``.tar`` holding ``payload`` at ``member`` (nested folders) and, beside it, a small sibling file."""
    top = member.split("/")[0]
    with tarfile.open(out, "w") as tf:
        readme = f"{top}: stand-in archive of the first-run test\n".encode()
        info = tarfile.TarInfo(f"{top}/README.txt")
        info.size = len(readme)
        tf.addfile(info, io.BytesIO(readme))
        tf.add(payload, arcname=member)
    return out


def registry_files(folder: Path) -> dict[str, ServedFile]:
    """Every registry file with a public source, to be built under ``folder`` when first asked for."""
    served = {}
    for entry in REGISTRY.values():
        source = first_public_source(entry)
        if source is not None:
            served[entry.key] = ServedFile(entry, source, folder / entry.key)
    return served


def build_ahead(served: dict[str, ServedFile], stop: threading.Event) -> threading.Thread:
    """Build every file in a background thread, in registry order (optional files last), while the app works.

    The server builds a file itself if the app asks for it first (the lock makes each build happen once);
    ``stop`` ends the thread after the file it is building.
    """
    order = sorted(served.values(), key=lambda item: bool(item.entry.optional))

    def build() -> None:
        for item in order:
            if stop.is_set():
                return
            item.path()

    thread = threading.Thread(target=build, name="build-served-files", daemon=True)
    thread.start()
    return thread


def describe(served: dict[str, ServedFile]) -> list[dict[str, Any]]:
    """One row per file (key, kind, member, size, seconds to build), for the test's log."""
    return [{"key": s.key, "kind": s.source.kind, "member": s.source.member or "-",
             "MB": round(s.payload_bytes / 1e6, 1), "built in s": round(s.seconds, 1)} for s in served.values()]
