"""mini-XCEPTION (Arriaga et al., 2017), the FER2013 expression classifier, in PyTorch.

Input: (N, 1, 64, 64) grayscale faces scaled to [-1, 1]. Output: (N, 7) logits for
angry, disgust, fear, happy, sad, surprise, neutral (the model applies softmax last).

Layout: two plain 3x3 convolutions (8 channels, no padding), then four residual blocks
(16, 32, 64, 128 channels) of two depthwise-separable 3x3 convolutions followed by a
3x3/2 max-pool, with a strided 1x1 convolution as the shortcut; then a 3x3 convolution
to 7 maps and global average pooling. Every convolution but the last is bias-free and
followed by batch norm (Keras epsilon 1e-3).

The weights come from the Keras 2 HDF5 file shipped in the ``fer`` package; it is read
with h5py, no TensorFlow involved. Keras "same" padding pads the bottom/right more than
the top/left when the total is odd; :func:`_pad_same` replicates that.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError

FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
KERAS_BN_EPS = 1e-3


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow 'same' padding: total pad split with the extra pixel at the bottom/right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS)


class SeparableConv(nn.Module):
    """Depthwise 3x3 ('same', stride 1) then pointwise 1x1, both bias-free."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """sep-conv, BN, ReLU, sep-conv, BN, max-pool 3x3/2, plus a strided 1x1 conv + BN shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.sep1, self.bn1 = SeparableConv(cin, cout), _bn(cout)
        self.sep2, self.bn2 = SeparableConv(cout, cout), _bn(cout)
        self.shortcut, self.shortcut_bn = nn.Conv2d(cin, cout, 1, stride=2, bias=False), _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        main = F.max_pool2d(_pad_same(main, 3, 2, value=float("-inf")), 3, stride=2)
        return main + self.shortcut_bn(self.shortcut(_pad_same(x, 1, 2)))


class MiniXception(nn.Module):
    """The FER2013 mini-XCEPTION; ``forward`` returns logits (softmax left to the caller)."""

    def __init__(self, num_classes: int = len(FER2013_CLASSES)):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8)
        self.blocks = nn.ModuleList(ResidualBlock(a, b) for a, b in ((8, 16), (16, 32), (32, 64), (64, 128)))
        self.head = nn.Conv2d(128, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(x).mean(dim=(2, 3))


def keras_layer_map() -> dict[str, str]:
    """Our module path -> Keras layer name in the released HDF5 file.

    Keras numbered layers in creation order: batch norms 3i+3 (shortcut), 3i+4, 3i+5
    and shortcut conv i+3 belong to residual block i.
    """
    mapping = {"conv1": "conv2d_1", "bn1": "batch_normalization_1",
               "conv2": "conv2d_2", "bn2": "batch_normalization_2", "head": "conv2d_7"}
    for i in range(4):
        mapping[f"blocks.{i}.sep1"] = f"separable_conv2d_{2 * i + 1}"
        mapping[f"blocks.{i}.sep2"] = f"separable_conv2d_{2 * i + 2}"
        mapping[f"blocks.{i}.bn1"] = f"batch_normalization_{3 * i + 4}"
        mapping[f"blocks.{i}.bn2"] = f"batch_normalization_{3 * i + 5}"
        mapping[f"blocks.{i}.shortcut"] = f"conv2d_{i + 3}"
        mapping[f"blocks.{i}.shortcut_bn"] = f"batch_normalization_{3 * i + 3}"
    return mapping


def _read_keras_weights(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {weight name: array}} from a Keras 2 HDF5 model file."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            group = fh["model_weights"] if "model_weights" in fh else fh
            layers: dict[str, dict[str, np.ndarray]] = {}
            for layer in group:
                arrays: dict[str, np.ndarray] = {}
                group[layer].visititems(
                    lambda name, obj, out=arrays: out.__setitem__(name.rsplit("/", 1)[-1].split(":")[0], obj[()])
                    if isinstance(obj, h5py.Dataset) else None
                )
                if arrays:
                    layers[layer] = arrays
            config = fh.attrs.get("model_config")
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"{path.name} is not a readable Keras HDF5 model: {exc}") from exc
    if config is not None:
        _check_config(json.loads(config if isinstance(config, str) else config.decode()), path)
    return layers


def _check_config(config: dict, path: Path) -> None:
    """Refuse a Keras model whose input is not the 64x64 grayscale of mini-XCEPTION."""
    layers = config.get("config", {}).get("layers", [])
    shapes = [layer["config"].get("batch_input_shape") for layer in layers if layer.get("class_name") == "InputLayer"]
    if shapes and list(shapes[0][1:]) != [INPUT_SIZE, INPUT_SIZE, 1]:
        raise CheckpointError(f"{path.name} takes input {shapes[0][1:]}, not a 64x64 grayscale face.")


def _conv_weight(kernel: np.ndarray) -> torch.Tensor:
    """Keras HWIO -> torch OIHW."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _depthwise_weight(kernel: np.ndarray) -> torch.Tensor:
    """Keras (H, W, C, multiplier) -> torch (C * multiplier, 1, H, W)."""
    h, w, c, m = kernel.shape
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(c * m, 1, h, w)))


def _torch_tensors(module_path: str, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The state-dict entries of one of our modules from one Keras layer's arrays."""
    if "gamma" in arrays:
        return {
            f"{module_path}.weight": torch.from_numpy(arrays["gamma"]),
            f"{module_path}.bias": torch.from_numpy(arrays["beta"]),
            f"{module_path}.running_mean": torch.from_numpy(arrays["moving_mean"]),
            f"{module_path}.running_var": torch.from_numpy(arrays["moving_variance"]),
        }
    if "depthwise_kernel" in arrays:
        return {
            f"{module_path}.depthwise.weight": _depthwise_weight(arrays["depthwise_kernel"]),
            f"{module_path}.pointwise.weight": _conv_weight(arrays["pointwise_kernel"]),
        }
    out = {f"{module_path}.weight": _conv_weight(arrays["kernel"])}
    if "bias" in arrays:
        out[f"{module_path}.bias"] = torch.from_numpy(arrays["bias"])
    return out


def load_mini_xception_hdf5(path: str | Path) -> MiniXception:
    """The released FER2013 mini-XCEPTION in eval mode; every weight of the file must be used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The mini-XCEPTION file {path} does not exist.")
    layers = _read_keras_weights(path)
    mapping = keras_layer_map()
    unused = sorted(set(layers) - set(mapping.values()))
    missing = sorted(set(mapping.values()) - set(layers))
    if unused or missing:
        raise CheckpointError(
            f"{path.name} does not have the mini-XCEPTION layout (missing {missing}, unexpected {unused})."
        )
    state: dict[str, torch.Tensor] = {}
    for module_path, layer in mapping.items():
        state.update(_torch_tensors(module_path, layers[layer]))
    model = MiniXception()
    expected = model.state_dict()
    state.update({k: v for k, v in expected.items() if k.endswith("num_batches_tracked")})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path.name}: weights do not fit mini-XCEPTION ({exc}).") from exc
    return model.eval()
