"""Checkpoints of the Reenactment tab's engines (StyleMask, HyperReenact, GAN directions)."""

from __future__ import annotations

from ..entry import Checkpoint, Source
from . import CHECKS, ORIGIN_DIRECTIONS, ORIGIN_HYPERREENACT, ORIGIN_STYLEMASK

ORIGIN_DECA = "yfeng95/DECA fetch_data.sh (FILEID of data/deca_model.tar; a public Drive file, no login)"
DECA_LICENCE = "DECA licence: non-commercial scientific research only (MPI-IS), see deca.is.tue.mpg.de"
ORIGIN_FAN = (
    "StelaBou/HyperReenact@1b66485 libs/face_models/landmarks_estimation.py, models_urls['2DFAN-4'] "
    "(loaded with load_url; the URL of the face-alignment package, 1adrianb/face-alignment, before 1.2)"
)

ENTRIES = [
    Checkpoint(
        key="stylegan2_vox256",
        filename="stylegan-voxceleb.pt",
        title="StyleGAN2 VoxCeleb 256 generator (rosinality format, channel multiplier 1)",
        tabs=("reenactment",),
        licence="see StelaBou/HyperReenact",
        sources=(
            Source(gdrive_id="1cBwIFwq6cYIA5iR8tEvj6BIL7Ji7azIH",
                   origin=ORIGIN_HYPERREENACT + "; the same id in " + ORIGIN_DIRECTIONS),
        ),
        standin="backends.networks.stylegan2:standin_checkpoint_vox256",
        params={"size": 256, "channel_multiplier": 1},
        check=f"{CHECKS}:stylegan2_vox256",
    ),
    Checkpoint(
        key="stylemask_1024",
        filename="mask_network_1024.pt",
        title="StyleMask mask network for StyleGAN2 FFHQ 1024",
        tabs=("reenactment",),
        licence="see StelaBou/StyleMask",
        sources=(Source(gdrive_id="1_V_MnFB8rh5qrQ3zJk00fKXb81uHjIU8", origin=ORIGIN_STYLEMASK),),
        standin="backends.networks.stylemask:standin_checkpoint_mask_network",
        check=f"{CHECKS}:stylemask_1024",
    ),
    Checkpoint(
        key="hyperreenact_hypernetwork",
        filename="hypernetwork.pt",
        title="HyperReenact hypernetwork (VoxCeleb)",
        tabs=("reenactment",),
        licence="see StelaBou/HyperReenact",
        sources=(Source(gdrive_id="1BUp6S3Wf2SeM3a-b_7mkKZyaXAxKhLrI", origin=ORIGIN_HYPERREENACT),),
        standin="backends.networks.hyperreenact:standin_checkpoint_hypernetwork",
    ),
    Checkpoint(
        key="e4e_voxceleb",
        filename="e4e-voxceleb.pt",
        title="e4e encoder for the VoxCeleb generator (14 styles)",
        tabs=("reenactment",),
        licence="see StelaBou/HyperReenact",
        sources=(
            Source(gdrive_id="1TRATaREBi4VCMITUZV0ZO2XFU3YZKGlQ",
                   origin=ORIGIN_HYPERREENACT + "; the same id in " + ORIGIN_DIRECTIONS),
        ),
        expect_keys=("e",),
        standin="backends.networks.e4e:standin_checkpoint_e4e_voxceleb",
    ),
    Checkpoint(
        key="deca_model",
        filename="deca_model.tar",
        title="DECA face reconstruction encoder (pose and expression)",
        tabs=("reenactment",),
        licence=DECA_LICENCE,
        sources=(Source(gdrive_id="1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje", origin=ORIGIN_DECA),),
        standin="backends.networks.deca:standin_checkpoint_deca",
        check=f"{CHECKS}:deca_model",
        how_to_get=(
            "DECA's authors publish deca_model.tar on Google Drive (the link of their fetch_data.sh; no login). "
            "Its licence allows non-commercial scientific research only (MPI-IS, see deca.is.tue.mpg.de). "
            "Only its 'E_flame' encoder is read; the file holds plain state dicts and is loaded without "
            "unpickling code. HyperReenact and GAN directions need it."
        ),
    ),
    Checkpoint(
        key="fan68",
        filename="2DFAN4-11f355bf06.pth.tar",
        title="2DFAN-4 68-landmark network (FAN, 4 hourglasses), the landmarks of the VoxCeleb and DECA crops",
        tabs=("reenactment",),
        licence="BSD-3-Clause (1adrianb/face-alignment)",
        sources=(
            Source(url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
                   origin=ORIGIN_FAN),
        ),
        standin="backends.networks.fan68:standin_checkpoint_fan68",
        check=f"{CHECKS}:fan68",
    ),
    Checkpoint(
        key="gan_directions_vox",
        filename="A_matrix.pt",
        title="GAN-directions reenactment matrix A (VoxCeleb)",
        tabs=("reenactment",),
        licence="see StelaBou/stylegan_directions_face_reenactment",
        sources=(Source(gdrive_id="11aNalhBnPREFQT9i9wmQE0-fkQac4SzQ", origin=ORIGIN_DIRECTIONS + ", Inference"),),
        expect_keys=("A_matrix",),
        standin="backends.networks.gan_directions:standin_checkpoint_a_matrix",
        how_to_get="The released file must carry 'shift_dim' (the repository's trainer omits it).",
    ),
    Checkpoint(
        key="gan_directions_ranges",
        filename="ranges_voxceleb.npy",
        title="GAN-directions per-parameter ranges (VoxCeleb, [54, 2] min/max of DECA angles, jaw, expressions)",
        tabs=("reenactment",),
        licence="see StelaBou/stylegan_directions_face_reenactment",
        sources=(
            Source(url="https://raw.githubusercontent.com/StelaBou/stylegan_directions_face_reenactment/"
                       "8ae04cc1e15ec0f4e6c1c0c08f4d93cb528cb95b/libs/configs/ranges_voxceleb.npy",
                   origin="StelaBou/stylegan_directions_face_reenactment@8ae04cc, libs/configs/ranges_voxceleb.npy "
                          "(committed in the repository)"),
        ),
        standin="backends.networks.gan_directions:standin_ranges",
        how_to_get="It ships with the A matrix: copy libs/configs/ranges_voxceleb.npy next to A_matrix.pt.",
    ),
]
