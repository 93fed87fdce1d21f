"""FALCO's optimisation: the loss (ArcFace margin + FaRL attributes), W+ layers 3-7 free, Adam with the
official schedule, and the official/corrected variants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ..networks import farl as farl_net
from ..networks import irse
from ..networks.stylegan2 import Generator

ProgressFn = Callable[[float, str], None]

LAMBDA_ID = 10.0
LAMBDA_ATTR = 0.1
LEARNING_RATE = 0.01
STEPS = 50
LAYER_START, LAYER_END = 3, 8  # W+ rows 3..7 are optimised
LR_GAMMA = 0.8
LR_MILESTONES = (0.75, 0.9)  # fractions of the steps, as anonymize.py's int(0.75·epochs), int(0.9·epochs)
VARIANTS = ("official", "corrected")


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """Which of the official code's range and precision quirks are kept."""

    name: str
    mixed_ranges: bool  # real image [0,1] vs G output [-1,1], no CLIP mean/std in the loss
    farl_fp16_rounding: bool  # FaRL's matrices rounded to fp16 as in FALCO's CUDA run
    minmax_output: bool  # per-image min-max to uint8 (truncating), as tensor2image(adaptive=True)


OFFICIAL = Variant("official", mixed_ranges=True, farl_fp16_rounding=True, minmax_output=True)
CORRECTED = Variant("corrected", mixed_ranges=False, farl_fp16_rounding=False, minmax_output=False)


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise InputError(f"Unknown FALCO variant {name!r}; choose 'official' or 'corrected'.")
    return OFFICIAL if name == "official" else CORRECTED


# --------------------------------------------------------------------------- the objective


@dataclass(frozen=True)
class Reference:
    """The real image's features, computed once per optimisation (they never change)."""

    identity: torch.Tensor  # [B, 512] unit ArcFace embedding, detached
    tokens: torch.Tensor  # [B, 197, width] FaRL tokens, detached


@dataclass(frozen=True)
class LossTerms:
    """One evaluation of the objective (``total`` keeps its graph)."""

    identity: torch.Tensor  # mean |cos − m|
    attributes: torch.Tensor  # Σ_tokens mean |ΔF|
    total: torch.Tensor
    cosine: torch.Tensor  # [B] identity cosine to the real image

    def as_floats(self) -> dict[str, float]:
        return {"id": float(self.identity.detach()), "attr": float(self.attributes.detach()),
                "total": float(self.total.detach()), "cos": float(self.cosine.mean())}


class FalcoLoss(nn.Module):
    """``λ_id·IDLoss(m)(x_a, x) + λ_attr·AttrLoss(x, x_a)`` as FALCO's anonymize loop computes it.

    ``identity_net`` maps Bx3x112x112 to unit rows (ArcFace IR-SE50; FALCO's
    resize/crop/pool path is applied here); ``farl`` gives the attribute tokens.
    Both are used frozen. ``mixed_ranges`` keeps the official quirk: the real
    image is given in [0, 1] and the generated one in [-1, 1] and neither is
    rescaled; without it, ArcFace sees both in [-1, 1] and FaRL both as
    CLIP-normalised [0, 1]. Callers always pass the real image in [0, 1] and
    the generated one raw.
    """

    def __init__(self, identity_net: nn.Module, farl: farl_net.FarlVisual, margin: float = 0.0,
                 lambda_id: float = LAMBDA_ID, lambda_attr: float = LAMBDA_ATTR, mixed_ranges: bool = True):
        super().__init__()
        self.identity_net = identity_net
        self.farl = farl
        self.margin = float(margin)
        self.lambda_id = float(lambda_id)
        self.lambda_attr = float(lambda_attr)
        self.mixed_ranges = mixed_ranges

    def _identity(self, img: torch.Tensor) -> torch.Tensor:
        return self.identity_net(irse.falco_id_transform(img))

    def _tokens(self, img: torch.Tensor) -> torch.Tensor:
        x = farl_net.attr_transform(img, self.farl.image_size)
        return self.farl.tokens(x if self.mixed_ranges else farl_net.clip_normalize(x)).float()

    def reference(self, real01: torch.Tensor) -> Reference:
        """Features of the real image, given as ``ToTensor`` [0, 1]."""
        with torch.no_grad():
            id_in = real01 if self.mixed_ranges else real01 * 2 - 1
            return Reference(self._identity(id_in).detach(), self._tokens(real01).detach())

    def forward(self, anon: torch.Tensor, ref: Reference) -> LossTerms:
        """The losses of a raw generator image ``anon`` against the real image's ``ref``."""
        cosine = (self._identity(anon) * ref.identity).sum(dim=1)
        id_loss = (cosine - self.margin).abs().mean()
        attr_in = anon if self.mixed_ranges else (anon + 1) / 2
        # nn.L1Loss per token (mean over batch and channels), summed over the tokens.
        attr_loss = (self._tokens(attr_in) - ref.tokens).abs().mean(dim=(0, 2)).sum()
        total = self.lambda_id * id_loss + self.lambda_attr * attr_loss
        return LossTerms(id_loss, attr_loss, total, cosine.detach())


