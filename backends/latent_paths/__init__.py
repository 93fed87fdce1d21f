"""Latent paths with ContraCLIP (Tzelepis et al., 2022) on real photos or sampled faces.

The steps, each visible in the tab:

1. **Start**: a photo goes through the face pipeline and e4e (:mod:`backends.inversion`,
   cached by pixels, codes *untruncated*), or a seed gives z → w → W+ truncated at ψ = 0.7
   toward the mean latent, as the official code samples its faces;
2. **Walk**: an Euler walk along the chosen path (:mod:`backends.networks.contraclip`); the
   direction is recomputed at every step, W+ rows 0..11 move, rows 12..17 stay. The walk is
   cached per start code, path and step size, so moving the strength slider only picks a
   point on it: nothing is inverted or walked twice;
3. **Render** the codes with the FFHQ-1024 StyleGAN2 that e4e inverts into (the rosinality
   file; the genforce file ContraCLIP trained with has the same W+ space, see the key map in
   :mod:`backends.networks.stylegan2`). The stored codes are rendered by default; the
   ``official`` mode reproduces the official script, which adds each step's shift twice;
4. **Measure**: the CLIP margin cos(img, A) − cos(img, B) of every frame along the path.

CLI::

    python -m backends.latent_paths edit PHOTO --path NAME --strength S --out OUT
    python -m backends.latent_paths strip PHOTO --path NAME --max-strength S --out OUT.gif
    python -m backends.latent_paths train --dipole "<sentence A>" "<sentence B>" ... --out DIR

Modules:

* :mod:`.paths`: the corpora (built-in and trained folders) and their support sets;
* :mod:`.measure`: CLIP and the margin along a path;
* :mod:`.traversal`: start codes, the cached walk, renders, edit and strip results;
* :mod:`.training`: learning new paths from sentence pairs;
* :mod:`.cli`: the CLI.
"""

from __future__ import annotations

from ..networks.contraclip import DEFAULT_EPS  # noqa: F401 - the default step of a walk
from .cli import main  # noqa: F401,E402 - re-exported
from .measure import (  # noqa: F401 - re-exported
    Margins,
    _cached_clip,
    clip_margins,
    get_clip,
    margin_plot,
)
from .paths import (  # noqa: F401 - re-exported
    CORPORA,
    TRAINED_ENV,
    TRAINED_PREFIX,
    PathModel,
    PathPreset,
    ProgressFn,
    _cached_paths,
    corpus_names,
    get_paths,
    presets,
    trained_folders,
    trained_root,
)
from .training import (  # noqa: F401 - re-exported
    TrainConfig,
    estimate_radius,
    nt_xent,
    sample_codes,
    sample_shifts,
    train,
    write_experiment,
)
from .traversal import (  # noqa: F401 - re-exported
    DEFAULT_FRAMES,
    FRAME_SIZE,
    MAX_STEPS,
    MAX_STRENGTH,
    RENDER_NOTES,
    SEED_PSI,
    STANDIN_NOTICE,
    EditResult,
    Start,
    StripResult,
    clear_caches,
    edit,
    origin_image,
    resolve_start,
    start_from_photo,
    start_from_seed,
    steps_for,
    strip,
    walk_for,
)
