"""2DFAN-4: Adrian Bulat's Face Alignment Network with 4 stacked hourglasses (68 2D landmarks).

HyperReenact (StelaBou/HyperReenact@1b66485, ``libs/face_models``) uses it to place the 68 landmarks
its ArcFace and DECA crops are built from; the SFD detector in front of it only supplies a box, which
is an input here.

What the official checkpoint looks like: ``2DFAN4-11f355bf06.pth.tar`` from adrianbulat.com
(``python-fan/``) is a **bare state dict**, an ``OrderedDict`` of tensors with exactly the ``FAN(4)``
module keys, no ``state_dict``/``model`` wrapper and no ``module.`` prefix (the 3D ``depth`` model of
the same code base is the one stored as ``{'state_dict': {'module.*'}}``; the 2D path never reads it).
The file dates from early 2018 and is a legacy (pre-1.6, non-zip) pickle, which
``torch.load(weights_only=True)`` reads. A current PyTorch module has 1129 entries: 378 ``weight``,
199 ``bias`` and 184 BatchNorm ``running_mean``/``running_var``/``num_batches_tracked`` triples;
23,820,176 learnable parameters (95 MB as float32). PyTorch < 0.4.1 wrote no ``num_batches_tracked``,
and whether the released file has them is not known, so :func:`load_fan68_checkpoint` accepts the
file with and without them (945 or 1129 keys) and is strict on every other key and shape.

Layout (module names are the checkpoint's key prefixes):

* stem: ``conv1`` (7×7, stride 2, bias) → ``bn1`` → ReLU → ``conv2`` (ConvBlock 64→128) → 2×2
  average pool → ``conv3`` (128→128) → ``conv4`` (128→256), giving 256×64×64 for a 256 input;
* a :class:`ConvBlock` is pre-activation: three BN → ReLU → 3×3 conv (no bias) steps to out/2, out/4
  and out/4 channels, whose outputs are concatenated (out channels) and added to the input, or to
  ``downsample`` (``0``: BN, ``1``: ReLU, ``2``: 1×1 conv without bias) when the width changes;
* stack i = 0..3: ``m{i}`` an :class:`HourGlass` of depth 4 (``b1_4..b1_1`` upper branches,
  ``b2_4..b2_1`` after a 2×2 average pool, ``b2_plus_1`` at the bottom, ``b3_1..b3_4`` before a
  nearest 2× upsampling, upper + lower summed at each level), ``top_m_{i}`` (ConvBlock),
  ``conv_last{i}`` (1×1, bias) → ``bn_end{i}`` → ReLU, ``l{i}`` (1×1 to 68 heatmaps, bias);
  between stacks the input of the next is ``previous + bl{i}(features) + al{i}(heatmaps)``.

From a box to landmarks (``LandmarksEstimation.get_landmarks``), quirks kept on purpose:

1. centre = ((x1+x2)/2, (y1+y2)/2) as float32, then y −= 0.12·(y2−y1) in float32; scale =
   (x2−x1 + y2−y1) / 195 as a float64 (195 is the SFD detector's ``reference_scale``).
2. ``transform`` builds the float32 3×3 crop matrix (h = 200·scale), inverts it with
   ``torch.linalg.inv`` and **truncates toward zero** (``.int()``), so points left of or above the
   image move less than a pixel toward 0 and the landmarks are integer-valued.
3. The crop window runs from the transformed 1-based corner (1, 1) to (256, 256), **exclusive** of
   the latter: [ul, br), so its two sides can differ by a pixel. Pixels outside the photo are black
   (no edge replication). The float 0..255 window is resized to 256×256 (bilinear,
   ``align_corners=False``), then divided by 255: no mean/std normalisation.
4. Only the last stack's raw heatmaps are decoded (no sigmoid, no flip averaging).
5. Decoding: first index of the row-major argmax (ties go to the upper row, then the left column);
   a peak strictly inside 0 < col, row < 63 (the 63 is hard-coded) moves 0.25 toward its larger
   neighbour on each axis, by the *sign* of the float32 difference (sign(0) = 0: no move); border
   peaks are not refined; then −0.5 on both axes and (2) with res = 64. A flat map gives (0.5, 0.5).
   HyperReenact's ``fan_model/utils.py`` has a second decoder without the row ``floor``; it is not
   the one ``get_landmarks`` uses, and not the one here.

Resize antialiasing: HyperReenact's README pins torchvision 0.8, whose tensor ``Resize`` is a plain
bilinear ``interpolate`` without antialiasing; torchvision ≥ 0.17 antialiases by default. The two
agree exactly whenever the window is at most 256 px (an upsampling) and differ on larger faces (a
290 px window moves landmarks by up to 3 px). We default to ``antialias=False``
(:data:`OFFICIAL_ANTIALIAS`): it is the environment the authors pinned, so it reproduces the
landmarks their published pipeline computed; ``antialias=True`` is available for anyone comparing
with a modern-torchvision run of the official code.

Speed: the network is about 20 GMAC per face. :func:`load_fan68_checkpoint` returns it in eval mode
with channels-last conv weights (about 20 % faster than NCHW under oneDNN, same numbers up to float
rounding), and :func:`get_landmarks` runs under ``torch.inference_mode``; the crop, resize and
decoding cost about 2 ms together. ``bench/bench_fan68.py`` prints the table.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load
from ..errors import CheckpointError, InputError
from ..standin import Init, seeded_tensor

NUM_LANDMARKS = 68
NUM_STACKS = 4
HOURGLASS_DEPTH = 4
FEATURES = 256
INPUT_SIZE = 256  # the crop fed to the network
HEATMAP_SIZE = 64
REFERENCE_SCALE = 195.0  # SFDDetector.reference_scale: box (w + h) / 195 is the crop's scale
CENTER_SHIFT = 0.12  # the crop centre moves up by 0.12 of the box height
SCALE_TO_PIXELS = 200.0  # a scale of 1 is a 200 px window
BORDER_LIMIT = 63  # peaks with a 0-based row or column of 0 or >= 63 are not refined (hard-coded)
OFFICIAL_ANTIALIAS = False  # torchvision 0.8, as HyperReenact's README pins it (see the module docstring)
CHECKPOINT_NAME = "2DFAN4-11f355bf06.pth.tar"
N_KEYS = 1129  # with the 184 num_batches_tracked counters; 945 without
N_PARAMETERS = 23_820_176


# --------------------------------------------------------------------------- network


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation residual block whose three 3×3 convs (out/2, out/4, out/4) are concatenated."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        half, quarter = out_ch // 2, out_ch // 4
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv3x3(in_ch, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = _conv3x3(half, quarter)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = _conv3x3(quarter, quarter)
        # Key names downsample.0 (BN) and downsample.2 (conv): the ReLU sits at index 1.
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True), nn.Conv2d(in_ch, out_ch, 1, bias=False))
            if in_ch != out_ch
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x), inplace=True))
        b = self.conv2(F.relu(self.bn2(a), inplace=True))
        c = self.conv3(F.relu(self.bn3(b), inplace=True))
        out = torch.cat((a, b, c), dim=1)
        shortcut = x if self.downsample is None else self.downsample(x)
        return out.add_(shortcut)


class HourGlass(nn.Module):
    """One hourglass of ``depth`` levels at ``features`` channels.

    Submodules are registered in the official order (``b1_4, b2_4, b1_3, ..., b2_plus_1, b3_1, ...,
    b3_4``), so ``state_dict()`` lists the keys exactly as the checkpoint does.
    """

    def __init__(self, depth: int = HOURGLASS_DEPTH, features: int = FEATURES):
        super().__init__()
        self.depth = depth
        self._register_level(depth, features)

    def _register_level(self, level: int, features: int) -> None:
        self.add_module(f"b1_{level}", ConvBlock(features, features))
        self.add_module(f"b2_{level}", ConvBlock(features, features))
        if level > 1:
            self._register_level(level - 1, features)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(features, features))
        self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        if level > 1:
            lower = self._level(level - 1, lower)
        else:
            lower = self._modules[f"b2_plus_{level}"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper.add_(F.interpolate(lower, scale_factor=2, mode="nearest"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """FAN(num_stacks): a 256² RGB crop in [0, 1] → one 68×64×64 heatmap tensor per stack.

    ``forward`` returns the list of all stacks' outputs (as the official module does); only the last
    is used for landmarks (:meth:`heatmaps`).
    """

    def __init__(self, num_stacks: int = NUM_STACKS):
        super().__init__()
        self.num_stacks = num_stacks
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, FEATURES)
        for i in range(num_stacks):
            self.add_module(f"m{i}", HourGlass(HOURGLASS_DEPTH, FEATURES))
            self.add_module(f"top_m_{i}", ConvBlock(FEATURES, FEATURES))
            self.add_module(f"conv_last{i}", nn.Conv2d(FEATURES, FEATURES, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(FEATURES))
            self.add_module(f"l{i}", nn.Conv2d(FEATURES, NUM_LANDMARKS, kernel_size=1))
            if i < num_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(FEATURES, FEATURES, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(NUM_LANDMARKS, FEATURES, kernel_size=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))
        outputs: list[torch.Tensor] = []
        for i in range(self.num_stacks):
            features = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            features = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](features)), inplace=True)
            heatmaps = self._modules[f"l{i}"](features)
            outputs.append(heatmaps)
            if i < self.num_stacks - 1:
                previous = previous + self._modules[f"bl{i}"](features) + self._modules[f"al{i}"](heatmaps)
        return outputs

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """The last stack's raw heatmaps [B, 68, 64, 64]: the only output the landmarks come from."""
        return self(x)[-1]

    def get_landmarks(self, image: Any, box: Sequence[float], *, antialias: bool = OFFICIAL_ANTIALIAS
                      ) -> FanLandmarks:
        """Shorthand for :func:`get_landmarks` with this network."""
        return get_landmarks(self, image, box, antialias=antialias)