# --------------------------------------------------------------------------- the latent code


class LatentCode(nn.Module):
    """W+ with rows ``start..end-1`` trainable (from the fake neighbour) and the rest the real code, frozen.

    As the official ``LatentCode``: the frozen rows are parameters with
    ``requires_grad=False``, so they stay bit-identical.
    """

    def __init__(self, w_real: torch.Tensor, w_fake: torch.Tensor, start: int = LAYER_START, end: int = LAYER_END):
        super().__init__()
        if w_real.shape != w_fake.shape or w_real.ndim != 3 or not 0 <= start < end <= w_real.shape[1]:
            raise ValueError(f"expected two W+ codes [B, L, 512] with 0 <= {start} < {end} <= L, "
                             f"got {tuple(w_real.shape)} and {tuple(w_fake.shape)}")
        self.start, self.end = start, end
        self.head = nn.Parameter(w_real[:, :start].detach().clone(), requires_grad=False)
        self.trainable = nn.Parameter(w_fake[:, start:end].detach().clone())
        self.tail = nn.Parameter(w_real[:, end:].detach().clone(), requires_grad=False)

    def forward(self) -> torch.Tensor:
        return torch.cat([self.head, self.trainable, self.tail], dim=1)


def lr_milestones(steps: int) -> list[int]:
    """``[int(0.75·steps), int(0.9·steps)]``: [37, 45] for the default 50 steps."""
    return [int(f * steps) for f in LR_MILESTONES]


def make_optimizer(latent: LatentCode, steps: int, lr: float = LEARNING_RATE
                   ) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.MultiStepLR]:
    """Adam (default betas, eps 1e-8, no decay) on the trainable rows, and the official MultiStepLR."""
    optimizer = torch.optim.Adam([latent.trainable], lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(steps), gamma=LR_GAMMA)
    return optimizer, scheduler


@dataclass
class StepRecord:
    """Losses computed before an update, and the learning rate that update used."""

    step: int
    id: float
    attr: float
    total: float
    cos: float
    lr: float


def optimise(generator: Generator, loss: FalcoLoss, ref: Reference, latent: LatentCode, steps: int,
             lr: float = LEARNING_RATE, progress: ProgressFn | None = None,
             on_step: Callable[[int, LatentCode], None] | None = None,
             max_steps: int | None = None,
             on_first_image: Callable[[torch.Tensor], None] | None = None) -> list[StepRecord]:
    """The official loop: zero_grad → G(latent) → losses → backward → Adam step → scheduler step.

    The generator renders with its constant noise and no truncation. Only the
    trainable rows receive gradients (the networks are used frozen). ``max_steps``
    stops early while keeping the schedule of ``steps`` (parity checks, benchmarks).
    ``on_first_image`` receives the (detached) render of the starting latent, which
    step 0 computes anyway.
    """
    optimizer, scheduler = make_optimizer(latent, steps, lr)
    history: list[StepRecord] = []
    for step in range(min(steps, max_steps or steps)):
        optimizer.zero_grad(set_to_none=True)
        image = generator.synthesis(latent())
        if step == 0 and on_first_image is not None:
            on_first_image(image.detach())
        terms = loss(image, ref)
        terms.total.backward(inputs=[latent.trainable])
        used_lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        history.append(StepRecord(step, **terms.as_floats(), lr=used_lr))
        if on_step is not None:
            on_step(step, latent)
        if progress is not None:
            rec = history[-1]
            progress((step + 1) / steps, f"step {step + 1}/{steps}: identity {rec.id:.3f}, attributes {rec.attr:.1f}")
    return history
