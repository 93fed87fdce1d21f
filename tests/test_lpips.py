"""LPIPS (backends/networks/lpips.py) against a hand-written reference of the official formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backends import metrics
from backends.errors import CheckpointError
from backends.networks import lpips as lp
from backends.weights import REGISTRY, load_checkpoint


@pytest.fixture(scope="module")
def weights() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Seeded AlexNet features and linear layers, with random (not constant) biases and weights."""
    alex = lp.standin_checkpoint_alexnet(classifier=False)
    gen = torch.Generator().manual_seed(3)
    alex = {k: (v + 0.01 * torch.randn(v.shape, generator=gen)) if k.endswith("bias") else v
            for k, v in alex.items()}
    lin = {k: torch.rand(v.shape, generator=gen) for k, v in lp.standin_checkpoint_linear().items()}
    return alex, lin


@pytest.fixture(scope="module")
def net(weights) -> lp.Lpips:
    return lp.load_lpips(*weights)


def reference_lpips(a: np.ndarray, b: np.ndarray, alex: dict, lin: dict) -> float:
    """The formula in numpy from raw tensors: functional AlexNet, then the distance written out by hand."""

    def feats(x: np.ndarray) -> list[np.ndarray]:
        h = torch.from_numpy(x).double()
        h = (h - torch.tensor([-0.030, -0.088, -0.188]).double().view(1, 3, 1, 1)) / torch.tensor(
            [0.458, 0.448, 0.450]).double().view(1, 3, 1, 1)
        out = []
        for i, (idx, stride, pad) in enumerate(((0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1))):
            if i in (1, 2):
                h = F.max_pool2d(h, 3, 2)
            h = F.relu(F.conv2d(h, alex[f"features.{idx}.weight"].double(), alex[f"features.{idx}.bias"].double(),
                                stride, pad))
            out.append(h.numpy()[0])  # [C, H, W]
        return out

    total = 0.0
    for k, (fa, fb) in enumerate(zip(feats(a), feats(b), strict=True)):
        na = fa / (np.sqrt((fa**2).sum(axis=0, keepdims=True)) + 1e-10)
        nb = fb / (np.sqrt((fb**2).sum(axis=0, keepdims=True)) + 1e-10)
        w = lin[f"lin{k}.model.1.weight"].double().numpy().reshape(-1, 1, 1)
        total += float((w * (na - nb) ** 2).sum(axis=0).mean())
    return total


def _image(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)


def test_matches_the_hand_written_formula(net, weights):
    a, b = _image(0), _image(1)
    got = float(net(torch.from_numpy(a), torch.from_numpy(b))[0])
    assert got == pytest.approx(reference_lpips(a, b, *weights), rel=1e-4)
    assert got > 0


def test_identical_images_are_zero_and_the_distance_is_symmetric(net):
    a, b = torch.from_numpy(_image(2)), torch.from_numpy(_image(3))
    assert float(net(a, a)[0]) == 0.0
    assert float(net(a, b)[0]) == pytest.approx(float(net(b, a)[0]), rel=1e-6)


def test_batches_give_one_value_per_pair(net):
    a, b = torch.from_numpy(_image(4)), torch.from_numpy(_image(5))
    both = net(torch.cat([a, b]), torch.cat([b, b]))
    assert both.shape == (2,) and float(both[1]) == 0.0
    assert float(both[0]) == pytest.approx(float(net(a, b)[0]), rel=1e-5)


def test_loaders_are_strict(weights):
    alex, lin = weights
    with pytest.raises(CheckpointError):
        lp.check_linear_layers({**lin, "lin0.model.1.weight": torch.zeros(1, 65, 1, 1)})
    with pytest.raises(CheckpointError):
        lp.check_linear_layers({k: v for k, v in lin.items() if not k.startswith("lin4")})
    with pytest.raises(CheckpointError, match="torchvision"):
        lp.check_alexnet(alex, classifier=True)  # the real file has the classifier too
    with pytest.raises(CheckpointError):
        lp.check_alexnet({k: v for k, v in alex.items() if "10" not in k}, classifier=False)
    classifier = {k: torch.zeros(s) for k, s in lp.CLASSIFIER_SHAPES.items()}
    assert set(lp.check_alexnet({**alex, **classifier})) == {k[len("features."):] for k in alex}
    # The registry's stand-in is the real file's structure: the download check (classifier included) takes it.
    assert set(lp.check_alexnet(lp.standin_checkpoint_alexnet(), classifier=True)) == {
        k[len("features."):] for k in alex}


def test_registry_entries_have_sources_licences_stand_ins_and_checks():
    alex, lin = REGISTRY["alexnet_torchvision"], REGISTRY["lpips_alex_v01"]
    assert alex.filename == "alexnet-owt-7be5be79.pth" and alex.licence.startswith("BSD-3-Clause")
    assert lin.licence.startswith("BSD-2-Clause")
    assert alex.sources[0].url == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    assert lin.sources[0].url.endswith("lpips/weights/v0.1/alex.pth")
    for entry in (alex, lin):
        assert entry.checker() is not None and entry.standin_builder() is not None


def test_metric_uses_the_weight_manager_and_flags_stand_ins(monkeypatch):
    monkeypatch.setenv("FACELAB_STAND_IN", "1")
    metrics.clear_caches()
    try:
        net, standin = metrics.lpips_net()
        assert standin
        expected = lp.load_lpips(load_checkpoint("alexnet_torchvision").obj, load_checkpoint("lpips_alex_v01").obj)
        rng = np.random.default_rng(7)
        a = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        b = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1
        y = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 127.5 - 1
        assert metrics.lpips(a, b, net=net) == pytest.approx(float(expected(x, y)[0]), rel=1e-5)
        assert metrics.lpips(a, a, net=net) == 0.0
        shown = metrics.present({"lpips": 0.5}, standin=True)["lpips"]
        assert shown["meaningful"] is False and shown["better"] == "lower is better"
    finally:
        metrics.clear_caches()
