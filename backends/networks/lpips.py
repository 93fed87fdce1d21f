"""LPIPS (Zhang et al., CVPR 2018), AlexNet variant v0.1: a learned perceptual distance of two images.

Written from the paper's formula, with the official files' key names so their weights load unchanged:

* the backbone is torchvision's AlexNet ``features`` (``alexnet-owt-7be5be79.pth``: keys ``features.N.*``;
  its ``classifier.*`` is not used, but the file holds it and its check asks for it);
* the input, in [-1, 1], is shifted and scaled per channel (:data:`SHIFT`, :data:`SCALE`, the lpips
  "scaling layer"), and the activations after the five ReLUs (conv1..conv5) are read;
* each activation is unit-normalised over channels (``x / (||x||_2 + 1e-10)``), the two images'
  normalised activations are subtracted and squared, weighted per channel by a 1x1 convolution without
  bias (``lin{k}.model.1.weight`` [1, C, 1, 1] in ``weights/v0.1/alex.pth``), averaged over space, and the
  five layers' values are summed.

Identical images give 0; the distance is symmetric in its two arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load, strip_prefix
from ..errors import CheckpointError
from ..standin import Init, seeded_tensor

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
CHANNELS = (64, 192, 384, 256, 256)  # after each of AlexNet's five ReLUs
# torchvision AlexNet: (features index, in, out, kernel, stride, padding) of each convolution
CONVS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
         (10, 256, 256, 3, 1, 1))
CLASSIFIER_SHAPES = {"classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
                     "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
                     "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}
# The slices of ``features`` after which lpips reads an activation (relu1 .. relu5).
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))


def alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet ``features`` (same indices, so ``features.N.weight`` keys load), untrained."""
    layers: list[nn.Module] = []
    for index, cin, cout, kernel, stride, pad in CONVS:
        while len(layers) < index:  # max-pools sit between the groups, at indices 2, 5 (and 12, unused)
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        layers += [nn.Conv2d(cin, cout, kernel, stride, pad), nn.ReLU(inplace=False)]
    return nn.Sequential(*layers)


class Lpips(nn.Module):
    """The LPIPS distance (AlexNet, v0.1 linear layers) of image batches in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU activations of the scaled input."""
        h = (x - self.shift) / self.scale
        out = []
        for start, stop in SLICES:
            for layer in self.features[start:stop]:
                h = layer(h)
            out.append(h)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS [B] of ``a`` and ``b`` ([B, 3, H, W] in [-1, 1])."""
        total = torch.zeros(a.shape[0], device=a.device, dtype=a.dtype)
        for fa, fb, lin in zip(self.activations(a), self.activations(b), self.lins, strict=True):
            diff = (unit_channels(fa) - unit_channels(fb)) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total


def unit_channels(x: torch.Tensor) -> torch.Tensor:
    """Each position's channel vector divided by its L2 norm (+1e-10), as lpips' ``normalize_tensor``."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)


# --------------------------------------------------------------------------- loading


def _state(obj: str | Path | Mapping[str, torch.Tensor], what: str) -> Mapping[str, torch.Tensor]:
    state = safe_load(obj, what=what) if isinstance(obj, (str, Path)) else obj
    if not isinstance(state, Mapping):
        raise CheckpointError(f"The {what} file is not a state dict.")
    return state


def check_alexnet(obj: str | Path | Mapping[str, torch.Tensor], *, classifier: bool = True) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of torchvision's AlexNet checkpoint, checked strictly.

    ``classifier``: the file must also hold torchvision's classifier at its shapes (true of the real file;
    stand-ins carry only the features, which is all LPIPS reads).
    """
    state = _state(obj, "AlexNet")
    other = sorted(k for k in state if not k.startswith("features."))
    expected = CLASSIFIER_SHAPES if classifier else {}
    wrong = [k for k in other if k not in CLASSIFIER_SHAPES or tuple(state[k].shape) != CLASSIFIER_SHAPES[k]]
    absent = [k for k in expected if k not in state]
    if wrong or absent:
        raise CheckpointError(f"The AlexNet checkpoint does not match torchvision's layout (unexpected or "
                              f"wrong-shaped: {wrong[:4]}, missing: {absent[:4]}).")
    features = strip_prefix(state, "features.")
    load_state_dict_strict(alexnet_features(), features, "AlexNet features", assign=False)
    return features


def check_linear_layers(obj: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The five ``lin{k}.model.1.weight`` tensors of lpips' ``weights/v0.1/alex.pth``, checked strictly."""
    state = _state(obj, "LPIPS linear layers")
    want = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(CHANNELS)}
    if set(state) != set(want) or any(tuple(state[k].shape) != s for k, s in want.items()):
        raise CheckpointError("The LPIPS linear-layer file does not match lpips' v0.1 alex.pth layout "
                              f"(keys {sorted(state)[:6]}).")
    return {f"{k}.weight": state[f"lin{k}.model.1.weight"] for k in range(len(CHANNELS))}


def load_lpips(alexnet: str | Path | Mapping[str, torch.Tensor],
               linear: str | Path | Mapping[str, torch.Tensor]) -> Lpips:
    """LPIPS from the AlexNet checkpoint and the v0.1 linear layers (paths or loaded state dicts), eval, CPU."""
    net = Lpips()
    load_state_dict_strict(net.features, check_alexnet(alexnet, classifier=False), "AlexNet features",
                           assign=False)
    load_state_dict_strict(net.lins, check_linear_layers(linear), "LPIPS linear layers", assign=False)
    return net.eval().requires_grad_(False)


# --------------------------------------------------------------------------- stand-in weights


def standin_checkpoint_alexnet(base_seed: int = 0, *, classifier: bool = True) -> dict[str, torch.Tensor]:
    """Deterministic AlexNet in the official file's structure: ``features.*`` (He-normal convolutions, zero
    biases) and, unless ``classifier`` is false, torchvision's classifier at its real shapes (zeros: LPIPS
    never reads it, but the real file holds it and the download check asks for it; 244 MB)."""
    out: dict[str, torch.Tensor] = {}
    for index, cin, cout, kernel, _stride, _pad in CONVS:
        name = f"features.{index}"
        shape = (cout, cin, kernel, kernel)
        out[f"{name}.weight"] = seeded_tensor(f"{name}.weight", shape, Init(scale=(2.0 / (cin * kernel**2)) ** 0.5),
                                              base_seed)
        out[f"{name}.bias"] = seeded_tensor(f"{name}.bias", (shape[0],), Init("const"), base_seed)
    if classifier:
        out.update({key: torch.zeros(shape) for key, shape in CLASSIFIER_SHAPES.items()})
    return out


def standin_checkpoint_linear(base_seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic non-negative 1x1 weights (lpips clamps its learned weights to be non-negative)."""
    return {f"lin{k}.model.1.weight": seeded_tensor(f"lin{k}", (1, c, 1, 1), Init("uniform", 2.0 / c), base_seed)
            for k, c in enumerate(CHANNELS)}
