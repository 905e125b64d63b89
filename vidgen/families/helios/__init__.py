"""Helios (Base, Mid, Distilled; 14B, autoregressive in 33-frame chunks): its registry row."""

from types import ModuleType

from vidgen.core.family import Family
from vidgen.families.helios.info import read_helios_info
from vidgen.families.helios.rules import chunk_count, helios_request, helios_token_counts
from vidgen.families.helios.tiny import build_tiny_helios


def _video() -> ModuleType:
    from vidgen.families.helios import video  # torch and diffusers: only when a model runs

    return video


def _chunks() -> ModuleType:
    from vidgen.families.helios import pipeline

    return pipeline


def _transformer() -> type:
    from vidgen.families.helios.model import HeliosTransformer3DModel

    return HeliosTransformer3DModel


FAMILY = Family(
    name="helios",
    title="Helios",
    pipeline_prefixes=("Helios",),
    classes={
        "text_encoder": ("UMT5EncoderModel",),
        "transformer": ("HeliosTransformer3DModel",),
        "vae": ("AutoencoderKLWan",),
        "scheduler": ("HeliosScheduler", "HeliosDMDScheduler"),
    },
    read_info=read_helios_info,
    build_request=helios_request,
    pipeline=_video,
    build_tiny=build_tiny_helios,
    transformer=_transformer,
    token_counts=helios_token_counts,
    token_count_parts="history and each pyramid stage",
    stream_pipeline=_chunks,
    chunk_count=chunk_count,
)
