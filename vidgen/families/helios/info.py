"""What a Helios folder's configs say about the requests it can serve."""

from pathlib import Path

from vidgen.core.model_info import ModelInfo, read_json

# One transformer call attends over a 9-latent-frame chunk and its history: 1 short frame at full
# resolution, 2 mid frames 2x coarser per axis (8x fewer tokens) and 16 long ones 4x coarser (64x
# fewer): 1.5 frames' worth.
CHUNK_LATENT_FRAMES, HISTORY_LATENT_FRAMES = 9, 1 + 2 / 8 + 16 / 64
LATENT_WINDOW = 9 + 19  # latent frames held at once: the chunk and its history (16 + 2 + 1)


def helios_architecture(index: dict) -> str:
    """Which released Helios a model_index.json describes (the presets' `architecture`)."""
    if index["_class_name"] != "HeliosPyramidPipeline":
        return "helios-base"
    return "helios-distilled" if index.get("is_distilled") else "helios-mid"


def read_helios_info(folder: Path) -> ModelInfo:
    index = read_json(folder / "model_index.json")
    transformer = read_json(folder / "transformer" / "config.json")
    vae = read_json(folder / "vae" / "config.json")
    scheduler = read_json(folder / "scheduler" / "scheduler_config.json")
    pyramid = index["_class_name"] == "HeliosPyramidPipeline"
    return ModelInfo(
        family="helios",
        pipeline=index["_class_name"],
        architecture=helios_architecture(index),
        # One model does all three: an image or a video only seeds the latent history.
        modes=("t2v", "i2v", "v2v"),
        spatial_scale=vae["scale_factor_spatial"],
        temporal_scale=vae["scale_factor_temporal"],
        patch_size=transformer["patch_size"][-1],
        patch_size_t=None,
        sample_size=(384, 640, 33),  # the authors' size; 33 frames is one chunk
        fixed_size=False,
        max_text_tokens=512,  # UMT5's length in training; diffusers' Helios default (CogVideoX: 226)
        pyramid_stages=scheduler.get("stages", 1) if pyramid else 1,
        attention_heads=transformer.get("num_attention_heads", 0),
        tile_pixels=256 * 256,  # diffusers' Wan VAE tile
        call_latent_frames=CHUNK_LATENT_FRAMES + HISTORY_LATENT_FRAMES,
        held_latent_frames=LATENT_WINDOW,
        text_in_sequence=False,
        vae_fp32=True,
    )
