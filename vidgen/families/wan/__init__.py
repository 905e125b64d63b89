"""Wan 2.1 text-to-video (1.3B, 14B): its registry row. Image-to-video and the 2.2 models are not run
yet, so the row claims WanPipeline alone."""

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
    # Exactly "WanPipeline": a prefix would claim WanImageToVideoPipeline and the others too.
    pipeline_prefixes=("WanPipeline",),
    classes={
        "text_encoder": ("UMT5EncoderModel",),
        "transformer": ("WanTransformer3DModel",),
        "vae": ("AutoencoderKLWan",),
        "scheduler": ("UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"),
    },
    read_info=read_wan_info,
    build_request=wan_request,
    pipeline=_pipeline,
    build_tiny=build_tiny_wan,
    transformer=_transformer,
    # The pipeline runs the conditional and unconditional branches one after the other.
    batched_guidance=False,
    # UniPC's `flow_shift` (FlowMatchEulerDiscreteScheduler calls it `shift`): step-distilled LoRAs
    # were trained at another shift than the folder's.
    flow_shift=True,
)
