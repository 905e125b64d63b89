"""Wan: its registry row. WanPipeline folders (Wan 2.1 1.3B and 14B, Wan 2.2 A14B with two experts,
`transformer_2`, and TI2V-5B) run text-to-video and video-to-video; WanImageToVideoPipeline folders
image-to-video (and first-last-frame)."""

from types import ModuleType

from vidgen.core.family import Family
from vidgen.families.wan.info import read_wan_info
from vidgen.families.wan.rules import wan_request
from vidgen.families.wan.tiny import build_tiny_wan


def _pipeline() -> ModuleType:
    from vidgen.families.wan import pipeline  # torch and diffusers: only when a model runs

    return pipeline


def _transformer() -> type:
    from vidgen.families.wan.model import WanTransformer3DModel

    return WanTransformer3DModel


FAMILY = Family(
    name="wan",
    title="Wan",
    # Whole names: a prefix "Wan" would claim the VACE and Animate pipelines too.
    pipeline_prefixes=("WanPipeline", "WanImageToVideoPipeline"),
    classes={
        "text_encoder": ("UMT5EncoderModel",),
        "transformer": ("WanTransformer3DModel",),
        "vae": ("AutoencoderKLWan",),
        "scheduler": ("UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"),
        # Wan 2.1 image-to-video embeds the image with CLIP ViT-H as well as encoding it with the VAE.
        "image_encoder": ("CLIPVisionModel",),
        "image_processor": ("CLIPImageProcessor",),
    },
    optional_components=("image_encoder", "image_processor"),
    read_info=read_wan_info,
    build_request=wan_request,
    pipeline=_pipeline,
    build_tiny=build_tiny_wan,
    transformer=_transformer,
    # Video-to-video noises the input video to the first kept timestep, as CogVideoX.
    v2v_strength=True,
    # UniPC's `flow_shift` (FlowMatchEulerDiscreteScheduler calls it `shift`): step-distilled LoRAs
    # were trained at another shift than the folder's.
    flow_shift=True,
)
