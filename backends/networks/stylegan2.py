"""StyleGAN2 generator in plain PyTorch that loads the official checkpoints.

One :class:`Generator` serves every StyleGAN2 method of Face Lab:

* rosinality-format ``g_ema`` files (StyleMask FFHQ-1024, HyperReenact
  VoxCeleb-256) load strictly, because parameter and buffer names match that
  layout exactly (``style.N``, ``input.input``, ``conv1``, ``convs.N``,
  ``to_rgb1``, ``to_rgbs.N``, ``noises.noise_N`` and the FIR ``*.kernel``
  buffers);
* genforce ``stylegan2_ffhq1024.pth`` files (FALCO, ContraCLIP) are converted
  by a key map into the same layout, so both share one W+ space and one code
  path (see :func:`load_genforce_checkpoint`).

The CUDA kernels of the original code (``upfirdn2d`` and the fused bias +
leaky-ReLU) are written here with ordinary tensor operations, so the same code
runs on CPU and CUDA.

Speed (see bench/bench_stylegan2.py), for inference: one image runs the
official per-sample weight, built in one pass with styles, demodulation, the
sqrt(2) gain and the channels-last layout of oneDNN folded in (the weight's
sum of squares is cached), so the activations see the conv alone; a batch
runs the shared-weight form (styles scale the input channels, demodulation
scales the output; one ordinary conv for the whole batch). The bias rides in
the conv (or the blur); the noise add is a rank-1 ``addmm_`` on the
[pixels, channels] view (a [1,1,H,W] broadcast over channels-last data is
slow in elementwise kernels), blocked with the in-place leaky-ReLU so each
block is read once; the toRGB 1x1 conv is one matrix product; the FIR blur
and the toRGB 2x upsampling are single depthwise convolutions with cached
kernels. On one thread the widest 3x3 convs (256-512 channels, 32^2-128^2)
run NNPACK's Winograd algorithm instead of oneDNN's direct one (see
:data:`WINOGRAD_MIN_CHANNELS`). The maths is the official one; outputs
differ only by float rounding. Under autograd (FALCO) the official
per-sample weights and operation order are kept, because Adam magnifies
rounding differences (see :meth:`StyledConv.forward_styled`); only the
noise/bias/activation epilogue is one autograd Function there,
bit-identical but with one full-size tensor instead of four.

W+ layout (``n_latent`` rows): ``conv1`` reads row 0 and ``to_rgb1`` row 1;
``convs[2k]`` reads row 2k+1, ``convs[2k+1]`` row 2k+2 and ``to_rgbs[k]`` row
2k+3, so a toRGB shares its row with the next up-sampling conv.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load
from ..errors import CheckpointError
from ..standin import Init, seeded_tensor, standin_state_dict

LEAKY_SLOPE = 0.2
ACT_GAIN = math.sqrt(2.0)  # keeps activations at unit variance after leaky-ReLU
DEMOD_EPS = 1e-8
MAPPING_LR_MUL = 0.01
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)



# --------------------------------------------------------------------------
# Plain-torch replacements for the CUDA ops
# --------------------------------------------------------------------------


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = LEAKY_SLOPE,
                     gain: float = ACT_GAIN) -> torch.Tensor:
    """leaky_relu(x + bias, slope) * gain, with ``bias`` broadcast over dim 1."""
    shape = [1, bias.shape[0]] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope) * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter and downsample, per channel.

    ``pad = (before, after)`` is applied to both spatial axes (negative values
    crop). The filter is a true convolution (the kernel is flipped), as in the
    reference op; StyleGAN2's kernels are symmetric so this only matters for
    custom kernels.
    """
    n, c, h, w = x.shape
    if up > 1:
        # Each pixel becomes the top-left of an up x up block of zeros.
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    before, after = pad
    x = F.pad(x, [max(before, 0), max(after, 0), max(before, 0), max(after, 0)])
    if before < 0 or after < 0:
        hh, ww = x.shape[-2:]
        x = x[..., max(-before, 0): hh - max(-after, 0), max(-before, 0): ww - max(-after, 0)]
    kh, kw = kernel.shape
    # Depthwise (groups=c) conv: one filter per channel; much faster on CPU than
    # folding channels into the batch with a single-channel conv.
    weight = torch.flip(kernel, [0, 1]).to(dtype=x.dtype, device=x.device)
    weight = weight.view(1, 1, kh, kw).expand(c, 1, kh, kw)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[..., ::down, ::down]
    return x


