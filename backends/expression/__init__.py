"""The Expression tab's backend: dynamic facial expression recognition from a video or a photo.

Three modes, each labelled in the result:

* ``dfer_clip`` -- DFER-CLIP (Zhao & Patras, BMVC 2023) from an official checkpoint
  (DFEW or FERV39k: 7 classes; MAFW: 11 classes), or its stand-in weights (flagged);
* ``zero_shot_clip`` -- plain CLIP ViT-B/32 against prompts describing each expression;
* ``baseline_mini_xception`` -- the FER2013 mini-XCEPTION, per frame, averaged.

``auto`` picks DFER-CLIP when its checkpoint resolves (or stand-in weights are on),
else the baseline, and says why.

Video path: frames -> the official test-time sampling (16 segment midpoints, short
clips padded with the last frame) -> the largest face, tracked across frames -> square
crops resized to 224 with PIL bilinear and scaled to [0, 1] as the official loader
feeds them -> model. Long videos also get a timeline of ~2 s windows stepping 1 s.
On request, an annotated copy of the video is written: the tracked face box and the
expression of the window around each frame.

CLI::

    python -m backends.expression predict VIDEO_OR_IMAGE [--mode MODE] [--dataset dfew|mafw|ferv39k] [--annotate]
    python -m backends.expression evaluate --annotations FILE --frames-root DIR [--checkpoint KEY_OR_PATH]

Modules:

* :mod:`.classifiers`: DFER-CLIP, zero-shot CLIP and mini-XCEPTION behind one interface;
* :mod:`.analysis`: videos and photos to probabilities (sampling, tracking, crops, windows);
* :mod:`.annotate`: the annotated video;
* :mod:`.evaluation`: UAR/WAR on benchmark annotation lists;
* :mod:`.cli`: the CLI.
"""

from __future__ import annotations

from ..networks.dfer_clip import CLASSES_BY_DATASET  # noqa: F401 - the class lists, as the tab shows them
from .analysis import (  # noqa: F401 - re-exported
    CROP_SIZE,
    FACE_BOX_SCALE,
    MAX_FACE_CROPS_SHOWN,
    MAX_WINDOWS,
    TRACK_SMOOTH_WINDOW,
    WINDOW_SECONDS,
    WINDOW_STEP_SECONDS,
    ExpressionResult,
    TrackedCrops,
    analyze_frames,
    analyze_photo,
    analyze_video,
    classify_crops,
    crop_face,
    plan_windows,
    sample_indices,
    track_face_crops,
)
from .annotate import (  # noqa: F401 - re-exported
    ANNOTATED_VIDEO_NAME,
    ANNOTATION_COLOUR,
    draw_annotation,
    frame_labels,
    nearest_boxes,
    write_annotated_video,
)
from .classifiers import (  # noqa: F401 - re-exported
    CHECKPOINT_KEYS,
    DATASET_TITLES,
    DATASETS,
    FEATURE_BATCH,
    MODES,
    STANDIN_NOTICE,
    DferClipClassifier,
    ExpressionClassifier,
    MiniXceptionClassifier,
    ZeroShotClassifier,
    _cached_dfer_clip,
    _cached_mini_xception,
    _cached_zero_shot,
    choose_classifier,
    crops_to_unit_tensor,
    get_classifier,
    mini_xception_input,
)
from .cli import main  # noqa: F401,E402 - re-exported
from .evaluation import (  # noqa: F401 - re-exported
    IMAGE_SUFFIXES,
    AnnotationRecord,
    EvaluationResult,
    Predictor,
    _load_model_for_evaluation,
    _model_predictor,
    evaluate,
    frames_dir,
    load_frame_folder_clip,
    read_annotations,
    uar_war,
)
