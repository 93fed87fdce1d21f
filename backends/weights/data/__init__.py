"""The registry's data: one module per tab (``shared`` for the files several tabs use).

Each module lists :class:`~backends.weights.entry.Checkpoint` records in ``ENTRIES``. Python rather than
TOML/JSON: the records are type-checked dataclasses at import, share the origin strings below, and need
no parser or schema of their own; the order of ``ENTRIES`` is the order of the tables.
"""

GH = "https://github.com"
NC = "NVIDIA Source Code License-NC (non-commercial)"
CHECKS = "backends.weights.checks"

# Where the authors' links come from. The search index gave the README texts; where it attached no
# commit, the fixtures' commit of that repository is named for orientation.
ORIGIN_STYLEMASK = "StelaBou/StyleMask README.md, 'Pretrained Models' (the README with code; fixtures @84c8c6f)"
ORIGIN_STYLEMASK_TRAIN = "StelaBou/StyleMask README.md, 'Training' auxiliary models"
ORIGIN_HYPERREENACT = "StelaBou/HyperReenact README.md, 'Pretrained Models' (fixtures @1b66485)"
ORIGIN_DIRECTIONS = "StelaBou/stylegan_directions_face_reenactment@33a1f14 README.md"
ORIGIN_E4E = "omertov/encoder4editing@03f17f3 README.md, 'Pretrained Models'"
ORIGIN_DFER = "zengqunzhao/DFER-CLIP@821ac38 README.md, 'Test (Pre-trained Models)'"
ORIGIN_FALCO = "chi0tzp/FALCO@1d20607 lib/config.py (archives fetched by download_models.py, sha256 stated there)"
ORIGIN_CONTRACLIP = (
    "chi0tzp/ContraCLIP lib/config.py, ContraCLIP_models (download_models.py); the archive's sha256 differs "
    "between commits, so none is pinned"
)
FALCO_DROPBOX = "https://www.dropbox.com/s"
FALCO_GENFORCE = (
    "https://www.dropbox.com/scl/fi/yec5wgg8j388fc0saigbj/genforce.tar?rlkey=kkhkkxvnc985746ichtdyct3f&dl=1"
)
