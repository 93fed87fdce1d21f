"""Checkpoints of the Latent paths tab (ContraCLIP support sets)."""

from __future__ import annotations

from ..entry import Checkpoint, Source
from . import FALCO_DROPBOX, ORIGIN_CONTRACLIP

ENTRIES = [
    Checkpoint(
        key="contraclip_support_sets",
        filename="contraclip_attributes/latent_support_sets.pt",
        title="ContraCLIP latent support sets, StyleGAN2 FFHQ W+ (layers 0-11), attributes corpus (9 paths)",
        name="ContraCLIP attribute paths",
        tabs=("latent_paths",),
        licence="see chi0tzp/ContraCLIP",
        sources=(
            Source(url=f"{FALCO_DROPBOX}/b8msg3k6zkr0978/contraclip_models.tar?dl=1",
                   member="ContraCLIP_stylegan2_ffhq1024-W-K9-D128-eps0.1_0.2-nonlinear_beta-0.75-contrastive_0.5-"
                          "attributes/models/latent_support_sets.pt",
                   origin=ORIGIN_CONTRACLIP),
        ),
        expect_keys=("SUPPORT_SETS", "LOGGAMMA"),
        standin="backends.networks.contraclip:standin_checkpoint_attributes",
        how_to_get="Put latent_support_sets.pt and semantic_dipoles.json from the experiment's models/ folder "
                   "into $FACELAB_WEIGHTS_DIR/contraclip_attributes/.",
        params={"corpus": "attributes", "companion": "semantic_dipoles.json", "num_paths": 9},
    ),
    Checkpoint(
        key="contraclip_support_sets_expressions",
        filename="contraclip_expressions/latent_support_sets.pt",
        title="ContraCLIP latent support sets, StyleGAN2 FFHQ W+ (layers 0-11), expressions corpus (21 paths)",
        name="ContraCLIP expression paths",
        tabs=("latent_paths",),
        licence="see chi0tzp/ContraCLIP (no licence file)",
        sources=(Source(note="authors' Dropbox archive contraclip_models.tar linked from the chi0tzp/ContraCLIP "
                             "README: experiments/complete/<...>-expressions/models/"),),
        host_supplied=True,
        standin="backends.networks.contraclip:standin_checkpoint_expressions",
        how_to_get="Put latent_support_sets.pt and semantic_dipoles.json from the experiment's models/ folder "
                   "into $FACELAB_WEIGHTS_DIR/contraclip_expressions/, or train one with "
                   "`python -m backends.latent_paths train`.",
        params={"corpus": "expressions", "companion": "semantic_dipoles.json", "num_paths": 21},
    ),
]
