"""Folder checkpoints (SD-Turbo's diffusers folder) through the weight manager, on a local fake hub.

The fake stands in for ``hf_hub_download`` (download.py's ``_hub_download`` seam) and the hub-cache lookup:
repos are dicts of files, "downloads" are copies into a fake cache under the test's folder.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from backends.errors import CheckpointError, MissingWeightsError
from backends.weights import REGISTRY, Checkpoint, Source, download, read_lock, report_downloads
from backends.weights.data.pos_subspaces import SD_TURBO_FILES, SD_TURBO_REVISION
from backends.weights.folders import check_folder
from backends.weights.report import preload_lines, verify

OWNER = "owner/weights"
PUBLIC = "public/tiny-turbo"
KEY = "unit_test_folder"


class EntryNotFoundError(Exception):
    """What huggingface_hub raises for a file a repo lacks (download.py maps it by class name)."""


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A tiny diffusers pipeline folder (model_index.json, scheduler, text encoder, UNet, VAE)."""
    from backends.networks.text_to_image import tiny_pipeline

    out = tmp_path_factory.mktemp("tiny") / "pipe"
    tiny_pipeline().save_pretrained(out, safe_serialization=True)
    return out


def folder_names(folder: Path) -> tuple[str, ...]:
    """The folder's files, the index last (the order an entry lists them in)."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return tuple(n for n in names if n != "model_index.json") + ("model_index.json",)


class FakeHub:
    """Repos as {path: file}; downloads copy into ``cache`` and drive the given tqdm class; calls are logged."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.repos: dict[str, dict[str, Path]] = {}
        self.calls: list[tuple[str, str, str]] = []

    def serve(self, repo: str, folder: Path, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
        files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
        self.repos[repo] = {(f"{prefix}/{n}" if prefix else n): p for n, p in files.items() if n not in skip}

    def download(self, repo: str, path: str, revision: str, tqdm_class) -> Path:
        self.calls.append((repo, path, revision))
        if path not in self.repos.get(repo, {}):
            raise EntryNotFoundError(f"404 Client Error. Entry Not Found for url: {repo}/{path}")
        source = self.repos[repo][path]
        out = self.cache / repo / path
        out.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm_class(total=source.stat().st_size)
        shutil.copyfile(source, out)
        bar.update(source.stat().st_size)
        return out

    def cached(self, source: Source) -> Path | None:
        path = self.cache / source.hub_repo / source.hub_path
        return path if path.is_file() else None


@pytest.fixture
def hub(isolated_folder, monkeypatch) -> FakeHub:
    fake = FakeHub(isolated_folder / "fake-cache")
    monkeypatch.setattr(download, "_hub_download", fake.download)
    monkeypatch.setattr(download, "_hub_cached", fake.cached)
    monkeypatch.setattr(download, "_probe", lambda host, port: "")
    download.forget_probes()
    yield fake
    download.forget_probes()


@pytest.fixture
def isolated_folder(monkeypatch, tmp_path) -> Path:
    """No mirror, an empty cache, downloads on, the owner's repo set."""
    monkeypatch.delenv("FACELAB_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("FACELAB_HUB_REPO", OWNER)
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("FACELAB_STAND_IN", "0")
    return tmp_path


@pytest.fixture
def entry(monkeypatch, tiny_folder) -> Checkpoint:
    """A folder entry shaped like sd_turbo's, listing the tiny pipeline's files."""
    made = Checkpoint(key=KEY, filename="model_index.json", title="unit-test pipeline", name="unit-test model",
                      tabs=("pos_subspaces",), licence="MIT",
                      sources=(Source(hub_repo=PUBLIC, hub_path="model_index.json", revision="0" * 40),),
                      folder_files=folder_names(tiny_folder), host_folder="sd-turbo")
    monkeypatch.setitem(REGISTRY, KEY, made)
    return made


# --------------------------------------------------------------------------- the registry entry


def test_sd_turbo_is_a_pinned_folder_of_fp32_files_and_the_owner_layout_is_a_sub_folder(monkeypatch):
    entry = REGISTRY["sd_turbo"]
    assert entry.is_folder and entry.folder_files == SD_TURBO_FILES and SD_TURBO_FILES[-1] == "model_index.json"
    assert not [n for n in SD_TURBO_FILES if "fp16" in n or n.endswith((".bin", ".ckpt")) or "/" not in n
                and n != "model_index.json"]  # one copy of the weights: no fp16 variant, no single-file checkpoint
    assert [s.revision for s in entry.sources] == [SD_TURBO_REVISION]
    monkeypatch.setenv("FACELAB_HUB_REPO", OWNER)
    assert [s.location() for s in download.download_sources(entry)] == [
        f"hf://{OWNER}/sd-turbo/model_index.json@main",
        f"hf://stabilityai/sd-turbo/model_index.json@{SD_TURBO_REVISION}",
    ]
    (line,) = [x for x in preload_lines() if x.startswith("stabilityai/sd-turbo ")]
    assert line.endswith(SD_TURBO_REVISION) and "unet/diffusion_pytorch_model.safetensors" in line


# --------------------------------------------------------------------------- fetching


def test_the_owner_repo_is_asked_first_then_the_public_one(hub, entry, tiny_folder):
    hub.serve(PUBLIC, tiny_folder)
    result = download.fetch(KEY, progress=False)
    assert result.status == "downloaded" and result.source == f"hf://{PUBLIC}/model_index.json@{'0' * 40}"
    assert hub.calls[0] == (OWNER, f"sd-turbo/{entry.folder_files[0]}", "main")
    assert [c[0] for c in hub.calls[1:]] == [PUBLIC] * len(entry.folder_files)
    assert [c[1] for c in hub.calls[1:]] == list(entry.folder_files)  # only the listed files, the index last
    assert "answered no such file (HTTP 404)" in result.attempts[0]
    assert result.size == sum(p.stat().st_size for p in tiny_folder.rglob("*") if p.is_file())
    again = download.fetch(KEY, progress=False)
    assert again.status == "present" and len(hub.calls) == 1 + len(entry.folder_files)


def test_a_lone_cached_index_is_not_the_folder(hub, entry, tiny_folder):
    """An index file alone in the hub cache (a preload of model_index.json only) does not count as present."""
    lone = hub.cache / PUBLIC / "model_index.json"
    lone.parent.mkdir(parents=True)
    shutil.copyfile(tiny_folder / "model_index.json", lone)
    assert download.find_local(KEY) is None
    hub.serve(PUBLIC, tiny_folder)
    assert download.fetch(KEY, progress=False).status == "downloaded"
    assert download.find_local(KEY) == lone


def test_the_owner_repo_serves_the_folder_from_its_sub_folder(hub, entry, tiny_folder):
    hub.serve(OWNER, tiny_folder, prefix="sd-turbo")
    result = download.fetch(KEY, progress=False)
    assert result.status == "downloaded" and result.path.parent.name == "sd-turbo"
    assert {c[0] for c in hub.calls} == {OWNER}
    check_folder(result.path.parent)


def test_progress_of_every_file_reaches_the_reporter(hub, entry, tiny_folder):
    hub.serve(PUBLIC, tiny_folder)
    events = []
    with report_downloads(events.append):
        download.fetch(KEY, progress=False)
    byte_files = {e.filename for e in events if e.stage == "bytes"}
    assert "unet/diffusion_pytorch_model.safetensors" in byte_files and "model_index.json" in byte_files
    assert [e.stage for e in events][-2:] == ["checking", "done"] and events[-1].fraction == 1.0
    assert {e.key for e in events} == {KEY}


def test_offline_is_one_sentence_for_the_visitor_at_once(hub, entry, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(MissingWeightsError) as caught:
        download.weights_path(KEY, progress=False)
    assert time.monotonic() - started < 1.0 and hub.calls == []
    assert "HF_HUB_OFFLINE=1" in str(caught.value) and caught.value.key == KEY
    assert download.visitor_message(download.entry_of_error(key=caught.value.key)) == (
        "This Space is missing the unit-test model; the owner can fetch it with one command."
    )


def test_an_unreachable_hub_is_not_retried_per_file(hub, entry, monkeypatch):
    monkeypatch.setattr(download, "_probe", lambda host, port: f"{host} cannot be found (no network, or no DNS)")
    download.forget_probes()
    result = download.fetch(KEY, progress=False)
    assert result.status == "failed" and hub.calls == []
    assert result.reason == "no source host reachable (offline?)"


def test_a_file_the_public_repo_lacks_is_named(hub, entry, tiny_folder):
    hub.serve(PUBLIC, tiny_folder, skip=("vae/diffusion_pytorch_model.safetensors",))
    result = download.fetch(KEY, progress=False)
    assert result.status == "failed" and result.path is None
    assert "no such file (HTTP 404) for vae/diffusion_pytorch_model.safetensors" in result.message
    assert download.find_local(KEY) is None


def test_a_weight_file_that_does_not_open_is_refused_and_the_folder_is_not_present(hub, entry, tiny_folder,
                                                                                    tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    hub.serve(PUBLIC, broken)
    result = download.fetch(KEY, progress=False)
    assert result.status == "failed"
    assert "unet/diffusion_pytorch_model.safetensors does not open with safetensors" in result.message
    assert download.find_local(KEY) is None and KEY not in read_lock()


def test_a_missing_weight_file_in_the_folder_is_refused_naming_it(tiny_folder, tmp_path):
    folder = tmp_path / "pipe"
    shutil.copytree(tiny_folder, folder)
    (folder / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"text_encoder/model\.safetensors is missing"):
        check_folder(folder)
    shutil.rmtree(folder / "text_encoder")
    with pytest.raises(CheckpointError, match=r"text_encoder/ is missing"):
        check_folder(folder)


def test_the_tab_refuses_a_mirror_folder_without_its_weights(tiny_folder, tmp_path, monkeypatch):
    from backends.pos_subspaces import text_to_image as t2i

    shutil.copytree(tiny_folder, tmp_path / "weights" / "sd_turbo")
    (tmp_path / "weights" / "sd_turbo" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    with pytest.raises(CheckpointError, match=r"unet/diffusion_pytorch_model\.safetensors is missing"):
        t2i._sd_turbo_folder()


# --------------------------------------------------------------------------- the lock file


def test_every_file_is_locked_and_verify_covers_them(hub, entry, tiny_folder):
    from backends.weights.lock import sha256_of

    hub.serve(PUBLIC, tiny_folder)
    result = download.fetch(KEY, progress=False)
    record = read_lock()[KEY]
    assert record["path"] == str(result.path) and record["sha256"] == sha256_of(result.path)
    assert set(record["files"]) == set(entry.folder_files)
    for name, info in record["files"].items():
        assert info == {"sha256": sha256_of(tiny_folder / name), "size": (tiny_folder / name).stat().st_size}
    verdicts = dict(verify())
    assert verdicts[KEY].startswith(f"ok (sha256 of {len(entry.folder_files)} files from the lock file")
    weights = result.path.parent / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    assert dict(verify())[KEY] == "CORRUPT (vae/diffusion_pytorch_model.safetensors differs from the lock " \
                                  "file's sha256)"


def test_the_tab_fetches_sd_turbo_through_the_manager_with_progress(hub, entry, tiny_folder, monkeypatch):
    """The PoS tab's loader asks the weight manager (owner repo first, progress on the request's reporter)."""
    import dataclasses

    from backends.pos_subspaces import text_to_image as t2i

    monkeypatch.setitem(REGISTRY, "sd_turbo", dataclasses.replace(entry, key="sd_turbo"))
    hub.serve(PUBLIC, tiny_folder)
    events = []
    with report_downloads(events.append):
        folder = t2i._sd_turbo_folder()
    assert hub.calls[0][0] == OWNER and folder == hub.cache / PUBLIC
    assert {e.key for e in events} == {"sd_turbo"} and events[-1].stage == "done"
    assert set(read_lock()["sd_turbo"]["files"]) == set(entry.folder_files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the next request finds the folder: nothing is asked again
    assert t2i._sd_turbo_folder() == folder and len(hub.calls) == 1 + len(entry.folder_files)