# --------------------------------------------------------------------------- loading


def load_fan68_checkpoint(obj_or_path: str | Path | Mapping[str, Any], *, channels_last: bool = True) -> FAN:
    """``FAN(4)`` from ``2DFAN4-11f355bf06.pth.tar`` (a path or the loaded state dict): strict, eval, CPU.

    The file is read with ``weights_only=True`` (zip or legacy pickle). ``num_batches_tracked``
    counters may be absent; any other missing or unexpected key, or a wrong shape, raises
    :class:`CheckpointError` naming them.

    ``channels_last`` stores the conv weights NHWC, which oneDNN runs about 20 % faster on CPU
    (bench/bench_fan68.py); the heatmaps differ from the NCHW run by float rounding only (~1e-5).
    """
    obj = safe_load(obj_or_path, what="2DFAN-4") if isinstance(obj_or_path, (str, Path)) else obj_or_path
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"The 2DFAN-4 checkpoint is a {type(obj).__name__}, not a state dict; expected {CHECKPOINT_NAME}.")
    if "state_dict" in obj and not torch.is_tensor(obj["state_dict"]):
        raise CheckpointError(
            "The 2DFAN-4 checkpoint is wrapped in {'state_dict': ...} (the layout of FAN's 3D depth model); "
            f"{CHECKPOINT_NAME} is a bare FAN(4) state dict.")
    not_tensors = [str(k) for k, v in obj.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise CheckpointError(
            f"The 2DFAN-4 checkpoint holds non-tensor entries ({', '.join(not_tensors[:8])}); "
            f"expected the bare FAN(4) state dict of {CHECKPOINT_NAME}.")
    with torch.device("meta"):
        net = FAN(NUM_STACKS)
    net = net.to_empty(device="cpu")  # every value is overwritten by the strict load below
    load_state_dict_strict(net, obj, "2DFAN-4 (FAN(4))")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net.eval()


# --------------------------------------------------------------------------- stand-in weights


def _four_digits(x: float) -> float:
    """``x`` rounded to 4 significant digits (the parity fixture's recipe stores its scales this way)."""
    return float(f"{x:.4g}")


# The module path of every BatchNorm: bn1..bn3 inside blocks and the stem, bn_end{i}, downsample.0.
_BN_PATH = re.compile(r"(?:^|\.)(?:bn\d|bn_end\d+|downsample\.0)$")


def _fan_init(name: str, current: torch.Tensor) -> Init | None:
    """The parity fixture's init for every tensor except the BN running statistics (calibrated later).

    Convs He N(0, 2/fan_in) with the std rounded to 4 significant digits, conv biases N(0, 0.01²),
    BN γ U[0.8, 1.2) and β N(0, 0.05²).
    """
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("num_batches_tracked", "running_mean", "running_var"):
        return None
    if current.ndim == 4:
        return Init("normal", _four_digits(math.sqrt(2.0 / current[0].numel())))
    is_bn = bool(_BN_PATH.search(name.rsplit(".", 1)[0]))
    if leaf == "weight":
        return Init("uniform", 0.4, 0.8)
    if leaf == "bias":
        return Init("normal", 0.05) if is_bn else Init("normal", 0.01)
    raise KeyError(f"no stand-in init rule for {name}")


def _calibration_image(base_seed: int) -> torch.Tensor:
    """A deterministic smooth 256² RGB image in [0, 1]: seeded 8×8 noise upsampled, plus a ramp."""
    coarse = seeded_tensor("fan68.calibration", (1, 3, 8, 8), Init("uniform", 1.0, 0.0), base_seed)
    image = F.interpolate(coarse, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", align_corners=False)
    ramp = torch.linspace(-0.15, 0.15, INPUT_SIZE).view(1, 1, 1, INPUT_SIZE)
    return (image + ramp).clamp_(0.0, 1.0)


def standin_checkpoint_fan68(base_seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A real-size stand-in ``2DFAN4-11f355bf06.pth.tar``: the bare FAN(4) state dict (1129 keys).

    Weights and biases follow the parity fixture's recipe, so for the same ``base_seed`` they equal
    the fixture's tensors exactly. The BN running statistics are calibrated the way the fixture's
    were (in forward order, each BN's mean ~ N(μ, (0.2σ)²) and var ~ U[0.75v, 1.25v), μ and v the
    mean and channel-averaged variance of what it receives, both rounded to 4 digits), but on a
    synthetic image instead of the fixture's photo, so they are not the fixture's values. Without
    calibration the residual stream grows to ~1e9 and the heatmaps are meaningless even as noise.
    """
    with torch.device("meta"):
        net = FAN(NUM_STACKS)  # shapes only: every tensor is assigned below
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, current in net.state_dict().items():
        init = _fan_init(name, current)
        if init is not None:
            state[name] = seeded_tensor(name, tuple(current.shape), init, base_seed)
        elif name.endswith("num_batches_tracked"):
            state[name] = torch.zeros((), dtype=torch.int64)
        else:
            state[name] = torch.zeros(current.shape) if name.endswith("mean") else torch.ones(current.shape)
    net.load_state_dict(state, strict=True, assign=True)
    net.eval()

    def calibrate(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].double()
        mu = float(x.mean())
        v = float(x.var(dim=(0, 2, 3), unbiased=False).mean())
        name = names[module]
        mean = seeded_tensor(f"{name}.running_mean", tuple(module.running_mean.shape),
                             Init("normal", _four_digits(0.2 * math.sqrt(v)), _four_digits(mu)), base_seed)
        var = seeded_tensor(f"{name}.running_var", tuple(module.running_var.shape),
                            Init("uniform", _four_digits(0.5 * v), _four_digits(0.75 * v)), base_seed)
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)

    names = {m: n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}
    hooks = [m.register_forward_pre_hook(calibrate) for m in names]
    try:
        with torch.inference_mode(False), torch.no_grad():
            net(_calibration_image(base_seed))
    finally:
        for hook in hooks:
            hook.remove()
    return OrderedDict((k, v.detach()) for k, v in net.state_dict().items())  # the net is dropped: no copy


def build_standin_fan68(base_seed: int = 0, *, channels_last: bool = True) -> FAN:
    """The stand-in checkpoint (:func:`standin_checkpoint_fan68`) loaded through the strict loader."""
    return load_fan68_checkpoint(standin_checkpoint_fan68(base_seed), channels_last=channels_last)


# --------------------------------------------------------------------------- box → crop


def box_center_scale(box: Sequence[float]) -> tuple[torch.Tensor, float]:
    """The official crop centre (float32 [2]) and scale (float64) of a detector box (x1, y1, x2, y2[, score]).

    The box values are taken as Python (float64) numbers: with the numpy 1.23 of the official
    environment the SFD's float32 box promoted to float64 in these expressions (numpy 2 would keep
    float32). The y shift is subtracted in float32, after the centre was rounded to float32.
    """
    x1, y1, x2, y2 = (float(v) for v in list(box)[:4])
    center = torch.tensor([(x2 + x1) / 2.0, (y2 + y1) / 2.0], dtype=torch.float32)
    center[1] = center[1] - (y2 - y1) * CENTER_SHIFT
    scale = (x2 - x1 + y2 - y1) / REFERENCE_SCALE
    return center, scale


def _crop_to_image_matrix(center: torch.Tensor, scale: float, resolution: float) -> torch.Tensor:
    """The official float32 3×3 matrix taking crop coordinates (1-based grid of ``resolution``) to the image.

    Built image → crop (``resolution / h`` and the centring translation), then inverted, all in float32
    with the same scalar operations as the official ``transform`` (same rounding).
    """
    h = SCALE_TO_PIXELS * scale
    m = torch.eye(3)
    m[0, 0] = resolution / h
    m[1, 1] = resolution / h
    m[0, 2] = resolution * (-center[0] / h + 0.5)
    m[1, 2] = resolution * (-center[1] / h + 0.5)
    return torch.linalg.inv(m)


def transform_points(points: torch.Tensor | Sequence[Sequence[float]], center: torch.Tensor | Sequence[float],
                     scale: float, resolution: float) -> torch.Tensor:
    """Crop-grid points [N, 2] → image pixels [N, 2] int32, **truncated toward zero** (``.int()``).

    One 3-vector product per point, as the official ``transform(..., invert=True)`` does it.
    """
    center = torch.as_tensor(center, dtype=torch.float32)
    matrix = _crop_to_image_matrix(center, float(scale), resolution)
    pts = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)
    out = torch.empty(pts.shape, dtype=torch.int32)
    homogeneous = torch.ones(3)
    for i in range(pts.shape[0]):
        homogeneous[:2] = pts[i]
        out[i] = torch.matmul(matrix, homogeneous)[:2].int()
    return out


def crop_window(center: torch.Tensor | Sequence[float], scale: float, resolution: int = INPUT_SIZE
                ) -> tuple[int, int, int, int]:
    """The crop window (ul_x, ul_y, br_x, br_y) in image pixels; [ul, br), br exclusive.

    ul is the image position of the crop's 1-based corner (1, 1), br that of (res, res).
    """
    corners = transform_points([[1.0, 1.0], [float(resolution), float(resolution)]], center, scale, float(resolution))
    (ul_x, ul_y), (br_x, br_y) = corners.tolist()
    return ul_x, ul_y, br_x, br_y


def image_to_tensor(image: Any) -> torch.Tensor:
    """An RGB photo as the official float input [1, 3, H, W] with values 0..255.

    Accepts an H×W×3 uint8 (or float 0..255) array / PIL image, or a tensor [3, H, W] or [1, 3, H, W]
    already in 0..255.
    """
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float32)
        if t.ndim == 3:
            t = t.unsqueeze(0)
    else:
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise InputError(f"Expected an RGB image of shape H×W×3, got {arr.shape}.")
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None].float()
    if t.ndim != 4 or t.shape[:2] != (1, 3):
        raise InputError(f"Expected one RGB image tensor [1, 3, H, W], got {tuple(t.shape)}.")
    return t


def crop_face(image: torch.Tensor, center: torch.Tensor | Sequence[float], scale: float, *,
              antialias: bool = OFFICIAL_ANTIALIAS, resolution: int = INPUT_SIZE) -> torch.Tensor:
    """The official network input: window [ul, br) of ``image`` [B, 3, H, W] (0..255), black outside,
    resized to ``resolution``² (bilinear, ``align_corners=False``, ``antialias`` as asked), then /255.
    """
    ul_x, ul_y, br_x, br_y = crop_window(center, scale, resolution)
    batch, channels, height, width = image.shape
    window = torch.zeros((batch, channels, max(br_y - ul_y, 0), max(br_x - ul_x, 0)), dtype=torch.float32)
    # window[i] = image[ul + i] wherever that lies inside the photo; the rest stays 0.
    x0, x1 = max(ul_x, 0), min(br_x, width)
    y0, y1 = max(ul_y, 0), min(br_y, height)
    if x1 > x0 and y1 > y0:
        window[:, :, y0 - ul_y:y1 - ul_y, x0 - ul_x:x1 - ul_x] = image[:, :, y0:y1, x0:x1]
    if window.shape[2] == 0 or window.shape[3] == 0:
        raise InputError("The face box is too small to crop.")
    resized = F.interpolate(window, size=(resolution, resolution), mode="bilinear", align_corners=False,
                            antialias=antialias)
    return resized.div(255.0)


# --------------------------------------------------------------------------- heatmaps → points


def decode_heatmaps(heatmaps: torch.Tensor, center: torch.Tensor | Sequence[float] | None = None,
                    scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """HyperReenact's ``get_preds_fromhm``: heatmaps [B, N, H, W] → (preds, preds_orig), both float32 [B, N, 2].

    ``preds`` are on the heatmap grid (0-based cell + 0.5 ± 0.25); ``preds_orig`` the image pixels
    (truncated toward zero), all zeros when ``center`` or ``scale`` is None. Every item of the batch
    uses the one centre and scale.
    """
    batch, n, height, width = heatmaps.shape
    flat = heatmaps.reshape(batch, n, height * width)
    index = flat.argmax(dim=2)  # documented: the first maximal index wins ties
    col, row = index % width, index // width
    preds = torch.stack((col, row), dim=2).to(torch.float32).add_(1.0)  # 1-based, as officially

    # Quarter-pixel refinement, only strictly inside the hard-coded [1, 62] range.
    inside = (col > 0) & (col < BORDER_LIMIT) & (row > 0) & (row < BORDER_LIMIT)
    c_lo, c_hi = (col - 1).clamp(0, width - 1), (col + 1).clamp(0, width - 1)
    r_lo, r_hi = (row - 1).clamp(0, height - 1), (row + 1).clamp(0, height - 1)
    at = lambda r, c: flat.gather(2, (r * width + c).unsqueeze(2)).squeeze(2)  # noqa: E731
    dx = (at(row, c_hi) - at(row, c_lo)).to(torch.float32)  # difference in the map's dtype, kept as float32
    dy = (at(r_hi, col) - at(r_lo, col)).to(torch.float32)
    shift = torch.stack((dx, dy), dim=2).sign_().mul_(0.25)  # sign(0) = 0: no shift
    preds = torch.where(inside.unsqueeze(2), preds + shift, preds)
    preds.add_(-0.5)

    preds_orig = torch.zeros(preds.shape)
    if center is not None and scale is not None:
        pixels = transform_points(preds.reshape(-1, 2), center, float(scale), float(height))
        preds_orig = pixels.to(torch.float32).reshape(preds.shape)
    return preds, preds_orig


# --------------------------------------------------------------------------- box → landmarks


@dataclass(frozen=True)
class FanLandmarks:
    """68 landmarks of one face and what they came from (all on CPU)."""

    landmarks: np.ndarray  # [68, 2] float32 image pixels (x, y), integer-valued (truncated toward zero)
    heatmaps: np.ndarray  # [68, 64, 64] float32: the last stack's raw output
    preds: np.ndarray  # [68, 2] float32 on the 64 heatmap grid (0-based cell + 0.5 ± 0.25)
    crop: np.ndarray  # [3, 256, 256] float32 in [0, 1]: the network input
    center: np.ndarray  # [2] float32
    scale: float
    crop_window: tuple[int, int, int, int]  # (ul_x, ul_y, br_x, br_y), br exclusive
    antialias: bool


def get_landmarks(net: FAN, image: Any, box: Sequence[float], *, antialias: bool = OFFICIAL_ANTIALIAS
                  ) -> FanLandmarks:
    """The official ``LandmarksEstimation.get_landmarks`` for one detector box (x1, y1, x2, y2[, score]).

    ``image`` is the RGB photo: an H×W×3 uint8 array (or PIL image) or a float tensor [1, 3, H, W] in
    0..255. ``antialias`` selects the resize behaviour (default: torchvision 0.8's, without).
    """
    center, scale = box_center_scale(box)
    if not scale > 0:
        raise InputError(f"The face box {tuple(float(v) for v in list(box)[:4])} is empty.")
    photo = image_to_tensor(image)
    weight = net.conv1.weight
    nhwc = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    with torch.inference_mode():
        crop = crop_face(photo, center, scale, antialias=antialias)
        x = crop.to(weight.device, weight.dtype)
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        heatmaps = net.heatmaps(x).float().cpu().contiguous()
        preds, pts = decode_heatmaps(heatmaps, center, scale)
    return FanLandmarks(
        landmarks=pts[0].numpy(),
        heatmaps=heatmaps[0].numpy(),
        preds=preds[0].numpy(),
        crop=crop[0].numpy(),
        center=center.numpy(),
        scale=scale,
        crop_window=crop_window(center, scale),
        antialias=antialias,
    )
