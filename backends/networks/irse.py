"""IR-SE building blocks and the ArcFace IR-SE50 identity network.

The same residual units serve two networks:

* the ArcFace ``Backbone`` (TreB1eN / pSp / e4e / FALCO ``model_ir_se50.pth``),
  which maps an aligned 112x112 face in [-1, 1] to a unit 512-d identity
  embedding, and
* the body of the e4e encoder (:mod:`backends.networks.e4e`).

Module and attribute names mirror the official checkpoints so their state
dicts load strictly without any key renaming.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load
from ..errors import CheckpointError, InputError
from ..standin import Init, standin_state_dict
from .transforms import center_crop as _center_crop
from .transforms import resize_shorter_side as _resize_shorter_side

EMBEDDING_DIM = 512


class UnitSpec(NamedTuple):
    """One IR-SE residual unit: input channels, output channels and stride."""

    in_channel: int
    depth: int
    stride: int


def _stage(in_channel: int, depth: int, num_units: int, stride: int = 2) -> list[UnitSpec]:
    """A stage of units; only its first unit downsamples (and may change the width)."""
    return [UnitSpec(in_channel, depth, stride)] + [UnitSpec(depth, depth, 1) for _ in range(num_units - 1)]


def unit_specs(num_layers: int = 50) -> list[UnitSpec]:
    """The flat list of body units of an IR(-SE) network of 50, 100 or 152 layers.

    Every stage, the first one included, starts with a stride-2 unit, so the
    body downsamples its input 16x.
    """
    units_per_stage = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
    if num_layers not in units_per_stage:
        raise ValueError(f"IR-SE supports 50, 100 or 152 layers, not {num_layers}")
    widths = (64, 64, 128, 256, 512)
    specs: list[UnitSpec] = []
    for i, count in enumerate(units_per_stage[num_layers]):
        specs += _stage(widths[i], widths[i + 1], count)
    return specs


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: global average -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.adaptive_avg_pool2d(x, 1)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(gate))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """The ``bottleneck_IR_SE`` unit: residual branch BN-conv-PReLU-conv(stride)-BN-SE plus a shortcut.

    The shortcut is a 1x1 conv + BN where the width changes; otherwise it is
    ``MaxPool2d(1, stride)``, i.e. plain subsampling, which has no parameters.
    """

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def make_input_layer() -> nn.Sequential:
    """The stem shared by ArcFace and e4e: conv3x3 3->64 (no bias), BN, PReLU."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.PReLU(64),
    )


def make_body(num_layers: int = 50) -> nn.Sequential:
    """The 24 (for 50 layers) IR-SE units as one flat ``Sequential`` (keys ``body.{i}.*``)."""
    return nn.Sequential(*(BottleneckIRSE(*spec) for spec in unit_specs(num_layers)))


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """``x / ||x||`` along dim 1 with no epsilon, exactly as the official ``l2_norm``."""
    return x / torch.norm(x, 2, 1, True)