def fir_kernel(taps: Sequence[float] = BLUR_TAPS, gain: float = 1.0) -> torch.Tensor:
    """Separable 2-D FIR kernel outer(taps, taps), normalised to sum ``gain``."""
    k1 = torch.tensor(taps, dtype=torch.float32)
    k2 = torch.outer(k1, k1)
    return k2 / k2.sum() * gain


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    """True when autograd records this step (then no in-place update of its results is allowed)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _FirWeightCache:
    """The depthwise conv weight [c, 1, kh, kw] of a FIR ``kernel`` buffer, built once per (c, dtype, device).

    Rebuilt when the buffer is replaced or changed in place (``.to()``,
    ``load_state_dict``). Built outside inference mode so the cached tensor
    can still be used later by a forward pass that autograd records.
    """

    def __init__(self, flip: bool):
        self.flip = flip  # upfirdn2d's true convolution flips the kernel; conv_transpose2d does not
        self.key: tuple | None = None
        self.weight: torch.Tensor | None = None

    def get(self, kernel: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
        # Inference tensors (a module built under inference mode) keep no version counter.
        version = 0 if kernel.is_inference() else kernel._version
        key = (channels, like.dtype, like.device, kernel.data_ptr(), version)
        if key != self.key:
            with torch.inference_mode(False), torch.no_grad():
                k = torch.flip(kernel, [0, 1]) if self.flip else kernel
                k = k.to(dtype=like.dtype, device=like.device)
                self.weight = k.reshape(1, 1, *k.shape).expand(channels, 1, *k.shape).contiguous()
            self.key = key
        return self.weight


# --------------------------------------------------------------------------
# Layers (attribute names mirror the rosinality checkpoint keys)
# --------------------------------------------------------------------------


class PixelNorm(nn.Module):
    """Normalises each latent vector to unit root-mean-square (``style.0``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with run-time weight scaling (equalized learning rate).

    The stored weight is raw: it is multiplied by ``lr_mul / sqrt(in)`` and the
    bias by ``lr_mul`` at every call, which is why mapping weights in the
    checkpoints are ~100x larger than the values actually used.
    """

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class ConstantInput(nn.Module):
    """The learned 4x4 starting tensor of the synthesis network (``input.input``)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class Blur(nn.Module):
    """FIR low-pass applied after a transposed conv (``*.conv.blur.kernel``)."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(gain=gain))
        self.pad = pad
        self._weight = _FirWeightCache(flip=True)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``upfirdn2d(x, kernel, pad=pad)`` (+ ``bias`` per channel), as one depthwise conv."""
        before, after = self.pad
        if before != after or before < 0:
            out = upfirdn2d(x, self.kernel, pad=self.pad)
            return out if bias is None else out + bias.view(1, -1, 1, 1)
        # Equal padding on every side is the conv's own zero padding: no padded copy of x.
        weight = self._weight.get(self.kernel, x.shape[1], x)
        return F.conv2d(x, weight, bias, padding=before, groups=x.shape[1])


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip image (``to_rgbs.N.upsample.kernel``)."""

    def __init__(self, factor: int = 2):
        super().__init__()
        # Zero insertion leaves 1/factor^2 of the energy, so the kernel sums to factor^2.
        self.register_buffer("kernel", fir_kernel(gain=factor ** 2))
        self.factor = factor
        taps = len(BLUR_TAPS)
        surplus = taps - factor
        self.pad = ((surplus + 1) // 2 + factor - 1, surplus // 2)  # (2, 1) for 4 taps, x2
        self._weight = _FirWeightCache(flip=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zero insertion + pad (b, a) + FIR equals a stride-``factor`` depthwise transposed conv with the
        # unflipped kernel and padding kh-1-b, whenever a == b - factor + 1 (true for (2, 1), x2, 4 taps):
        # no zero-stuffed 4x image is built.
        before, after = self.pad
        crop = self.kernel.shape[0] - 1 - before
        if (crop < 0 or after != before - self.factor + 1 or self.kernel.shape[0] != self.kernel.shape[1]
                or _needs_grad(x)):  # under autograd, the reference (see StyledConv.forward_styled)
            return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)
        weight = self._weight.get(self.kernel, x.shape[1], x)
        return F.conv_transpose2d(x, weight, stride=self.factor, padding=crop, groups=x.shape[1])


class _WeightDerivedCache:
    """``derive(weight)`` for a conv weight [1, out, in, k, k], rebuilt only when the weight changes.

    Every call needs it; the weight changes only when loaded, converted (``.to()``) or edited in
    place. Built outside inference mode so a later autograd pass may read it too.
    """

    def __init__(self, derive: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.derive = derive
        self.key: tuple | None = None
        self.value: torch.Tensor | None = None

    def get(self, weight: torch.Tensor) -> torch.Tensor:
        version = 0 if weight.is_inference() else weight._version
        key = (id(weight), weight.data_ptr(), version, weight.dtype, weight.device, tuple(weight.shape))
        if key != self.key:
            with torch.inference_mode(False), torch.no_grad():
                self.value = self.derive(weight)
            self.key = key
        return self.value


def _sum_of_squares(weight: torch.Tensor) -> torch.Tensor:
    """``sum_k W_oik^2`` [out, in] in float32: the demodulation's per-weight part."""
    return weight[0].float().square().sum([2, 3])


def _contiguous_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``weight[0]`` [out, in, k, k] contiguous: the layout NNPACK reads."""
    return weight[0].contiguous()


def _scaled_weight(weight: torch.Tensor, factors: torch.Tensor, transposed: bool) -> torch.Tensor:
    """``weight[0] * factors[o, i]`` in the channels-last layout the oneDNN convolutions read.

    ``weight`` is [1, out, in, k, k], ``factors`` float32 [out|1, in|1]. Returns [out, in, k, k],
    or for a transposed conv [in, out, k, k], strided so the input (or output) channels are
    innermost: the product is written straight into that layout, which saves the conv a
    reordering copy of the weight per call (5 ms for a 512x512 3x3 weight).
    """
    factors = factors.to(weight.dtype)
    if _needs_grad(weight, factors):  # (out= is not differentiable; autograd gets the plain product)
        product = weight[0] * factors[:, :, None, None]
        return product.transpose(0, 1) if transposed else product
    if transposed:  # [in, k, k, out] in memory, seen as [in, out, k, k]
        src, factors = weight[0].permute(1, 2, 3, 0), factors.t()
    else:  # [out, k, k, in] in memory
        src = weight[0].permute(0, 2, 3, 1)
    # An explicit output: elementwise ops would otherwise lay the product out like ``weight``.
    out = torch.empty(src.shape, dtype=weight.dtype, device=weight.device)
    return torch.mul(src, factors[:, None, None, :], out=out).permute(0, 3, 1, 2)


# oneDNN's float32 stride-2 transposed conv takes a slow path on this project's power-of-two inputs of
# 256x128^2 elements and more: with one zero row appended to a one-image input it runs in 0.64-0.84x
# the time (G-1024's 256x128^2, 128x256^2 and 64x512^2 up-convs; ``bench/bench_stylegan2.py
# --up-convs``). Smaller inputs (G-256's 128x128^2: 1.05x), batches and bfloat16 keep the exact shape.
PAD_ROW_MIN_ELEMENTS = 256 * 128 * 128

_pad_row_allowed = contextvars.ContextVar("stylegan2_pad_row", default=True)


@contextlib.contextmanager
def exact_up_convs() -> Iterator[None]:
    """Within: every up-conv convolves its input as it is (no appended zero row).

    For counting a network's own FLOPs, which the appended row would raise by 1/H.
    """
    token = _pad_row_allowed.set(False)
    try:
        yield
    finally:
        _pad_row_allowed.reset(token)


def _pad_row(x: torch.Tensor) -> bool:
    """Whether :func:`up_conv_blur` appends a zero row to ``x`` (see :data:`PAD_ROW_MIN_ELEMENTS`)."""
    return (_pad_row_allowed.get() and x.shape[0] == 1 and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.numel() >= PAD_ROW_MIN_ELEMENTS and x.is_contiguous(memory_format=torch.channels_last))


def up_conv_blur(x: torch.Tensor, weight: torch.Tensor, blur: Blur, bias: torch.Tensor | None,
                 pad_row: bool | None = None) -> torch.Tensor:
    """``blur(conv_transpose2d(x, weight, stride=2), bias)``: the up-sampling conv, [B, out, 2H, 2W].

    Where :func:`_pad_row` says so (or ``pad_row``, for one image, forces it either way), the input
    gets one zero row at the bottom first. A zero input row only adds output rows 2H+1 and 2H+2, both
    zero (row 2H still holds the last real row's tap 2), so the first 2H+1 rows are the exact
    transposed conv's, which the blur reads as a view.
    """
    if not (_pad_row(x) if pad_row is None else pad_row):
        return blur(F.conv_transpose2d(x, weight, stride=2, padding=0), bias)
    b, c, h, w = x.shape
    padded = torch.empty((b, c, h + 1, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    padded[:, :, :h].copy_(x)
    padded[:, :, h].zero_()
    y = F.conv_transpose2d(padded, weight, stride=2, padding=0)  # [1, out, 2H+3, 2W+1]
    return blur(y[:, :, :2 * h + 1], bias)  # (one image: the view is still one block of memory)


# NNPACK (built into torch's x86 and ARM Linux wheels) runs a stride-1 3x3 conv as Winograd F(6x6, 3x3),
# with about a fifth of the direct conv's multiplications but transforms that cost per channel and per
# pixel: it pays for wide layers only. On one image, float32, one thread, the layout transposes included,
# against oneDNN's direct channels-last conv on this project's CPU (several runs): 512 channels at 32^2
# 0.69-0.90x, at 64^2 0.58x, 256 at 128^2 0.71-0.73x, at 64^2 0.72-0.96x; 256 at 32^2 0.92-1.09x, 512 at
# 16^2 1.2-1.6x, 64 at 512^2 1.3-1.6x; 128 at 128^2-256^2 0.9-1.2x alone but slower inside a render (with
# 128 as the channel minimum a G-1024 render took 0.97x the direct one's time, with 256 0.92x)
# (``bench/bench_stylegan2.py --winograd``). On two threads its own thread pool loses to oneDNN's at every
# G-256 layer (1.2x the synthesis), so it runs on one thread only: the one-thread workers of folder jobs and
# the one-thread benches. Its rounding differs from the direct conv's by about 1e-5 of the output's range
# (G-1024's image: 9e-6 of 3.0).
WINOGRAD_MIN_CHANNELS = 256  # the smaller of the conv's input and output channels
WINOGRAD_MIN_WIDTH = 512 * 32  # input channels x side
WINOGRAD_MAX_SIDE = 128


def _winograd(x: torch.Tensor, channels_out: int) -> bool:
    """Whether a 3x3 conv of ``x`` to ``channels_out`` channels runs through NNPACK (see above).

    Only on one thread: NNPACK makes its own thread pool at its first call, with the thread count
    torch has then, so calling it from one thread only also keeps that pool empty (no worker
    threads to outlive a fork or to compete with torch's).
    """
    _, c, h, w = x.shape
    return (x.shape[0] == 1 and x.dtype == torch.float32 and x.device.type == "cpu" and h == w
            and min(c, channels_out) >= WINOGRAD_MIN_CHANNELS and c * h >= WINOGRAD_MIN_WIDTH
            and h <= WINOGRAD_MAX_SIDE and x.is_contiguous(memory_format=torch.channels_last)
            and torch.get_num_threads() == 1 and _winograd_allowed.get() and _nnpack_ready())


_winograd_allowed = contextvars.ContextVar("stylegan2_winograd", default=True)


@contextlib.contextmanager
def direct_convs() -> Iterator[None]:
    """Within: every 3x3 conv runs oneDNN's direct algorithm (no Winograd through NNPACK)."""
    token = _winograd_allowed.set(False)
    try:
        yield
    finally:
        _winograd_allowed.reset(token)


@functools.cache
def _nnpack_ready() -> bool:
    """NNPACK is in this torch build and initialised (its ops fail until ``_nnpack_available`` ran once)."""
    probe = getattr(torch, "_nnpack_available", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for one channels-last float32 image, through NNPACK.

    NNPACK reads and writes NCHW: the input and the output cross over as 2-D [pixels, channels]
    transposes (torch's blocked transpose copy, several times faster than a 4-D layout change).
    ``weight`` [out, in, 3, 3] must be contiguous. The result is channels-last, like oneDNN's.
    """
    _, c, h, w = x.shape
    planes = x.permute(0, 2, 3, 1).reshape(h * w, c).t().contiguous()
    y = torch._nnpack_spatial_convolution(planes.view(1, c, h, w), weight, bias, [1, 1])
    out = torch.empty((1, weight.shape[0], h, w), dtype=x.dtype, memory_format=torch.channels_last)
    out.permute(0, 2, 3, 1).view(h * w, -1).copy_(y.view(-1, h * w).t())
    return out


def _pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 conv of a channels-last ``x`` as one matrix product on its [pixels, channels] view.

    torch has no fast kernel for a 1x1 conv with 3 outputs (toRGB); the product is memory-bound.
    The result is channels-last [B, out, H, W].
    """
    b, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(b * h * w, c)
    matrix = weight.reshape(weight.shape[0], c).t()
    out = rows @ matrix if bias is None else torch.addmm(bias.to(rows.dtype), rows, matrix)
    return out.view(b, h, w, -1).permute(0, 3, 1, 2)


def _delta_as_5d(delta: torch.Tensor) -> torch.Tensor:
    """A HyperReenact weight offset as [B|1, out, in, k|1, k|1].

    Accepted shapes: [out, in], [B, out, in] (the stored fixture layout),
    [out, in, k, k] or [B, out, in, k, k] (the official repeated tensor).
    """
    if delta.ndim == 2:
        return delta[None, :, :, None, None]
    if delta.ndim == 3:
        return delta[:, :, :, None, None]
    if delta.ndim == 4:
        return delta[None]
    if delta.ndim == 5:
        return delta
    raise ValueError(f"weight delta must have 2 to 5 dims, got shape {tuple(delta.shape)}")


class ModulatedConv2d(nn.Module):
    """Style-modulated conv with optional demodulation and 2x upsampling.

    ``style(w)`` is the affine map from a W row to per-input-channel scales
    (the StyleSpace vector); ``forward_styled`` convolves with given scales, so
    style-space editing can bypass the affine.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size ** 2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            # Transposed conv (stride 2, k=3) grows H to 2H+1; blur with pad (1,1) brings it to 2H.
            factor = 2
            surplus = (len(BLUR_TAPS) - factor) - (kernel_size - 1)
            self.blur = Blur(pad=((surplus + 1) // 2 + factor - 1, surplus // 2 + 1), gain=factor ** 2)
        # Registered after ``blur`` so the state-dict order matches the official files.
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self._sumsq = _WeightDerivedCache(_sum_of_squares)
        self._contiguous = _WeightDerivedCache(_contiguous_kernel)

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """Per-input-channel scales s = affine(w), shape [B, in_ch]."""
        return self.modulation(w)

    def _lay_out_weight(self) -> None:
        """Keep the weight's values in the memory order the per-call scaled copy is written in.

        The scaled weight (:func:`_scaled_weight`) is [out, k, k, in] in memory, or [in, k, k, out]
        for the transposed up-conv. Read from the checkpoint's [out, in, k, k] order, the product
        gathers every element with a stride of k*k: about 2.7 ms per 512x512 3x3 weight on one
        thread, 25 ms of a 1024 render; read in the same order it is one streaming pass (0.4 ms).
        Shape, values and state-dict keys stay as they are (only the strides change), so loading,
        saving and ``.to()`` behave as before. Done once, when an inference pass first needs it:
        a checkpoint assigned from a file arrives in its own layout.
        """
        order, inverse = ((0, 2, 3, 4, 1), (0, 4, 1, 2, 3)) if self.upsample else ((0, 1, 3, 4, 2), (0, 1, 4, 2, 3))
        weight = self.weight
        if self.kernel_size == 1 or weight.permute(order).is_contiguous():
            return
        with torch.inference_mode(False), torch.no_grad():  # usable later under autograd too
            self.weight.data = weight.detach().permute(order).contiguous().permute(inverse)

    def _nchw_weight(self) -> torch.Tensor:
        """The stored weight [out, in, k, k] contiguous (NNPACK's layout), cached while it is unchanged."""
        return self._contiguous.get(self.weight)

    def _weights(self, s: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
        """Per-sample conv weights [B, out, in, k, k] after (1+Δ), modulation and demodulation."""
        b = s.shape[0]
        # In the checkpoint's layout (see _lay_out_weight): the official products and sums, in their order,
        # and the grouped conv and its backward on the layout they were measured with (the channels-innermost
        # one made FALCO's forward+backward 1.34x slower).
        stored = self.weight if self.weight.is_contiguous() else self.weight.contiguous()
        base = stored if delta is None else stored * (1 + _delta_as_5d(delta).to(stored))
        weight = self.scale * base * s.view(b, 1, self.in_ch, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + DEMOD_EPS)
            weight = weight * demod.view(b, self.out_ch, 1, 1, 1)
        return weight

    def forward_styled(self, x: torch.Tensor, s: torch.Tensor,
                       delta: torch.Tensor | None = None) -> torch.Tensor:
        """Convolve ``x`` [B,in,H,W] with weights modulated by the given styles ``s`` [B,in]."""
        return self._conv(x, s, delta)

    def _conv(self, x: torch.Tensor, s: torch.Tensor, delta: torch.Tensor | None = None,
              gain: float = 1.0, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``gain * conv(x) + bias`` (bias [out] per channel, broadcast over the batch).

        The gain scales the small per-sample weight instead of the output, and
        the bias rides in the conv (or, after an up-sampling conv, in the
        blur), so neither costs a pass over the activations.
        """
        b, _, h, w = x.shape
        # Shared-weight form whenever the (offset) weight is one for the whole batch, except one image
        # under autograd (FALCO's step), which keeps the official per-sample weights and their rounding.
        shared = delta is None or _delta_as_5d(delta).shape[0] == 1
        if shared and b == 1 and not _needs_grad(x, s, bias, delta):
            return self._conv_folded(x, s, gain, bias, delta)
        if shared and (b > 1 or not _needs_grad(x, s, bias, delta)):
            return self._conv_shared(x, s, gain, bias, delta)
        weight = self._weights(s, delta)
        if delta is not None and weight.shape[0] != b:
            raise ValueError("weight delta batch must be 1 or match the input batch")
        if gain != 1.0:
            weight = weight * gain
        k = self.kernel_size
        # One grouped conv runs every sample with its own weights: a plain conv when b == 1 (x stays
        # channels-last); per-sample weight deltas (b > 1) make the reshape one contiguous [1, b*in] map.
        x = x.reshape(1, b * self.in_ch, h, w)
        group_bias = None if bias is None else bias.repeat(b)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=b)
            # Blur per channel of the [1, b*out] map: same as blurring [b, out], minus a reshape.
            out = self.blur(out, group_bias)
            # (b == 1: the conv's own tensor, not a view, so the epilogue may update it in place.)
            return out if b == 1 else out.view(b, self.out_ch, out.shape[-2], out.shape[-1])
        weight = weight.reshape(b * self.out_ch, self.in_ch, k, k)
        out = F.conv2d(x, weight, group_bias, padding=k // 2, groups=b)
        return out if b == 1 else out.view(b, self.out_ch, h, w)

    def _demod(self, s: torch.Tensor, base: torch.Tensor | None, gain: float) -> torch.Tensor:
        """``gain / sqrt(sum_ik (scale * s_bi * W_oik)^2 + eps)``, [B, out], in float32.

        ``sum_k W_oik^2`` is cached for the stored weight (``base`` None) and computed for an
        offset one; both in float32, so a bfloat16 copy demodulates with float32 sums.
        """
        if base is None and not _needs_grad(self.weight):
            sumsq = self._sumsq.get(self.weight)
        else:
            base = self.weight if base is None else base
            sumsq = base[0].float().square().sum([2, 3])
        energy = s.float().square() @ sumsq.t()
        return torch.rsqrt(energy * self.scale ** 2 + DEMOD_EPS) * gain

    def _offset_weight(self, delta: torch.Tensor | None) -> torch.Tensor | None:
        """``W * (1 + delta)`` [1, out, in, k, k] for a shared offset, None without one."""
        return None if delta is None else self.weight * (1 + _delta_as_5d(delta).to(self.weight))

    def _conv_folded(self, x: torch.Tensor, s: torch.Tensor, gain: float, bias: torch.Tensor | None,
                     delta: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`_conv` for one image at inference: styles, demodulation and gain in the weight.

        The official per-sample weight scale*W*s_i*d_o (times ``gain``) is built in one pass over
        the weight (d_o as in :meth:`_conv_shared`), so the activations see the conv alone: no
        style-scaled copy of the input and no demodulation or bias pass over the output (the bias
        rides in the conv, or in the blur after an up-sampling conv).

        At low resolution the activations are smaller than the weight (32x32x512 against 512x512x3x3):
        there the scaled copy of the weight would cost more memory traffic than scaling the input and
        the output, and :meth:`_conv_shared` convolves with the stored weight as it is.
        """
        self._lay_out_weight()
        if self.kernel_size > 1:
            h, w = x.shape[-2:]
            out_pixels = 4 * h * w if self.upsample else h * w
            if x.numel() + self.out_ch * out_pixels < self.weight.numel():
                return self._conv_shared(x, s, gain, bias, delta)
        base = self._offset_weight(delta)
        styles = s.float() * self.scale
        if self.demodulate:
            factors = self._demod(s, base, gain).view(self.out_ch, 1) * styles.view(1, self.in_ch)
        else:
            factors = (styles * gain).view(1, self.in_ch)
        if self.kernel_size == 3 and not self.upsample and _winograd(x, self.out_ch):
            source = self._nchw_weight() if base is None else base[0]
            weight = torch.mul(source, factors[:, :, None, None]).contiguous()  # (an offset W keeps W's strides)
            return winograd_conv3x3(x, weight, bias)
        weight = _scaled_weight(self.weight if base is None else base, factors, transposed=self.upsample)
        if self.upsample:
            return up_conv_blur(x, weight, self.blur, bias)
        if self.kernel_size == 1 and x.is_contiguous(memory_format=torch.channels_last):
            return _pointwise_conv(x, weight, bias)
        return F.conv2d(x, weight, bias, padding=self.kernel_size // 2)

    def _conv_shared(self, x: torch.Tensor, s: torch.Tensor, gain: float,
                     bias: torch.Tensor | None, delta: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`_conv` for a batch whose weight offset (if any) is shared, as one ordinary batched conv.

        conv(x, scale*W*s_b) * d_b equals conv(x * s_b, scale*W) * d_b: the
        styles scale the input channels and the demodulation d_b (per sample
        and output channel, from sum_i s_bi^2 * sum_k (scale*W_oik)^2) scales
        the output, so all samples share one weight (after an up-sampling
        conv, d_b and the bias are applied after the blur, which is linear
        per channel). Many video frames then cost one batched conv per layer.
        """
        b = x.shape[0]
        self._lay_out_weight()
        base = self._offset_weight(delta)  # (a zero offset leaves W bit for bit: W * 1.0)
        # The equalized-lr scale (and the gain, without demodulation) rides on the styles, so the conv
        # reads the stored weight itself: [out, in, k, k], or [in, out, k, k] for the transposed conv,
        # in the channels-innermost layout of :meth:`_lay_out_weight`.
        factor = self.scale if self.demodulate else self.scale * gain
        x = x * (s * factor).to(x.dtype).view(b, self.in_ch, 1, 1)
        weight = (self.weight if base is None else base)[0]
        if self.upsample:
            weight = weight.transpose(0, 1)
        demod = self._demod(s, base, gain).to(x.dtype) if self.demodulate else None
        if self.upsample:
            out = up_conv_blur(x, weight, self.blur, None)
        else:
            conv_bias = bias if demod is None else None
            if self.kernel_size == 3 and _winograd(x, self.out_ch):
                out = winograd_conv3x3(x, self._nchw_weight() if base is None else base[0].contiguous(), conv_bias)
            else:
                out = F.conv2d(x, weight, conv_bias, padding=self.kernel_size // 2)
            if demod is None:
                return out
        grad = _needs_grad(out, demod, bias)
        if demod is not None:
            demod = demod.view(b, self.out_ch, 1, 1)
            out = out * demod if grad else out.mul_(demod)
        if bias is not None:
            bias = bias.view(1, -1, 1, 1)
            out = out + bias if grad else out.add_(bias)
        return out

    def forward(self, x: torch.Tensor, w: torch.Tensor, delta: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_styled(x, self.style(w), delta)


class NoiseInjection(nn.Module):
    """Adds strength * noise, one learned strength per layer (``*.noise.weight``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise.to(x.dtype)


class _NoiseBiasActivation(torch.autograd.Function):
    """``leaky_relu(x + strength * noise + bias, 0.2) * gain`` for autograd, with no extra full-size tensor.

    Forward and backward perform the official operations in the official
    order on the same operands, so both are bit-identical to the plain
    autograd graph of :meth:`StyledConv.forward_styled`. But the forward
    writes into the conv's fresh output instead of allocating four tensors,
    and the backward keeps only the output (which the next conv holds
    anyway), not the pre-activation: leaky-ReLU's gradient mask ``pre > 0``
    equals ``out > 0`` because ``gain > 0``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: torch.Tensor, noise: torch.Tensor, bias: torch.Tensor,
                gain: float) -> torch.Tensor:
        scaled_noise = strength * noise
        if x._base is None and x.shape == torch.broadcast_shapes(x.shape, scaled_noise.shape):
            out = x.add_(scaled_noise)  # the conv's fresh output: no new tensor at all
            ctx.mark_dirty(x)
        else:
            out = x + scaled_noise  # (updating a view in place would make autograd copy it back)
        out.add_(bias.view(1, -1, 1, 1))
        F.leaky_relu_(out, LEAKY_SLOPE).mul_(gain)
        ctx.save_for_backward(out, strength, noise)
        ctx.gain = gain
        ctx.shapes = (scaled_noise.shape, bias.shape)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        out, strength, noise = ctx.saved_tensors
        noise_shape, bias_shape = ctx.shapes
        grad_pre = torch.mul(grad, ctx.gain)
        # leaky-ReLU's backward (out > 0 ? g : 0.2 g), written over the scaled gradient: one tensor.
        torch.ops.aten.leaky_relu_backward.grad_input(grad_pre, out, LEAKY_SLOPE, False, grad_input=grad_pre)
        grad_strength = grad_noise = grad_bias = None
        needs = ctx.needs_input_grad
        if needs[1] or needs[2]:
            grad_scaled = grad_pre.sum_to_size(noise_shape)
            if needs[1]:
                grad_strength = (grad_scaled * noise).sum_to_size(strength.shape)
            if needs[2]:
                grad_noise = (grad_scaled * strength).sum_to_size(noise.shape)
        if needs[3]:
            grad_bias = grad_pre.sum_to_size(1, bias_shape[0], 1, 1).view(bias_shape)
        return grad_pre, grad_strength, grad_noise, grad_bias, None


# Elements per block of the inference epilogue: 1 MiB of float32, so the activation re-reads
# what the noise add just wrote from the core's cache instead of from memory.
EPILOGUE_BLOCK = 1 << 18


def _pixel_rows(out: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``out`` [B,C,H,W] as a [B*H*W, C] view and ``noise`` as its [B*H*W, 1] column, or None.

    Only for a channels-last ``out`` (channels innermost) and noise [1|B, 1, H, W].
    """
    b, c, h, w = out.shape
    if (not out.is_contiguous(memory_format=torch.channels_last) or noise.ndim != 4
            or noise.shape[1] != 1 or noise.shape[0] not in (1, b) or tuple(noise.shape[-2:]) != (h, w)):
        return None
    rows = out.permute(0, 2, 3, 1).view(b * h * w, c)
    column = noise.to(out.dtype).expand(b, 1, h, w).reshape(b * h * w, 1)
    return rows, column


def noise_leaky_relu_(out: torch.Tensor, noise: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """``leaky_relu(out + strength * noise, 0.2)`` written into ``out`` (inference only).

    On channels-last activations the noise image [1, 1, H, W] broadcasts over the innermost
    axis, which elementwise kernels handle about three times slower than a plain add. Seen as
    a [pixels, channels] matrix, the noise add is the rank-1 update ``out += noise_col @
    strength_row``: one ``addmm_``, as fast as a plain add. On one thread it and the activation
    run block by block (:data:`EPILOGUE_BLOCK`), so each block is read from memory once; with
    more threads each block would be a parallel region of its own (whose start waits for every
    thread: ten times slower on a loaded machine), so they run as two whole passes.
    """
    views = _pixel_rows(out, noise)
    if views is None:
        return F.leaky_relu_(out.addcmul_(noise.to(out.dtype), strength), LEAKY_SLOPE)
    rows, column = views
    strength_row = strength.to(out.dtype).expand(1, rows.shape[1])
    if torch.get_num_threads() > 1:  # each block would be a parallel region: two whole passes instead
        F.leaky_relu_(rows.addmm_(column, strength_row), LEAKY_SLOPE)
        return out
    step = max(1, EPILOGUE_BLOCK // rows.shape[1])
    for start in range(0, rows.shape[0], step):
        block = rows[start:start + step]
        F.leaky_relu_(block.addmm_(column[start:start + step], strength_row), LEAKY_SLOPE)
    return out


class FusedLeakyReLU(nn.Module):
    """Bias + leaky-ReLU(0.2) * sqrt(2) (``*.activate.bias``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    """Modulated 3x3 conv, then noise, then bias and activation."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, demodulate=True, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward_styled(self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor,
                       delta: torch.Tensor | None = None) -> torch.Tensor:
        """leaky_relu(conv(x) + strength * noise + bias, 0.2) * sqrt(2).

        Computed as leaky_relu(g*conv(x) + g*bias + g*strength*noise, 0.2) with
        g = sqrt(2) (leaky-ReLU commutes with a positive scale): g and the bias
        go into the conv, leaving one add and one activation pass, both in
        place on the fresh conv output unless autograd records the step.
        """
        gain = ACT_GAIN
        if _needs_grad(x, s, delta, self.activate.bias, self.noise.weight):
            # Under autograd (FALCO's optimisation) the official order is kept: conv, + noise, + bias,
            # activation, gain (and the toRGB skip is upsampled by the reference upfirdn2d). Adam divides
            # each gradient element by its own running magnitude, so float32 rounding differences in
            # small gradients grow into visible latent differences within two steps: the folded forms
            # moved FALCO's latents by 1.5e-4 after step 1 (fixture tolerance 1e-4), this order 2.6e-5.
            # (The depthwise-conv blur rounds like upfirdn2d and stays.)
            out = self.conv._conv(x, s, delta)
            return _NoiseBiasActivation.apply(out, self.noise.weight, noise.to(out.dtype), self.activate.bias, gain)
        out = self.conv._conv(x, s, delta, gain=gain, bias=self.activate.bias * gain)
        return noise_leaky_relu_(out, noise, self.noise.weight * gain)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation), plus the upsampled previous RGB skip."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample(2)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)

    def forward_styled(self, x: torch.Tensor, s: torch.Tensor,
                       skip: torch.Tensor | None = None) -> torch.Tensor:
        if _needs_grad(x, s, skip, self.bias):  # the official order under autograd (see StyledConv)
            out = self.conv._conv(x, s) + self.bias
            return out if skip is None else out + self.upsample(skip)
        out = self.conv._conv(x, s, bias=self.bias.view(-1))
        if skip is None:
            return out
        return out.add_(self.upsample(skip))


class NoiseBuffers(nn.Module):
    """Holds the constant per-layer noise images ``noises.noise_i`` [1,1,r,r]."""

    def __init__(self, resolutions: Sequence[int]):
        super().__init__()
        for i, res in enumerate(resolutions):
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        self.count = len(resolutions)

    def as_list(self) -> list[torch.Tensor]:
        return [getattr(self, f"noise_{i}") for i in range(self.count)]


# --------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------


def channel_table(channel_multiplier: int) -> dict[int, int]:
    """Feature channels per resolution of the official config-f family."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm,
            256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


class Generator(nn.Module):
    """StyleGAN2 generator (rosinality ``Generator`` layout, skip architecture).

    ``size`` is the output resolution (a power of two from 8 to 1024),
    ``channel_multiplier`` 2 for FFHQ config-f and 1 for the VoxCeleb model.
    Images are returned raw (no tanh, no clamp), NCHW, roughly in [-1, 1] for
    real weights.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2):
        super().__init__()
        log_size = int(math.log2(size))
        if 2 ** log_size != size or size < 8 or size > 1024:
            raise ValueError(f"size must be a power of two in [8, 1024], got {size}")
        self.size = size
        self.style_dim = style_dim
        self.channel_multiplier = channel_multiplier
        self.n_latent = log_size * 2 - 2
        self.num_conv_layers = (log_size - 2) * 2 + 1
        channels = channel_table(channel_multiplier)

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=MAPPING_LR_MUL, activate=True) for _ in range(n_mlp)],
        )
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], style_dim)
        self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = channels[4]
        for level in range(3, log_size + 1):
            out_ch = channels[2 ** level]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

        # noise_i belongs to the i-th styled conv: 4, 8, 8, 16, 16, ...
        self.noises = NoiseBuffers([2 ** ((i + 5) // 2) for i in range(self.num_conv_layers)])
        # Average w stored in some checkpoints (rosinality ``latent_avg``, genforce
        # ``truncation.w_avg``), [1, style_dim] or None. Not persistent, so the
        # state dict keeps exactly the official keys; it still follows .to(device).
        self.register_buffer("w_avg", None, persistent=False)

    # ----- layer bookkeeping -------------------------------------------------

    def styled_convs(self) -> list[StyledConv]:
        """The styled convs in forward order: conv1, convs[0], convs[1], ..."""
        return [self.conv1, *self.convs]

    def rgb_layers(self) -> list[ToRGB]:
        """The toRGB layers in forward order: to_rgb1, to_rgbs[0], ..."""
        return [self.to_rgb1, *self.to_rgbs]

    @staticmethod
    def conv_row(j: int) -> int:
        """W+ row read by styled conv j (conv1 is j=0): row j."""
        return j

    @staticmethod
    def rgb_row(k: int) -> int:
        """W+ row read by toRGB k (to_rgb1 is k=0): 1, 3, 5, ..."""
        return 2 * k + 1

    @property
    def style_sections(self) -> list[int]:
        """Widths of the conv style vectors (input channels), forward order."""
        return [layer.conv.in_ch for layer in self.styled_convs()]

    @property
    def rgb_style_sections(self) -> list[int]:
        """Widths of the toRGB style vectors, forward order."""
        return [layer.conv.in_ch for layer in self.rgb_layers()]

    def flatten_styles(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate per-layer styles [B, C_l] into one [B, sum C_l] (StyleMask's layout)."""
        return torch.cat(list(styles), dim=1)

    def split_styles(self, flat: torch.Tensor, sections: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Inverse of :meth:`flatten_styles`; conv sections unless ``sections`` is given."""
        sections = list(sections) if sections is not None else self.style_sections
        if flat.shape[1] != sum(sections):
            raise ValueError(f"flat styles have width {flat.shape[1]}, expected {sum(sections)}")
        return list(torch.split(flat, sections, dim=1))

    # ----- latent space -------------------------------------------------------

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, 512] -> w [B, 512] (PixelNorm + 8-layer MLP)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean w of ``n`` z drawn from a generator seeded with ``seed``, shape [1, 512].

        The official methods average fresh random z, which makes their outputs
        drift between runs; seeding makes the truncation centre reproducible.
        """
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=gen)
        device = self.input.input.device
        z = z.to(device=device, dtype=self.input.input.dtype)
        return self.mapping(z).mean(0, keepdim=True)

    def to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """A w [B, 512] repeated into W+ [B, n_latent, 512]; W+ input passes through."""
        if w.ndim == 2:
            return w[:, None, :].expand(-1, self.n_latent, -1)
        if w.ndim == 3 and w.shape[1] == self.n_latent:
            return w
        raise ValueError(f"expected w [B,{self.style_dim}] or W+ [B,{self.n_latent},{self.style_dim}], "
                         f"got {tuple(w.shape)}")

    def truncate(self, wplus: torch.Tensor, psi: float, center: torch.Tensor | None,
                 num_layers: int | None = None) -> torch.Tensor:
        """center + psi * (w - center) on every W+ row (or the first ``num_layers`` rows).

        ``psi >= 1`` returns ``wplus`` unchanged, as the official code skips the
        step then. ``center`` is [1, 512] or [512].
        """
        if psi >= 1:
            return wplus
        if center is None:
            raise ValueError("truncation with psi < 1 needs a center (e.g. G.mean_latent())")
        center = center.reshape(1, 1, -1).to(wplus)
        wplus = self.to_wplus(wplus)
        truncated = center + psi * (wplus - center)
        if num_layers is None or num_layers >= self.n_latent:
            return truncated
        return torch.cat([truncated[:, :num_layers], wplus[:, num_layers:]], dim=1)

    # ----- style space -------------------------------------------------------

    def style_vectors(self, wplus: torch.Tensor) -> list[torch.Tensor]:
        """Modulation outputs of the styled convs (conv1, convs[0..]), each [B, C_in].

        This is StyleMask's style space: conv j reads W+ row j.
        """
        wplus = self.to_wplus(wplus)
        return [layer.conv.style(wplus[:, self.conv_row(j)]) for j, layer in enumerate(self.styled_convs())]

    def rgb_style_vectors(self, wplus: torch.Tensor) -> list[torch.Tensor]:
        """Modulation outputs of the toRGB layers (to_rgb1, to_rgbs[0..]); toRGB k reads row 2k+1."""
        wplus = self.to_wplus(wplus)
        return [layer.conv.style(wplus[:, self.rgb_row(k)]) for k, layer in enumerate(self.rgb_layers())]

    # ----- synthesis ---------------------------------------------------------

    def _noise_list(self, noise: Any, batch: int, generator: torch.Generator | None) -> list[torch.Tensor]:
        """The per-layer noise images for one call.

        ``"const"``: the stored buffers (what every method here uses);
        ``"random"``: fresh N(0,1) per sample drawn from ``generator``;
        a sequence of tensors: used as given.
        """
        buffers = self.noises.as_list()
        if isinstance(noise, str):
            if noise == "const":
                return buffers
            if noise == "random":
                gen_device = generator.device if generator is not None else torch.device("cpu")
                return [torch.randn((batch, 1, *b.shape[-2:]), generator=generator, device=gen_device).to(b)
                        for b in buffers]
            raise ValueError(f"noise must be 'const', 'random' or a list of tensors, got {noise!r}")
        noise = list(noise)
        if len(noise) != len(buffers):
            raise ValueError(f"expected {len(buffers)} noise tensors, got {len(noise)}")
        return noise

    def _check_deltas(self, weight_deltas: Sequence[torch.Tensor | None] | None) -> list[torch.Tensor | None]:
        n = self.num_conv_layers
        if weight_deltas is None:
            return [None] * n
        weight_deltas = list(weight_deltas)
        if len(weight_deltas) != n:
            raise ValueError(f"weight_deltas needs one entry per styled conv ({n}), got {len(weight_deltas)}; "
                             "use hyperstyle_to_conv_deltas() for 3-per-block HyperStyle lists")
        return weight_deltas

    def _check_precision_for(self, *inputs: torch.Tensor | None) -> None:
        """Refuse to differentiate through a bfloat16 generator (the CPU inference copy of the device policy).

        Optimising through it would follow gradients rounded to 8 bits of mantissa (FALCO's Adam steps
        amplify far smaller differences); such code loads a float32 generator instead.
        """
        if self.input.input.dtype == torch.bfloat16 and _needs_grad(*inputs):
            raise RuntimeError("This generator holds bfloat16 weights (the CPU inference copy); gradients "
                               "through it are refused. Load a float32 one (backends.device.pinned_cpu_dtype"
                               "('fp32') around the loader, or FACELAB_CPU_DTYPE=fp32).")

    def _render(self, conv_styles: Sequence[torch.Tensor], rgb_styles: Sequence[torch.Tensor],
                noises: Sequence[torch.Tensor], weight_deltas: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Run the synthesis network from precomputed style vectors."""
        batch = conv_styles[0].shape[0]
        convs = self.styled_convs()
        # Channels-last input: batched convs (mkldnn) keep NHWC, where the depthwise FIR convs run about
        # three times faster; one-image convs at low resolution fall back to NCHW kernels.
        x = self.input(batch).contiguous(memory_format=torch.channels_last)
        x = convs[0].forward_styled(x, conv_styles[0], noises[0], weight_deltas[0])
        skip = self.to_rgb1.forward_styled(x, rgb_styles[0])
        for k, to_rgb in enumerate(self.to_rgbs):
            j = 2 * k + 1  # index of the up-conv of this resolution among the styled convs
            x = convs[j].forward_styled(x, conv_styles[j], noises[j], weight_deltas[j])
            x = convs[j + 1].forward_styled(x, conv_styles[j + 1], noises[j + 1], weight_deltas[j + 1])
            skip = to_rgb.forward_styled(x, rgb_styles[k + 1], skip)
        return skip.contiguous()  # callers get the usual NCHW layout

    def synthesis(self, wplus: torch.Tensor, noise: Any = "const", generator: torch.Generator | None = None,
                  weight_deltas: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """W+ [B, n_latent, 512] (or w [B, 512]) -> raw image [B, 3, size, size].

        ``weight_deltas``: optional HyperReenact offsets, one entry per styled
        conv in forward order (None leaves that layer unchanged); the conv
        weight becomes W * (1 + Δ) before modulation and demodulation. Δ is
        [B|1, out, in] (broadcast over the kernel taps) or [B|1, out, in, k, k].
        """
        wplus = self.to_wplus(wplus)
        self._check_precision_for(wplus, *(weight_deltas or ()))
        noises = self._noise_list(noise, wplus.shape[0], generator)
        return self._render(self.style_vectors(wplus), self.rgb_style_vectors(wplus), noises,
                            self._check_deltas(weight_deltas))

    def synthesis_from_styles(self, conv_styles: Sequence[torch.Tensor], wplus: torch.Tensor,
                              noise: Any = "const", generator: torch.Generator | None = None) -> torch.Tensor:
        """Render from given conv style vectors (StyleMask's decoder).

        The styled convs take ``conv_styles`` as is (no affine); the toRGB
        layers still modulate from the ``wplus`` rows 1, 3, 5, ...
        """
        conv_styles = list(conv_styles)
        if len(conv_styles) != self.num_conv_layers:
            raise ValueError(f"expected {self.num_conv_layers} conv styles, got {len(conv_styles)}")
        wplus = self.to_wplus(wplus)
        self._check_precision_for(wplus, *conv_styles)
        noises = self._noise_list(noise, wplus.shape[0], generator)
        return self._render(conv_styles, self.rgb_style_vectors(wplus), noises, [None] * self.num_conv_layers)

    def forward(self, wplus: torch.Tensor, truncation: float = 1.0, truncation_latent: torch.Tensor | None = None,
                noise: Any = "const", generator: torch.Generator | None = None,
                weight_deltas: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Truncate every W+ row toward ``truncation_latent``, then synthesise."""
        wplus = self.truncate(self.to_wplus(wplus), truncation, truncation_latent)
        return self.synthesis(wplus, noise=noise, generator=generator, weight_deltas=weight_deltas)


def hyperstyle_to_conv_deltas(deltas: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """HyperStyle/HyperReenact offset list (3 entries per block: conv, conv, toRGB) -> per styled conv.

    The official list holds conv1, to_rgb1, then (convs[2k], convs[2k+1],
    to_rgbs[k]) per resolution; indices 1, 4, 7, ... are toRGBs and must be None.
    """
    deltas = list(deltas)
    rgb_idx = set(range(1, len(deltas), 3))
    if any(deltas[i] is not None for i in rgb_idx):
        raise ValueError("HyperStyle offsets for toRGB layers are not supported (they are None officially)")
    return [d for i, d in enumerate(deltas) if i not in rgb_idx]


# --------------------------------------------------------------------------
# Checkpoint loading
# --------------------------------------------------------------------------


def _as_checkpoint(obj_or_path: Any, what: str) -> Mapping[str, Any]:
    obj = safe_load(obj_or_path, what=what) if isinstance(obj_or_path, (str, Path)) else obj_or_path
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"The {what} checkpoint is a {type(obj).__name__}, expected a dict.")
    return obj


def load_rosinality_checkpoint(obj_or_path: Any, size: int = 1024, channel_multiplier: int = 2,
                               device: torch.device | str | None = None) -> Generator:
    """A :class:`Generator` from a rosinality-format file or dict ``{'g_ema': ..., ...}``.

    Only ``g_ema`` is read (strictly: the noise buffers and FIR kernels must be
    there too); ``g``, ``d`` and optimiser state are ignored. A top-level
    ``latent_avg`` ([512]) is kept as ``G.w_avg`` for reference — the official
    methods do not use it.
    """
    what = f"StyleGAN2 {size}"
    ckpt = _as_checkpoint(obj_or_path, what)
    if "g_ema" not in ckpt:
        raise CheckpointError(
            f"The {what} checkpoint has no 'g_ema' entry (top-level keys: {sorted(map(str, ckpt))[:8]}); "
            "expected a rosinality-format file such as stylegan2-ffhq-config-f.pt.")
    G = Generator(size, channel_multiplier=channel_multiplier)
    load_state_dict_strict(G, ckpt["g_ema"], what)
    latent_avg = ckpt.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor) and latent_avg.numel() == G.style_dim:
        G.w_avg = latent_avg.detach().float().reshape(1, -1).clone()
    return G.eval().to(device or "cpu")


# Genforce -> rosinality key map, for the 1024 FFHQ generator (18 W+ rows).
#
# | genforce key (generator_smooth)            | rosinality key (g_ema)              | value transform        |
# |--------------------------------------------|-------------------------------------|------------------------|
# | mapping.dense{i}.weight / .bias (i=0..7)   | style.{i+1}.weight / .bias          | identical              |
# | synthesis.early_layer.const                | input.input                         | identical              |
# | synthesis.layer0.weight                    | conv1.conv.weight                   | unsqueeze(0)           |
# | synthesis.layer{2k+1}.weight (up-convs)    | convs.{2k}.conv.weight              | flip(2,3).unsqueeze(0) |
# | synthesis.layer{2k+2}.weight               | convs.{2k+1}.conv.weight            | unsqueeze(0)           |
# | synthesis.layer{j}.style.weight            | <conv j>.conv.modulation.weight     | identical              |
# | synthesis.layer{j}.style.bias              | <conv j>.conv.modulation.bias       | + 1 (added at run time) |
# | synthesis.layer{j}.bias                    | <conv j>.activate.bias              | identical              |
# | synthesis.layer{j}.noise_strength  []      | <conv j>.noise.weight  [1]          | reshape(1)             |
# | synthesis.layer{j}.noise                   | noises.noise_{j}                    | identical              |
# | synthesis.layer{2k+1}.filter.kernel [1,1,4,4] | convs.{2k}.conv.blur.kernel [4,4] | reshape(4,4)           |
# | synthesis.output{k}.weight [3,C,1,1]       | <rgb k>.conv.weight [1,3,C,1,1]     | unsqueeze(0)           |
# | synthesis.output{k}.bias [3]               | <rgb k>.bias [1,3,1,1]              | reshape(1,3,1,1)       |
# | synthesis.output{k}.style.weight / .bias   | <rgb k>.conv.modulation.weight/.bias| identical / + 1        |
# | synthesis.upsample.kernel [1,1,4,4] (shared)| to_rgbs.{k}.upsample.kernel [4,4] | reshape(4,4), copied to every k |
# | truncation.w_avg [512]                     | (none) -> G.w_avg [1,512]           | reshape(1,512)         |
#
# <conv j> is conv1 for j=0 and convs.{j-1} for j>=1; <rgb k> is to_rgb1 for
# k=0 and to_rgbs.{k-1} for k>=1. W+ rows agree: genforce layer{j} reads row j
# and output{k} row 2k+1, exactly as in rosinality. The up-conv kernels are
# flipped because genforce's transposed conv uses the spatially flipped kernel.

GENFORCE_W_AVG = "truncation.w_avg"
GENFORCE_UPSAMPLE_KERNEL = "synthesis.upsample.kernel"


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _unsqueeze0(t: torch.Tensor) -> torch.Tensor:
    return t.unsqueeze(0)


def _flip_unsqueeze0(t: torch.Tensor) -> torch.Tensor:
    return t.flip(2, 3).unsqueeze(0)


def _plus_one(t: torch.Tensor) -> torch.Tensor:
    return t + 1.0


def _to_len1(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1)


def _to_rgb_bias(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, 3, 1, 1)


def _to_4x4(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(4, 4)


def genforce_key_map(G: Generator) -> list[tuple[str, str, Any]]:
    """(genforce key, rosinality key, transform) for every tensor of ``G`` (see the table above).

    The shared ``synthesis.upsample.kernel`` appears once per toRGB; the
    genforce-only ``truncation.w_avg`` is not listed.
    """
    rows: list[tuple[str, str, Any]] = []
    for i in range(len(G.style) - 1):
        rows.append((f"mapping.dense{i}.weight", f"style.{i + 1}.weight", _identity))
        rows.append((f"mapping.dense{i}.bias", f"style.{i + 1}.bias", _identity))
    rows.append(("synthesis.early_layer.const", "input.input", _identity))
    for j in range(G.num_conv_layers):
        gf, ro = f"synthesis.layer{j}", ("conv1" if j == 0 else f"convs.{j - 1}")
        is_up = j % 2 == 1
        rows.append((f"{gf}.weight", f"{ro}.conv.weight", _flip_unsqueeze0 if is_up else _unsqueeze0))
        rows.append((f"{gf}.bias", f"{ro}.activate.bias", _identity))
        rows.append((f"{gf}.noise_strength", f"{ro}.noise.weight", _to_len1))
        rows.append((f"{gf}.noise", f"noises.noise_{j}", _identity))
        if is_up:
            rows.append((f"{gf}.filter.kernel", f"{ro}.conv.blur.kernel", _to_4x4))
        rows.append((f"{gf}.style.weight", f"{ro}.conv.modulation.weight", _identity))
        rows.append((f"{gf}.style.bias", f"{ro}.conv.modulation.bias", _plus_one))
    for k in range(len(G.rgb_layers())):
        gf, ro = f"synthesis.output{k}", ("to_rgb1" if k == 0 else f"to_rgbs.{k - 1}")
        rows.append((f"{gf}.weight", f"{ro}.conv.weight", _unsqueeze0))
        rows.append((f"{gf}.bias", f"{ro}.bias", _to_rgb_bias))
        rows.append((f"{gf}.style.weight", f"{ro}.conv.modulation.weight", _identity))
        rows.append((f"{gf}.style.bias", f"{ro}.conv.modulation.bias", _plus_one))
        if k > 0:
            rows.append((GENFORCE_UPSAMPLE_KERNEL, f"{ro}.upsample.kernel", _to_4x4))
    return rows


def _genforce_expected_keys(G: Generator) -> list[str]:
    keys = list(dict.fromkeys(gf for gf, _, _ in genforce_key_map(G)))
    return keys + [GENFORCE_W_AVG]


def _short_list(items: Sequence[str], limit: int = 8) -> str:
    head = ", ".join(items[:limit])
    return head + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def genforce_to_rosinality(state: Mapping[str, torch.Tensor], G: Generator) -> dict[str, torch.Tensor]:
    """Convert a genforce generator state dict into ``G``'s rosinality keys (strict on genforce names)."""
    expected = _genforce_expected_keys(G)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in set(expected)]
    if missing or unexpected:
        parts = ["The genforce StyleGAN2 checkpoint does not match the expected layout."]
        if missing:
            parts.append(f"Missing keys ({len(missing)}): {_short_list(missing)}.")
        if unexpected:
            parts.append(f"Unexpected keys ({len(unexpected)}): {_short_list(unexpected)}.")
        raise CheckpointError(" ".join(parts))
    try:
        return {ro: fn(state[gf]) for gf, ro, fn in genforce_key_map(G)}
    except RuntimeError as exc:  # a reshape of a wrongly shaped tensor
        raise CheckpointError(f"The genforce StyleGAN2 checkpoint has a tensor of the wrong shape: {exc}") from exc


def load_genforce_checkpoint(obj_or_path: Any, device: torch.device | str | None = None) -> Generator:
    """A 1024 :class:`Generator` from genforce ``stylegan2_ffhq1024.pth`` (or its dict).

    Reads ``generator_smooth`` when present, else ``generator`` (never the
    discriminator), converts it with :func:`genforce_key_map` and loads it
    strictly. ``truncation.w_avg`` becomes ``G.w_avg`` [1, 512]; use it as the
    truncation centre to reproduce genforce's ``get_w(z, psi)``.
    """
    what = "genforce StyleGAN2 1024"
    ckpt = _as_checkpoint(obj_or_path, what)
    for entry in ("generator_smooth", "generator"):
        if entry in ckpt:
            state = ckpt[entry]
            break
    else:
        raise CheckpointError(
            f"The {what} checkpoint has neither 'generator_smooth' nor 'generator' "
            f"(top-level keys: {sorted(map(str, ckpt))[:8]}).")
    G = Generator(1024, channel_multiplier=2)
    load_state_dict_strict(G, genforce_to_rosinality(state, G), what)
    G.w_avg = state[GENFORCE_W_AVG].detach().float().reshape(1, -1).clone()
    return G.eval().to(device or "cpu")


# --------------------------------------------------------------------------
# Deterministic stand-in checkpoints (same recipe as the parity fixtures)
# --------------------------------------------------------------------------

# Rosinality-layout init rules: chosen so every tensor visibly affects the
# image (see the stylegan2_rosinality fixture README); with base_seed 0 they
# reproduce that fixture's weights exactly.
_ROSINALITY_RULES: list[tuple[str, Init]] = [
    (r"style\.\d+\.weight", Init("normal", 1.0 / MAPPING_LR_MUL)),
    (r"style\.\d+\.bias", Init("normal", 10.0)),
    (r"input\.input", Init("normal", 1.0)),
    (r".*\.conv\.modulation\.weight", Init("normal", 1.0)),
    (r".*\.conv\.modulation\.bias", Init("normal", 0.2, 1.0)),
    (r"to_rgb.*\.conv\.weight", Init("normal", 0.5)),
    (r"to_rgb.*\.bias", Init("normal", 0.1)),
    (r".*\.conv\.weight", Init("normal", 1.0)),
    (r".*\.noise\.weight", Init("uniform", 0.1, 0.05)),
    (r".*\.activate\.bias", Init("normal", 0.1)),
    (r"noises\.noise_\d+", Init("normal", 1.0)),
]

_GENFORCE_RULES: list[tuple[str, Init]] = [
    (r"mapping\.dense\d+\.weight", Init("normal", 1.0 / MAPPING_LR_MUL)),
    (r"mapping\.dense\d+\.bias", Init("normal", 1.0)),
    (r"truncation\.w_avg", Init("normal", 0.5)),
    (r"synthesis\.early_layer\.const", Init("normal", 1.0)),
    (r"synthesis\.(layer|output)\d+\.style\.weight", Init("normal", 1.0)),
    (r"synthesis\.(layer|output)\d+\.style\.bias", Init("normal", 0.1)),
    (r"synthesis\.layer\d+\.weight", Init("normal", 1.0)),
    (r"synthesis\.layer\d+\.bias", Init("normal", 0.1)),
    (r"synthesis\.layer\d+\.noise_strength", Init("uniform", 0.2, 0.05)),
    (r"synthesis\.layer\d+\.noise", Init("normal", 1.0)),
    (r"synthesis\.output\d+\.weight", Init("normal", 0.2)),
    (r"synthesis\.output\d+\.bias", Init("normal", 0.05)),
]


def _rule_for(rules: list[tuple[str, Init]], name: str) -> Init | None:
    """First matching init; None (keep the architecture value) for FIR kernels."""
    if name.endswith(".kernel"):
        return None
    for pattern, init in rules:
        if re.fullmatch(pattern, name):
            return init
    raise KeyError(f"no stand-in init rule for {name}")


def _standin_rosinality(size: int, channel_multiplier: int, base_seed: int) -> dict[str, Any]:
    G = Generator(size, channel_multiplier=channel_multiplier)
    sd = standin_state_dict(G, lambda name, _t: _rule_for(_ROSINALITY_RULES, name), base_seed)
    G.load_state_dict(sd, strict=True)
    with torch.inference_mode():
        latent_avg = G.mean_latent(4096, seed=base_seed).reshape(-1).clone()
    return {"g_ema": sd, "latent_avg": latent_avg}


def standin_checkpoint_ffhq1024(base_seed: int = 0) -> dict[str, Any]:
    """Stand-in ``stylegan2-ffhq-config-f.pt``: ``{'g_ema', 'latent_avg'}`` at real size (1024, cm 2).

    Deterministic; with base_seed 0 the ``g_ema`` values equal the
    stylegan2_rosinality fixture's config A. ``latent_avg`` is the seeded
    ``mean_latent(4096)``.
    """
    return _standin_rosinality(1024, 2, base_seed)


def standin_checkpoint_vox256(base_seed: int = 0) -> dict[str, Any]:
    """Stand-in HyperReenact ``stylegan-voxceleb.pt``: ``{'g_ema', 'latent_avg'}`` (256, cm 1)."""
    return _standin_rosinality(256, 1, base_seed)


def genforce_state_shapes(G: Generator | None = None) -> dict[str, tuple[int, ...]]:
    """Every genforce key of the 1024 generator with its shape, in the official key order."""
    G = G or Generator(1024, channel_multiplier=2)
    ros = G.state_dict()
    shapes: dict[str, tuple[int, ...]] = {}
    inverse_shape = {
        _unsqueeze0: lambda s: s[1:], _flip_unsqueeze0: lambda s: s[1:], _to_len1: lambda s: (),
        _to_rgb_bias: lambda s: (3,), _to_4x4: lambda s: (1, 1, 4, 4),
    }
    for gf, ro, fn in genforce_key_map(G):
        if gf not in shapes:
            shapes[gf] = tuple(inverse_shape.get(fn, lambda s: s)(tuple(ros[ro].shape)))
    shapes[GENFORCE_W_AVG] = (G.style_dim,)
    return _genforce_official_order(shapes, G)


def _genforce_official_order(shapes: dict[str, tuple[int, ...]], G: Generator) -> dict[str, tuple[int, ...]]:
    """Order keys as genforce's module tree lists them (mapping, truncation, per-layer blocks, upsample)."""
    order = [k for k in shapes if k.startswith("mapping.")] + [GENFORCE_W_AVG, "synthesis.early_layer.const"]
    per_layer = ("weight", "bias", "noise_strength", "noise", "filter.kernel", "style.weight", "style.bias")
    per_rgb = ("weight", "bias", "style.weight", "style.bias")
    for j in range(G.num_conv_layers):
        order += [f"synthesis.layer{j}.{p}" for p in per_layer if f"synthesis.layer{j}.{p}" in shapes]
        if j % 2 == 0:  # the toRGB of a resolution follows its second conv
            k = j // 2
            order += [f"synthesis.output{k}.{p}" for p in per_rgb]
    order.append(GENFORCE_UPSAMPLE_KERNEL)
    return {k: shapes[k] for k in order}


def standin_checkpoint_genforce_ffhq1024(base_seed: int = 0) -> dict[str, Any]:
    """Stand-in genforce ``stylegan2_ffhq1024.pth``: ``{'generator_smooth', 'generator'}``.

    Deterministic; with base_seed 0 ``generator_smooth`` equals the
    stylegan2_genforce fixture's weights. ``generator`` shares the same tensors
    (no separate non-EMA weights are needed), and the discriminator is omitted.
    """
    kernel = fir_kernel(gain=4.0).reshape(1, 1, 4, 4)
    sd: dict[str, torch.Tensor] = {}
    for name, shape in genforce_state_shapes().items():
        init = _rule_for(_GENFORCE_RULES, name)
        sd[name] = kernel.clone() if init is None else seeded_tensor(name, shape, init, base_seed)
    return {"generator_smooth": sd, "generator": dict(sd)}
