"""What each tab offers and what is available in this build; the single place the UI asks."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MethodUnavailableError


@dataclass(frozen=True)
class Method:
    key: str
    name: str
    paper: str
    available: bool


METHODS: dict[str, Method] = {
    m.key: m
    for m in [
        Method("stylemask", "StyleMask", "Bounareli et al., FG 2023", available=True),
        Method("hyperreenact", "HyperReenact", "Bounareli et al., ICCV 2023", available=True),
        Method("gan_directions", "GAN directions", "Bounareli et al., BMVC 2022", available=True),
        Method("contraclip", "ContraCLIP", "Tzelepis et al., 2022", available=True),
        Method("pos_subspaces", "PoS subspaces", "Oldfield et al., NeurIPS 2023", available=True),
        Method("falco", "FALCO", "Barattin et al., CVPR 2023", available=True),
        Method("dfer_clip", "DFER-CLIP", "Zhao & Patras, BMVC 2023", available=True),
    ]
}


def require(key: str) -> Method:
    """The method ``key`` if this build implements it, else :class:`MethodUnavailableError`."""
    method = METHODS[key]
    if not method.available:
        raise MethodUnavailableError(
            f"{method.name} ({method.paper}) is not available yet in this build of Face Lab. "
            "The tab shows its planned layout only; no output is produced."
        )
    return method
