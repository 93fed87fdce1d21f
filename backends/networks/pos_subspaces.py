"""Part-of-speech subspaces of CLIP space (Oldfield et al., NeurIPS 2023), in closed form.

The method has no weights: it is a component analysis of word embeddings grouped by
category (nouns ``N``, adjectives ``A``, verbs ``V``, adverbs ``AV``, and optionally a
visual theme such as an artist's style). For category ``i`` it finds the orthonormal
``W`` maximising::

    tr(Wᵀ [(1 − λ) C_i − λ Σ_{j≠i} C_j] W),   WᵀW = I,

whose solution is the eigenvectors of the bracketed matrix, by decreasing eigenvalue.
``λ`` trades variance of the category against variance of the others; ``λ = 0`` is the
PCA of the category. The top ``k`` columns give the projector ``P = W_k W_kᵀ``.

Two geometries, both as the official ``model.py``/``sphere.py`` compute them:

* **Euclidean**: the embeddings are L2-normalised, ``m`` is the mean of *all* of them
  pooled (a big category weighs more), ``C_c = (X_c − m)ᵀ(X_c − m) / n_c`` (divided by
  ``n``). A query ``z`` (normalised) is projected as ``P (z − m) + m``.
* **Geometry-aware** (tangent): the unit vectors are mapped by the sphere's logarithmic
  map to the tangent space at an intrinsic mean ``μ``, and the Euclidean model runs on the
  tangent vectors (no renormalisation, their own mean ``m_t``). A query is projected as
  ``exp_μ(P_t (log_μ z − m_t) + m_t)``, which is a unit vector again.

Quirks kept on purpose (the parity fixture checks them):

* ``μ`` is **one** Riemannian gradient step (learning rate 1) from the **first noun**,
  so it depends on the vocabulary order: the product sorts its vocabulary.
* The log map adds float32 ``eps`` to the norm in its denominator.
* The eigen-decomposition is numpy's ``eigh`` on the float32 matrix, sorted descending.
* Removal (not in the public official code) uses ``I − P`` in the same formulas.

Our one deviation: ``exp_μ(0)`` returns ``μ`` where the official code divides 0 by 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
OFFICIAL_CATEGORIES: tuple[str, ...] = ("N", "A", "V", "AV")
CATEGORY_NAMES: dict[str, str] = {"N": "nouns", "A": "adjectives", "V": "verbs", "AV": "adverbs"}
GEOMETRIES = ("euclidean", "tangent")


# --------------------------------------------------------------------------- sphere

def normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` scaled to unit L2 norm."""
    return x / torch.norm(x, p=2, dim=-1, keepdim=True)


