"""CogVideoX (2b, 5b, 5b-I2V, 1.5-5b, 1.5-5b-I2V): its registry row."""

from types import ModuleType

from vidgen.core.family import Family
from vidgen.families.cogvideox.info import read_cogvideox_info
from vidgen.families.cogvideox.rules import cogvideox_request
from vidgen.families.cogvideox.tiny import build_tiny_cogvideox


def _pipeline() -> ModuleType:
    from vidgen.families.cogvideox import pipeline  # torch and diffusers: only when a model runs

    return pipeline


def _transformer() -> type:
    from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel

    return CogVideoXTransformer3DModel


FAMILY = Family(
    name="cogvideox",
    title="CogVideoX",
    pipeline_prefixes=("CogVideoX",),
    classes={
        "text_encoder": ("T5EncoderModel",),
        "transformer": ("CogVideoXTransformer3DModel",),
        "vae": ("AutoencoderKLCogVideoX",),
        "scheduler": ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"),
    },
    read_info=read_cogvideox_info,
    build_request=cogvideox_request,
    pipeline=_pipeline,
    build_tiny=build_tiny_cogvideox,
    transformer=_transformer,
    v2v_strength=True,
)
