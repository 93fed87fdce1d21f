"""Checkpoints that several tabs share: the FFHQ generator and e4e, ArcFace, CLIP, the face detectors."""

from __future__ import annotations

from ..entry import Checkpoint, Source
from . import CHECKS, FALCO_DROPBOX, FALCO_GENFORCE, GH, NC, ORIGIN_E4E, ORIGIN_FALCO, ORIGIN_STYLEMASK

ENTRIES = [
    Checkpoint(
        key="stylegan2_ffhq1024",
        filename="stylegan2-ffhq-config-f.pt",
        title="StyleGAN2 FFHQ 1024 generator (rosinality format, g_ema)",
        tabs=("reenactment", "latent_paths", "anonymization"),
        licence=NC,
        sources=(
            Source(hub_repo="aaronb/StyleGAN2", hub_path="stylegan2-ffhq-config-f.pt"),
            Source(gdrive_id="1I01HVu9UUyzAV7rNNnbzyFqPF0msebD7", origin=ORIGIN_STYLEMASK),
            Source(gdrive_id="1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT", origin=ORIGIN_E4E + " (FFHQ StyleGAN)"),
        ),
        standin="backends.networks.stylegan2:standin_checkpoint_ffhq1024",
        params={"size": 1024, "channel_multiplier": 2},
        check=f"{CHECKS}:stylegan2_ffhq1024",
    ),
    Checkpoint(
        key="stylegan2_ffhq1024_genforce",
        filename="stylegan2_ffhq1024.pth",
        title="StyleGAN2 FFHQ 1024 generator (genforce format, used by FALCO and ContraCLIP)",
        # Only the anonymization tab reads it, and only when present (backends/anonymization/models.py):
        # the latent paths tab runs on the rosinality file.
        tabs=("anonymization",),
        optional="the public rosinality FFHQ file (the same network) serves instead",
        licence=NC,
        sources=(
            Source(url=FALCO_GENFORCE, member="genforce/stylegan2_ffhq1024.pth",
                   archive_sha256="63284b4f4ffeac38037061fd175c462afff82bbe570ed80092720a724a67a6dc",
                   origin=ORIGIN_FALCO + ", GENFORCE"),
        ),
        standin="backends.networks.stylegan2:standin_checkpoint_genforce_ffhq1024",
        check=f"{CHECKS}:stylegan2_genforce_ffhq1024",
    ),
    Checkpoint(
        key="e4e_ffhq_encode",
        filename="e4e_ffhq_encode.pt",
        title="e4e encoder for FFHQ (Encoder4Editing, IR-SE50 backbone, 18 styles)",
        tabs=("reenactment", "latent_paths", "anonymization"),
        licence="MIT (omertov/encoder4editing)",
        sources=(
            Source(
                hub_repo="AIRI-Institute/HairFastGAN",
                hub_path="pretrained_models/encoder4editing/e4e_ffhq_encode.pt",
            ),
            Source(gdrive_id="1cUv_reLE6k3604or78EranS7XzuVMWeO", origin=ORIGIN_E4E + " (FFHQ Inversion)"),
            Source(gdrive_id="1DexTMA3QMRNwQ3Xhdojki8UAYuY3g0uu", origin=ORIGIN_STYLEMASK),
        ),
        standin="backends.networks.e4e:standin_checkpoint_e4e_ffhq",
        check=f"{CHECKS}:e4e_ffhq",
    ),
    Checkpoint(
        key="ir_se50",
        filename="model_ir_se50.pth",
        title="ArcFace IR-SE50 identity network",
        tabs=("anonymization", "reenactment"),
        licence="MIT (TreB1eN/InsightFace_Pytorch)",
        sources=(
            Source(hub_repo="matbee/model_ir_se50_pytorch", hub_path="model_ir_se50.pth"),
            Source(gdrive_id="1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn", origin=ORIGIN_E4E + " (IR-SE50 Model)"),
            Source(url=f"{FALCO_DROPBOX}/idulblr8pdrmbq1/arcface.tar?dl=1", member="arcface/model_ir_se50.pth",
                   archive_sha256="edd5854cacd86c17a78a11f70ab8c49bceffefb90ee070754288fa7ceadcdfb2",
                   origin=ORIGIN_FALCO + ", ARCFACE"),
        ),
        standin="backends.networks.irse:standin_checkpoint_ir_se50",
        check=f"{CHECKS}:arcface_ir_se50",
    ),
    Checkpoint(
        key="clip_vit_b32",
        filename="open_clip_model.safetensors",
        title="CLIP ViT-B/32 (OpenAI weights, open_clip format)",
        tabs=("latent_paths", "pos_subspaces", "expression"),
        licence="MIT (openai/CLIP)",
        sources=(
            Source(hub_repo="timm/vit_base_patch32_clip_224.openai", hub_path="open_clip_model.safetensors"),
        ),
        standin="backends.networks.clip:standin_checkpoint_clip_vit_b32",
        check=f"{CHECKS}:clip_vit_b32",
    ),
    Checkpoint(
        key="yunet",
        filename="face_detection_yunet_2026may.onnx",
        title="YuNet face detector (box + 5 landmarks), OpenCV FaceDetectorYN",
        tabs=("all",),
        licence="MIT (OpenCV Zoo)",
        sources=(
            Source(hub_repo="opencv/face_detection_yunet", hub_path="face_detection_yunet_2026may.onnx"),
            Source(url=f"{GH}/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
                   "face_detection_yunet_2026may.onnx", origin="opencv/opencv_zoo models/face_detection_yunet"),
        ),
        sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
        size_bytes=229_738,
    ),
    Checkpoint(
        key="retinaface_resnet50",
        filename="detection_Resnet50_Final.pth",
        title="RetinaFace ResNet-50 face detector (facexlib)",
        tabs=("all",),
        optional="YuNet detects the faces instead",
        licence="MIT (xinntao/facexlib)",
        sources=(
            Source(url=f"{GH}/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
                   origin="xinntao/facexlib facexlib/detection/__init__.py (retinaface_resnet50 model_url)"),
        ),
    ),
    Checkpoint(
        key="alexnet_torchvision",
        filename="alexnet-owt-7be5be79.pth",
        title="AlexNet ImageNet classifier (torchvision IMAGENET1K_V1), the LPIPS backbone",
        name="AlexNet (for LPIPS)",
        tabs=("reenactment",),
        licence="BSD-3-Clause (pytorch/vision)",
        sources=(
            Source(url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                   origin="pytorch/vision torchvision/models/alexnet.py (AlexNet_Weights.IMAGENET1K_V1 url)"),
        ),
        standin="backends.networks.lpips:standin_checkpoint_alexnet",
        check=f"{CHECKS}:alexnet",
        optional="the reenactment video metrics leave LPIPS out",
    ),
    Checkpoint(
        key="lpips_alex_v01",
        filename="lpips_v0.1_alex.pth",
        title="LPIPS v0.1 linear layers for AlexNet (lpips weights/v0.1/alex.pth)",
        name="LPIPS linear layers",
        tabs=("reenactment",),
        licence="BSD-2-Clause (richzhang/PerceptualSimilarity)",
        sources=(
            Source(url=f"{GH}/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
                   origin="richzhang/PerceptualSimilarity lpips/weights/v0.1/alex.pth (the lpips package's file)"),
        ),
        standin="backends.networks.lpips:standin_checkpoint_linear",
        check=f"{CHECKS}:lpips_alex_linear",
        optional="the reenactment video metrics leave LPIPS out",
    ),
]
