"""The PoS-subspaces tab's backend (Oldfield et al., NeurIPS 2023): learn part-of-speech and theme
subspaces of CLIP, measure where a text's embedding lives, and remove a visual theme from text-to-image.

Two embedding spaces, each with its own decomposition (same closed-form model, see
:mod:`backends.networks.pos_subspaces`):

* the **joint space** of CLIP ViT-B/32 (open_clip text tower, the one the other CLIP tabs use): the
  paper's setting. Diagnostics run here: the share of a text's energy in each PoS subspace, and the
  nearest vocabulary words before and after a theme is removed.
* the **conditioning space** of the text-to-image model (default ``stabilityai/sd-turbo``): the text
  encoder's token states the UNet attends to. Each vocabulary word is encoded as the state at its end
  token; the theme subspace learned there is removed from every token state of the prompt (start token
  kept), each state keeping its norm. *This is our adaptation*: the paper's own experiments project the
  pooled CLIP embedding that conditions a different text-to-image model.

Vocabulary: WordNet 3.0 lemmas that occur in one part of speech only, sorted (assets/pos_vocab, made by
tools/make_pos_vocab.py). A theme is one more category made of a word list (a preset in assets/pos_themes,
or the user's own list); its words are taken out of the PoS lists before learning. Encodings are cached
on disk, keyed by the encoder and a hash of the word list. On a CPU only an evenly spaced subset of each
list is encoded by default (see :func:`default_max_words`); results say how many words were used.

CLI::

    python -m backends.pos_subspaces learn [--space joint|t2i] [--geometry tangent|euclidean] [--lam 0.5]
    python -m backends.pos_subspaces remove "a text" [--theme artists | --theme-file FILE] [--k 8]
    python -m backends.pos_subspaces generate "a prompt" [--theme artists] [--seed 0] [--steps 1] [--out DIR]

Add ``--stand-in`` to run on stand-in weights (outputs are not results).

Modules:

* :mod:`.vocabulary`: WordNet words per part of speech, and themes;
* :mod:`.encoders`: words to CLIP features (joint space, SD-Turbo conditioning), cached on disk;
* :mod:`.subspaces`: learning the subspaces, projecting a text, diagnostics;
* :mod:`.text_to_image`: the SD-Turbo pipeline (TAESD decoder on a CPU) or its stand-in;
* :mod:`.generate`: images with the theme removed, beside the plain ones;
* :mod:`.cli`: the CLI.
"""

from __future__ import annotations

from ..networks.pos_subspaces import Subspaces  # noqa: F401 - the learned decomposition
from ..networks.text_to_image import SD_TURBO_ID, tiny_pipeline  # noqa: F401 - the default model; a tiny one for tests
from .cli import main  # noqa: F401,E402 - re-exported
from .encoders import (  # noqa: F401 - re-exported
    ENCODE_BATCH,
    SPACES,
    ConditioningEncoder,
    JointSpaceEncoder,
    Progress,
    WordEncoder,
    _joint_encoder,
    encode_cached,
    joint_encoder,
)
from .generate import (  # noqa: F401 - re-exported
    MAX_STEPS,
    Generation,
    _run_pipeline,
    conditioning_pair,
    generate,
    resolve_seed,
)
from .subspaces import (  # noqa: F401 - re-exported
    _LEARNED,
    _PREPARED,
    ADAPTATION_NOTE,
    DEFAULT_K,
    DEFAULT_LAM,
    MAX_K,
    MAX_PROMPT_TOKENS,
    NEAREST,
    STANDIN_NOTICE,
    Diagnostics,
    Learned,
    category_label,
    check_prompt,
    clear_learned,
    diagnose,
    learn,
    nearest_words,
)
from .text_to_image import (  # noqa: F401 - re-exported
    DECODER_ENV,
    T2I_MODEL_ENV,
    T2I_MODELS_ENV,
    T2IModel,
    _build_t2i_model,
    _t2i_model,
    _with_decoder,
    allowed_model_ids,
    check_model_id,
    decoder_choice,
    default_model_id,
    t2i_model,
)
from .vocabulary import (  # noqa: F401 - re-exported
    ASSETS,
    CPU_MAX_WORDS,
    MAX_THEME_WORDS,
    MAX_WORDS_ENV,
    MIN_THEME_WORDS,
    PRESET_THEMES,
    T2I_MAX_WORDS_ENV,
    THEME,
    THEMES_DIR,
    VOCAB_DIR,
    VOCAB_FILES,
    Theme,
    category_words,
    default_max_words,
    evenly_spaced,
    parse_theme,
    preset_words,
    unknown_words,
    vocabulary,
    words_hash,
)
