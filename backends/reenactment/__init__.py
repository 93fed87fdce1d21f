"""Face reenactment: the source keeps its identity and takes the driving face's pose and expression.

Three engines, one module each, by the same group:

* :mod:`.stylemask` — StyleMask (FG 2023): FFHQ 1024, style-space mixing with a learned mask;
* :mod:`.hyperreenact` — HyperReenact (ICCV 2023): VoxCeleb 256, a hypernetwork refines the
  generator's weights per driving frame;
* :mod:`.gan_directions` — GAN directions (BMVC 2022): VoxCeleb 256, a learned matrix turns DECA
  pose/expression differences into a W+ shift; also single-direction sliders.

Modules:

* :mod:`.engine`: what every engine provides, and the engine registry (status, availability);
* :mod:`.common`: the photo and video flows, paste-back and the CLI, written once for all engines;
* :mod:`.vox`: the VoxCeleb models (generator, e4e, DECA) the last two engines share, loaded once;
* :mod:`.pairs`: a list of (source, driving) pairs into a folder, resumable, locally or on Ray;
* one module per engine, as listed above.

CLI: ``python -m backends.reenactment --source S --driving D --out O [--engine E]``
(``D`` an image or a video; ``O`` a ``.png`` or ``.mp4``);
``python -m backends.reenactment --pairs LIST.csv --out FOLDER [--ray auto]`` for a list;
``python -m backends.reenactment compare SOURCE DRIVING [--json OUT]`` for every engine on one pair, and
``python -m backends.reenactment compare --pairs LIST.csv --csv OUT.csv`` for every engine on every pair
(one CSV row per pair and engine: metrics and times, or the reason it did not run).
"""

from __future__ import annotations

from ..inversion import FAITHFUL_PSI, Inversion, invert_photo, reconstruction
from .common import (
    ENGINES,
    VIDEO_PANEL_HEIGHT,
    VIDEO_RESULT_SIZE,
    ReenactResult,
    VideoReenactResult,
    clear_caches,
    engine_status,
    engine_statuses,
    get_engine,
    main,
    reenact_images,
    reenact_video,
    require_engine,
)
from .stylemask import ReenactmentModels, _cached_mask_net, get_models
from .stylemask import reenact_codes as _reenact_codes

__all__ = [
    "ENGINES",
    "FAITHFUL_PSI",
    "VIDEO_PANEL_HEIGHT",
    "VIDEO_RESULT_SIZE",
    "Inversion",
    "ReenactResult",
    "ReenactmentModels",
    "VideoReenactResult",
    "_cached_mask_net",
    "_reenact_codes",
    "clear_caches",
    "engine_status",
    "engine_statuses",
    "get_engine",
    "get_models",
    "invert_photo",
    "main",
    "reconstruction",
    "reenact_images",
    "reenact_video",
    "require_engine",
]