class Backbone(nn.Module):
    """ArcFace IR-SE50: an aligned 112x112 face in [-1, 1] -> unit 512-d embedding.

    There is no input normalisation inside: callers pass [-1, 1] tensors
    (FALCO passes whatever range it has, see :func:`falco_identity_embedding`).
    """

    def __init__(self, num_layers: int = 50, drop_ratio: float = 0.6, affine: bool = True):
        super().__init__()
        self.input_layer = make_input_layer()
        # Indices 1 (Dropout) and 2 (Flatten) hold no parameters; they keep the
        # official numbering output_layer.{0,3,4} of the checkpoint keys.
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, EMBEDDING_DIM),
            nn.BatchNorm1d(EMBEDDING_DIM, affine=affine),
        )
        self.body = make_body(num_layers)

    def embed_prenorm(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d output of ``output_layer`` before the final L2 normalisation."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 112, 112):
            raise InputError(f"ArcFace expects a Bx3x112x112 tensor, got {tuple(x.shape)}.")
        return self.output_layer(self.body(self.input_layer(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalise(self.embed_prenorm(x))


# --------------------------------------------------------------------------- loading


def _unwrap_arcface(obj: object) -> Mapping[str, torch.Tensor]:
    """The plain state dict of a ``model_ir_se50.pth`` (tolerating a ``module.`` DataParallel prefix)."""
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError("The ArcFace IR-SE50 checkpoint is not a state dict of tensors.")
    if all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            "The ArcFace IR-SE50 checkpoint must be a plain state dict (model_ir_se50.pth), "
            "not a wrapper holding other objects."
        )
    return obj


def load_arcface_checkpoint(obj_or_path: str | Path | Mapping[str, torch.Tensor]) -> Backbone:
    """Build the IR-SE50 ``Backbone`` from ``model_ir_se50.pth`` (a path or the loaded state dict).

    Loads strictly; ``num_batches_tracked`` entries may be absent. Returns the
    network in eval mode on CPU.
    """
    obj = safe_load(obj_or_path, what="ArcFace IR-SE50") if isinstance(obj_or_path, (str, Path)) else obj_or_path
    state_dict = _unwrap_arcface(obj)
    with torch.device("meta"):
        net = Backbone()
    # Allocate without running the random init: every value is overwritten below.
    net = net.to_empty(device="cpu")
    load_state_dict_strict(net, state_dict, "ArcFace IR-SE50")
    return net.eval()


# --------------------------------------------------------------------------- stand-in weights


def _arcface_init(name: str, current: torch.Tensor) -> Init | None:
    """The parity fixture's init for each ArcFace tensor (so stand-ins equal the fixture weights).

    Convs He-normal, the 25088->512 Linear N(0, 1/fan_in), BN gamma U[0.8,1.2)
    except the residual branch's last BN U[0.2,0.4) (keeps 24 uncalibrated
    units from blowing up), PReLU U[0.1,0.4), running_var U[0.5,1.5) > 0.
    """
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return None
    if current.ndim == 4:  # conv kernels (body, shortcut, SE)
        fan_in = current[0].numel()
        return Init("normal", (2.0 / fan_in) ** 0.5)
    if current.ndim == 2:  # output Linear
        return Init("normal", (1.0 / current.shape[1]) ** 0.5)
    if name == "output_layer.3.bias":
        return Init("normal", 0.01)
    if _is_prelu(name):
        return Init("uniform", 0.3, 0.1)
    if leaf == "weight":
        return Init("uniform", 0.2, 0.2) if name.endswith("res_layer.4.weight") else Init("uniform", 0.4, 0.8)
    if leaf == "bias":
        return Init("normal", 0.05)
    if leaf == "running_mean":
        return Init("normal", 0.1)
    if leaf == "running_var":
        return Init("uniform", 1.0, 0.5)
    raise KeyError(f"no stand-in init rule for {name}")


def _is_prelu(name: str) -> bool:
    """PReLU slopes sit at ``input_layer.2`` and ``res_layer.2`` in both IR-SE networks."""
    return name.endswith(("input_layer.2.weight", "res_layer.2.weight"))


def standin_checkpoint_ir_se50(base_seed: int = 0) -> dict[str, torch.Tensor]:
    """A deterministic, real-size ``model_ir_se50.pth`` stand-in: a plain state dict of 397 tensors.

    The values follow the arcface_irse50 parity fixture's recipe, so with
    ``base_seed=0`` they equal that fixture's weights.
    """
    # Built on CPU (43.8 M values, well under a second) so integer counters come out as real zeros.
    return standin_state_dict(Backbone(), _arcface_init, base_seed)


# --------------------------------------------------------------------------- FALCO identity path

FALCO_RESIZE = 256
FALCO_CROP = (slice(35, 223), slice(32, 220))  # 188x188 face region of a 256 FFHQ-aligned image


def falco_resize_crop_256(img: torch.Tensor) -> torch.Tensor:
    """FALCO's ``Resize(256, antialias=True)`` + ``CenterCrop(256)`` (identity on a 256x256 input)."""
    if img.ndim != 4 or img.shape[1] != 3:
        raise InputError(f"Expected a Bx3xHxW image tensor, got {tuple(img.shape)}.")
    return _center_crop(_resize_shorter_side(img, FALCO_RESIZE), FALCO_RESIZE)


def falco_id_transform(img: torch.Tensor) -> torch.Tensor:
    """FALCO's ``IDLoss`` input path: resize/center-crop to 256, crop the face, adaptive-pool to 112.

    ``img`` is Bx3xHxW in whatever range the caller has (FALCO feeds [0, 1]
    real photos and [-1, 1] generator outputs as they are). 188 -> 112 is not
    an integer ratio, so the pooling uses variable windows (adaptive average).
    """
    x = falco_resize_crop_256(img)[:, :, FALCO_CROP[0], FALCO_CROP[1]]
    return F.adaptive_avg_pool2d(x, (112, 112))


def falco_identity_embedding(img: torch.Tensor, backbone: Backbone) -> torch.Tensor:
    """FALCO's identity feature: ``backbone(falco_id_transform(img))``, unit 512-d rows."""
    return backbone(falco_id_transform(img))
