"""ModelInfo of the released models' shapes, for tests that estimate memory without any model folder."""

from dataclasses import replace

from vidgen.model_info import ModelInfo

COGVIDEOX = ModelInfo(
    family="cogvideox",
    pipeline="CogVideoXPipeline",
    architecture="cogvideox-rotary",
    modes=("t2v",),
    spatial_scale=8,
    temporal_scale=4,
    patch_size=2,
    patch_size_t=None,
    sample_size=(480, 720, 49),
    fixed_size=False,
    max_text_tokens=226,
)
HELIOS = replace(
    COGVIDEOX,
    family="helios",
    pipeline="HeliosPipeline",
    architecture="helios-base",
    sample_size=(384, 640, 33),
    max_text_tokens=512,
)
HELIOS_DISTILLED = replace(
    HELIOS, pipeline="HeliosPyramidPipeline", architecture="helios-distilled", pyramid_stages=3
)


def cogvideox_info(config) -> ModelInfo:
    """The ModelInfo of a CogVideoX transformer config (its patches and sample size)."""
    return replace(
        COGVIDEOX,
        patch_size=config.patch_size,
        patch_size_t=config.patch_size_t,
        sample_size=(config.sample_height * 8, config.sample_width * 8, config.sample_frames),
    )
