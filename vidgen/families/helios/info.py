"""What a Helios folder's configs say about the requests it can serve."""

from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import REPAIR, ModelInfo, read_json, value

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
    transformer_path, vae_path = folder / "transformer" / "config.json", folder / "vae" / "config.json"
    transformer, vae = read_json(transformer_path), read_json(vae_path)
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    scheduler = read_json(scheduler_path)
    pyramid = index["_class_name"] == "HeliosPyramidPipeline"
    patch = value(transformer, "patch_size", transformer_path, list)
    if not patch or not isinstance(patch[-1], int) or isinstance(patch[-1], bool):
        raise VidgenError(f"'{transformer_path}': patch_size is {patch!r}, not a list of numbers", REPAIR)
    return ModelInfo(
        family="helios",
        pipeline=index["_class_name"],
        architecture=helios_architecture(index),
        # One model does all three: an image or a video only seeds the latent history.
        modes=("t2v", "i2v", "v2v"),
        spatial_scale=value(vae, "scale_factor_spatial", vae_path),
        temporal_scale=value(vae, "scale_factor_temporal", vae_path),
        patch_size=patch[-1],
        patch_size_t=None,
        sample_size=(384, 640, 33),  # the authors' size; 33 frames is one chunk
        fixed_size=False,
        max_text_tokens=512,  # UMT5's length in training; diffusers' Helios default (CogVideoX: 226)
        pyramid_stages=value(scheduler, "stages", scheduler_path) if pyramid and "stages" in scheduler else 1,
        attention_heads=value(transformer, "num_attention_heads", transformer_path)
        if "num_attention_heads" in transformer
        else 0,
        tile_pixels=256 * 256,  # diffusers' Wan VAE tile
        call_latent_frames=CHUNK_LATENT_FRAMES + HISTORY_LATENT_FRAMES,
        held_latent_frames=LATENT_WINDOW,
        text_in_sequence=False,
        vae_fp32=True,
        guidance_batched=False,  # the pipeline runs the conditional, then the unconditional branch
    )
