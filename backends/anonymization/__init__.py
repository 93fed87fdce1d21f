"""FALCO (Barattin et al., CVPR 2023): face anonymisation by latent-code optimisation, plus paste-back and folders.

A real face gets a new identity while its attributes (pose, expression, hair, age, lighting) stay:

1. **Align and invert** the photo (the shared cached step, :mod:`backends.inversion`): FFHQ crop
   at 1024 and its e4e W+ code ``w_real`` [1, 18, 512].
2. **Nearest fake**: a pool of generated faces (seeded z → w, ψ = 0.7 toward the generator's
   ``w_avg``) is embedded with FaRL (:func:`.pool.build_pool`; only seeds and features are kept, on disk);
   the fake closest to the real face in FaRL space (cosine) gives ``w_fake``.
3. **Optimise** W+ layers 3..7, starting from ``w_fake``, with layers 0–2 and 8–17 frozen at
   ``w_real`` (:class:`LatentCode`), to minimise
   ``λ_id·|cos(ArcFace(G(w)), ArcFace(x)) − m| + λ_attr·Σ_tokens L1(FaRL(x), FaRL(G(w)))``
   (:class:`FalcoLoss`), with Adam (lr 0.01) and the official MultiStepLR schedule
   (milestones at 75 % and 90 % of the steps, ×0.8).
4. **Paste back** the anonymised 1024 face into the original photo with the shared feathered
   paste (:func:`backends.face.paste_back`).

Quirks of the official code (chi0tzp/FALCO@e7bd33e), replicated by default (``variant="official"``):

* value ranges: the real image enters both loss networks as ``ToTensor`` [0, 1], the generator's
  output as raw ≈[-1, 1], and FaRL gets no CLIP mean/std in the loss; the pool's fake features are
  CLIP-normalised from [-1, 1] while the real one is normalised from [0, 1];
* precision: FALCO's CUDA run ends with FaRL's matrices rounded to fp16
  (:func:`backends.networks.farl.round_like_falco_cuda`);
* the saved image is min–max normalised per image and truncated to uint8.

``variant="corrected"`` feeds every network the range it was trained on ([-1, 1] for ArcFace,
CLIP-normalised [0, 1] for FaRL, in the loss and in the pool), keeps FaRL's fp32 weights and
converts images with (x + 1) / 2. It changes the numbers and can change the neighbour found.

CLI: ``python -m backends.anonymization IN_DIR OUT_DIR`` anonymises a folder, resumably, with a CSV report.

Modules:

* :mod:`.optimisation`: the loss, the W+ code, the optimiser and schedule, the two variants;
* :mod:`.models`: the generator, ArcFace and FaRL, loaded once per device and variant;
* :mod:`.pool`: the pool of generated faces (seeds and FaRL features on disk), built in the background;
* :mod:`.photo`: one photo, end to end (:func:`anonymize_photo`);
* :mod:`.folder`: folders and zips, resumable, with a CSV report;
* :mod:`.cli`: the folder CLI (``python -m backends.anonymization``).
"""

from __future__ import annotations

from .cli import main  # noqa: F401,E402 - re-exported
from .folder import (  # noqa: F401 - re-exported
    IMAGE_SUFFIXES,
    MAX_ZIP_BYTES,
    MAX_ZIP_FILES,
    REPORT_FIELDS,
    REPORT_NAME,
    FolderReport,
    _read_report,
    _write_report,
    anonymize_folder,
    anonymize_zip,
    extract_zip,
    list_images,
    output_names,
)
from .models import (  # noqa: F401 - re-exported
    FalcoModels,
    clear_caches,
    generator_key,
    get_models,
    weights_on_disk,
)
from .optimisation import (  # noqa: F401 - re-exported
    CORRECTED,
    LAMBDA_ATTR,
    LAMBDA_ID,
    LEARNING_RATE,
    LR_GAMMA,
    LR_MILESTONES,
    OFFICIAL,
    STEPS,
    VARIANTS,
    FalcoLoss,
    LatentCode,
    LossTerms,
    ProgressFn,
    Reference,
    StepRecord,
    Variant,
    get_variant,
    lr_milestones,
    make_optimizer,
    optimise,
)
from .photo import (  # noqa: F401 - re-exported
    MAX_CANDIDATES,
    MAX_STEPS,
    MEASURED_SECONDS_PER_STEP,
    AnonymizeResult,
    anonymize_photo,
    image_to_tensor01,
    output_image,
    pick_neighbour,
)
from .pool import (  # noqa: F401 - re-exported
    MEASURED_SECONDS_PER_FAKE,
    PAPER_POOL_SIZE,
    POOL_BATCH,
    POOL_CHOICES,
    POOL_PSI,
    POOL_SIZE,
    POOL_SIZE_ENV,
    FakePool,
    PoolStatus,
    _fingerprint,
    build_pool,
    cached_pool_size,
    estimate_build_seconds,
    fake_wplus,
    pool_choices,
    pool_dir,
    pool_features,
    pool_size_for,
    pool_status,
    seed_z,
    start_background_build,
)