def tangent_component(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Rows of ``w`` orthogonally projected onto the tangent space of the sphere at unit ``s``."""
    dim = s.shape[0]
    projector = torch.eye(dim, dtype=s.dtype, device=s.device) - s[:, None] @ s[None, :]
    return w.reshape(-1, dim) @ projector.T


def log_map(s: torch.Tensor, q: torch.Tensor, eps: float = FLOAT32_EPS) -> torch.Tensor:
    """Logarithmic map at unit ``s`` of the points ``q`` (renormalised first): (N, d) tangent vectors.

    ``arccos(<q, s>) · Π_s(q − s) / (‖Π_s(q − s)‖ + eps)``, with the float32 eps of the official code.
    """
    dim = s.shape[0]
    q = normalise(q.reshape(-1, dim))
    direction = tangent_component(s, q - s)
    angle = torch.arccos(torch.clip((q * s).sum(dim=-1), -1.0, 1.0))[:, None]
    return angle * direction / (torch.norm(direction, p=2, dim=1, keepdim=True) + eps)


def exp_map(s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Exponential map at unit ``s`` of the tangent vectors ``v``: (N, d) unit vectors.

    ``cos(‖v‖) s + sin(‖v‖) v / ‖v‖``, renormalised; a zero vector maps to ``s``.
    """
    dim = s.shape[0]
    v = v.reshape(-1, dim)
    length = torch.norm(v, p=2, dim=1, keepdim=True)
    safe = torch.where(length > 0, length, torch.ones_like(length))
    out = torch.cos(length) * s + torch.sin(length) * v / safe
    return normalise(out)


def intrinsic_mean(data: torch.Tensor, init: torch.Tensor, steps: int = 1, lr: float = 1.0) -> torch.Tensor:
    """Riemannian gradient steps towards the Fréchet mean of unit rows ``data``, from ``init``."""
    mean = init
    for _ in range(steps):
        grad = log_map(mean, data).mean(dim=0)
        mean = exp_map(mean, lr * grad).squeeze(0)
    return mean / torch.norm(mean, p=2)


# --------------------------------------------------------------------------- decomposition

@dataclass
class Subspaces:
    """The learned bases of every category, in one geometry.

    ``bases[c]`` holds all eigenvectors as columns, by decreasing eigenvalue; ``mean`` is
    ``m`` (Euclidean) or ``m_t`` (tangent); ``mu`` is the intrinsic mean (tangent only).
    """

    geometry: str
    categories: tuple[str, ...]
    lam: float
    bases: dict[str, torch.Tensor]
    eigenvalues: dict[str, torch.Tensor]
    mean: torch.Tensor
    mu: torch.Tensor | None = None
    matrices: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def basis(self, category: str, k: int) -> torch.Tensor:
        """The top-``k`` orthonormal columns of ``category``: (d, k)."""
        if category not in self.bases:
            raise KeyError(f"unknown category {category!r}; learned: {', '.join(self.categories)}")
        if not 1 <= k <= self.dim:
            raise ValueError(f"k must be between 1 and {self.dim}, got {k}")
        return self.bases[category][:, :k]

    def projector(self, category: str, k: int) -> torch.Tensor:
        """``P = W_k W_kᵀ`` of ``category``: (d, d)."""
        w = self.basis(category, k)
        return w @ w.T

    def to_tangent(self, z: torch.Tensor) -> torch.Tensor:
        """Queries (normalised here) in the coordinates the projector acts on, centred: (N, d)."""
        z = normalise(z.reshape(-1, self.dim).to(self.mean))
        if self.geometry == "tangent":
            assert self.mu is not None
            z = log_map(self.mu, z)
        return z - self.mean

    def _apply(self, z: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
        centred = self.to_tangent(z)
        moved = centred @ operator.T + self.mean
        if self.geometry == "tangent":
            assert self.mu is not None
            return exp_map(self.mu, moved)
        return moved

    def project(self, z: torch.Tensor, category: str, k: int) -> torch.Tensor:
        """The queries projected onto the subspace of ``category`` (not renormalised in Euclidean)."""
        return self._apply(z, self.projector(category, k))

    def remove(self, z: torch.Tensor, category: str, k: int) -> torch.Tensor:
        """The queries with the subspace of ``category`` removed: ``I − P`` in place of ``P``."""
        p = self.projector(category, k)
        return self._apply(z, torch.eye(self.dim, dtype=p.dtype, device=p.device) - p)

    def energy(self, z: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """Share of each query's centred energy inside each category's top-``k`` subspace: {c: (N,)}.

        ``‖P_c (z − m)‖² / ‖z − m‖²``; the subspaces are not orthogonal, so shares need not sum to 1.
        """
        centred = self.to_tangent(z)
        total = (centred ** 2).sum(dim=-1).clamp_min(torch.finfo(centred.dtype).tiny)
        return {c: ((centred @ self.basis(c, k)) ** 2).sum(dim=-1) / total for c in self.categories}

    def state(self) -> dict[str, torch.Tensor]:
        """Flat tensors for a safetensors file (see :meth:`from_state`)."""
        out = {"mean": self.mean.contiguous()}
        if self.mu is not None:
            out["mu"] = self.mu.contiguous()
        for c in self.categories:
            out[f"basis.{c}"] = self.bases[c].contiguous()
            out[f"eigenvalues.{c}"] = self.eigenvalues[c].contiguous()
        return out

    def metadata(self) -> dict[str, str]:
        return {"geometry": self.geometry, "categories": ",".join(self.categories), "lam": repr(self.lam)}

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu() for k, v in self.state().items()}, str(path), metadata=self.metadata())
        return path

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Subspaces:
        categories = tuple(metadata["categories"].split(","))
        return cls(
            geometry=metadata["geometry"],
            categories=categories,
            lam=float(metadata["lam"]),
            bases={c: state[f"basis.{c}"] for c in categories},
            eigenvalues={c: state[f"eigenvalues.{c}"] for c in categories},
            mean=state["mean"],
            mu=state.get("mu"),
        )

    @classmethod
    def load(cls, path: str | Path) -> Subspaces:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata()
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not a dict
        return cls.from_state(state, metadata)


def _check(encodings: Mapping[str, torch.Tensor], categories: Sequence[str]) -> None:
    if len(categories) < 2:
        raise ValueError("the decomposition needs at least two categories")
    missing = [c for c in categories if c not in encodings]
    if missing:
        raise KeyError(f"no encodings for categories {missing}")
    dims = {int(encodings[c].shape[-1]) for c in categories}
    if len(dims) != 1:
        raise ValueError(f"categories have different dimensions: {sorted(dims)}")
    empty = [c for c in categories if encodings[c].shape[0] == 0]
    if empty:
        raise ValueError(f"categories without any vector: {empty}")


def covariances(x: Mapping[str, torch.Tensor], categories: Sequence[str],
                mean: torch.Tensor) -> dict[str, torch.Tensor]:
    """``C_c = (X_c − m)ᵀ(X_c − m) / n_c`` for every category (divided by n, centred on the pooled mean)."""
    out = {}
    for c in categories:
        centred = x[c] - mean
        out[c] = (1.0 / centred.shape[0]) * centred.T @ centred
    return out


def combine(covs: Mapping[str, torch.Tensor], categories: Sequence[str], lam: float) -> dict[str, torch.Tensor]:
    """``(1 − λ) C_i − λ Σ_{j≠i} C_j`` for every category."""
    out = {}
    for c in categories:
        others = sum(covs[j] for j in categories if j != c)
        out[c] = (1.0 - lam) * covs[c] - lam * others
    return out


def objective_matrices(x: Mapping[str, torch.Tensor], categories: Sequence[str], lam: float,
                       mean: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(1 − λ) C_i − λ Σ_{j≠i} C_j`` for every category, ``C_c`` centred on the pooled ``mean``."""
    return combine(covariances(x, categories, mean), categories, lam)


def _eigh_descending(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # numpy's eigh on the float32 matrix, as the official code does (LAPACK syevd).
    values, vectors = np.linalg.eigh(matrix.detach().cpu().numpy())
    order = values.argsort()[::-1]
    return (torch.from_numpy(np.ascontiguousarray(values[order])),
            torch.from_numpy(np.ascontiguousarray(vectors[:, order])))


@dataclass
class Prepared:
    """Everything of a decomposition that does not depend on λ: the (tangent) means and the covariances.

    The data term is the expensive part (n · d² per category); :meth:`solve` then costs one ``eigh`` per
    category, so trying another λ is cheap.
    """

    geometry: str
    categories: tuple[str, ...]
    mean: torch.Tensor
    covariances: dict[str, torch.Tensor] = field(repr=False)
    mu: torch.Tensor | None = None

    def solve(self, lam: float) -> Subspaces:
        """The subspaces for ``lam``: eigenvectors of each objective matrix, by decreasing eigenvalue."""
        matrices = combine(self.covariances, self.categories, lam)
        bases, values = {}, {}
        for c in self.categories:
            values[c], bases[c] = _eigh_descending(matrices[c])
        return Subspaces(self.geometry, self.categories, float(lam), bases, values, self.mean, self.mu, matrices)


def _pooled(x: Mapping[str, torch.Tensor], categories: Sequence[str]) -> torch.Tensor:
    return torch.cat([x[c] for c in categories], dim=0).mean(dim=0)


def prepare_euclidean(encodings: Mapping[str, torch.Tensor],
                      categories: Sequence[str] = OFFICIAL_CATEGORIES) -> Prepared:
    """The λ-free part of the Euclidean model on L2-normalised embeddings (the inputs are not modified)."""
    _check(encodings, categories)
    x = {c: normalise(encodings[c].float()) for c in categories}
    mean = _pooled(x, categories)
    return Prepared("euclidean", tuple(categories), mean, covariances(x, categories, mean))


def first_noun(x: Mapping[str, torch.Tensor], categories: Sequence[str]) -> torch.Tensor:
    """The official starting point of the intrinsic mean: the first noun (first vector of the first category
    when there are no nouns)."""
    return x["N"][0] if "N" in categories else x[categories[0]][0]


def prepare_tangent(encodings: Mapping[str, torch.Tensor], categories: Sequence[str] = OFFICIAL_CATEGORIES,
                    mean_init: torch.Tensor | None = None) -> Prepared:
    """The λ-free part of the geometry-aware model: μ, the log-map vectors' mean and covariances."""
    _check(encodings, categories)
    x = {c: normalise(encodings[c].float()) for c in categories}
    init = first_noun(x, categories) if mean_init is None else mean_init
    mu = intrinsic_mean(torch.cat([x[c] for c in categories], dim=0), init=init)
    logs = {c: log_map(mu, x[c]) for c in categories}
    mean = _pooled(logs, categories)
    return Prepared("tangent", tuple(categories), mean, covariances(logs, categories, mean), mu)


def prepare(encodings: Mapping[str, torch.Tensor], categories: Sequence[str] = OFFICIAL_CATEGORIES,
            geometry: str = "tangent") -> Prepared:
    """The λ-free part of either model by name (``euclidean`` or ``tangent``)."""
    if geometry == "euclidean":
        return prepare_euclidean(encodings, categories)
    if geometry == "tangent":
        return prepare_tangent(encodings, categories)
    raise ValueError(f"unknown geometry {geometry!r}; choose one of {GEOMETRIES}")


def decompose_euclidean(encodings: Mapping[str, torch.Tensor], categories: Sequence[str] = OFFICIAL_CATEGORIES,
                        lam: float = 0.5) -> Subspaces:
    """The Euclidean model on L2-normalised embeddings (the inputs are not modified)."""
    return prepare_euclidean(encodings, categories).solve(lam)


def decompose_tangent(encodings: Mapping[str, torch.Tensor], categories: Sequence[str] = OFFICIAL_CATEGORIES,
                      lam: float = 0.5, mean_init: torch.Tensor | None = None) -> Subspaces:
    """The geometry-aware model: the Euclidean model on log-map vectors at the intrinsic mean."""
    return prepare_tangent(encodings, categories, mean_init).solve(lam)


def decompose(encodings: Mapping[str, torch.Tensor], categories: Sequence[str] = OFFICIAL_CATEGORIES,
              lam: float = 0.5, geometry: str = "tangent") -> Subspaces:
    """Either model by name (``euclidean`` or ``tangent``)."""
    if geometry == "euclidean":
        return decompose_euclidean(encodings, categories, lam)
    if geometry == "tangent":
        return decompose_tangent(encodings, categories, lam)
    raise ValueError(f"unknown geometry {geometry!r}; choose one of {GEOMETRIES}")


# --------------------------------------------------------------------------- applying to encoders

def remove_from_token_states(states: torch.Tensor, subspaces: Subspaces, category: str, k: int,
                             keep_first: bool = True) -> torch.Tensor:
    """Remove a subspace from every token state of a text encoder's output (B, T, d).

    Our adaptation for text-to-image conditioning: each state is treated as a query (direction only),
    passed through :meth:`Subspaces.remove`, renormalised and given back its own norm. The start token
    (position 0), which carries no prompt content, is left alone when ``keep_first``.
    """
    b, t, d = states.shape
    start = 1 if keep_first else 0
    part = states[:, start:].reshape(-1, d).float()
    norms = torch.norm(part, dim=-1, keepdim=True)
    moved = normalise(subspaces.remove(part.to(subspaces.mean.device), category, k).to(part.device)) * norms
    out = states.clone()
    out[:, start:] = moved.reshape(b, t - start, d).to(states.dtype)
    return out


__all__ = [
    "CATEGORY_NAMES",
    "FLOAT32_EPS",
    "GEOMETRIES",
    "OFFICIAL_CATEGORIES",
    "Prepared",
    "Subspaces",
    "decompose",
    "decompose_euclidean",
    "decompose_tangent",
    "exp_map",
    "intrinsic_mean",
    "log_map",
    "normalise",
    "objective_matrices",
    "prepare",
    "prepare_euclidean",
    "prepare_tangent",
    "remove_from_token_states",
    "tangent_component",
]
