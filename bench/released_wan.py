"""The seven released Wan checkpoints as folders of their configs and header-only safetensors files: all
that vidgen's memory planner reads of a downloaded model, without the 29 to 126 GB of weights.

The transformer configs are the presets' own `[transformer]` tables; the rest (the text encoder, the
VAEs, CLIP, model_index.json's entries) is below. Each weight file has the released tensors' names and
shapes and a hole for their data (a sparse file), so it is sized as a whole one and weighs nothing on
disk. bench/wan_memory.py prints the plans from these folders; tests/memory/test_wan_plan.py checks them.
"""

import json
from pathlib import Path

import torch

from vidgen.families.wan.tiny import A14B_BOUNDARY, I2V_A14B_BOUNDARY
from vidgen.weights.presets import PRESET_DIR, load_preset

# UMT5-XXL's encoder (5.7 billion parameters), every Wan's text encoder.
UMT5_XXL = dict(
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    feed_forward_proj="gated-gelu",
)  # fmt: skip
# CLIP ViT-H/14, as the Wan 2.1 I2V folders' image_encoder/config.json has it (0.63 billion parameters).
CLIP_VIT_H = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
    patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu",
)  # fmt: skip
# TI2V-5B's Wan 2.2 VAE (its vae/config.json, where it differs from AutoencoderKLWan's defaults, which
# are the Wan 2.1 VAE): 48 latent channels, a 2x2 pixel patch before the 8x convolutions, residual
# blocks and a wider decoder. The latent statistics weigh nothing; neutral ones stand in.
WAN22_VAE = dict(
    base_dim=160, decoder_base_dim=256, z_dim=48, in_channels=12, out_channels=12, patch_size=2,
    scale_factor_spatial=16, is_residual=True, latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
)  # fmt: skip

# preset -> its folder's model_index.json class and entries beyond the transformer: `boundary_ratio`
# (two experts), `expand_timesteps` (TI2V), a CLIP image encoder, the Wan 2.2 VAE.
I2V_21 = dict(pipeline="WanImageToVideoPipeline", image_encoder=True)
RELEASED_FOLDERS: dict[str, dict] = {
    "wan2.1-t2v-1.3b": dict(pipeline="WanPipeline"),
    "wan2.1-t2v-14b": dict(pipeline="WanPipeline"),
    "wan2.1-i2v-14b-480p": I2V_21,
    "wan2.1-i2v-14b-720p": I2V_21,
    "wan2.2-t2v-a14b": dict(pipeline="WanPipeline", boundary_ratio=A14B_BOUNDARY),
    "wan2.2-i2v-a14b": dict(pipeline="WanImageToVideoPipeline", boundary_ratio=I2V_A14B_BOUNDARY),
    "wan2.2-ti2v-5b": dict(pipeline="WanPipeline", expand_timesteps=True, vae=WAN22_VAE),
}


def released_models(name: str) -> dict[str, torch.nn.Module]:
    """The released `name`'s models on the meta device (no memory): component -> model; a second
    expert, where there is one, is the first again (the same shapes)."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    from vidgen.models import WanTransformer3DModel

    spec = RELEASED_FOLDERS[name]
    preset = load_preset(PRESET_DIR / f"{name}.toml")
    with torch.device("meta"):
        transformer = WanTransformer3DModel(**dict(preset.transformer or ()))
        models = {
            "text_encoder": UMT5EncoderModel(UMT5Config(**UMT5_XXL)),
            "transformer": transformer,
            "vae": AutoencoderKLWan(**spec.get("vae", {})),
        }
        if "boundary_ratio" in spec:
            models["transformer_2"] = transformer
        if spec.get("image_encoder"):
            models["image_encoder"] = CLIPVisionModel(CLIPVisionConfig(**CLIP_VIT_H))
    return models


def write_released(folder: Path, name: str) -> Path:
    """Write the released `name`'s folder (configs and header-only weights) into `folder`; returns it."""
    spec = RELEASED_FOLDERS[name]
    index: dict = {"_class_name": spec["pipeline"], "image_encoder": [None, None]}
    for key in ("boundary_ratio", "expand_timesteps"):
        if key in spec:
            index[key] = spec[key]
    for part, model in released_models(name).items():
        (folder / part).mkdir(parents=True, exist_ok=True)
        if part in ("text_encoder", "image_encoder"):  # transformers' models, their weights in bf16 files
            model.config.to_json_file(folder / part / "config.json")
            write_header_only(folder / part / "model.safetensors", model)
            index[part] = ["transformers", type(model).__name__]
        else:  # diffusers' models, in float32 files as released
            (folder / part / "config.json").write_text(json.dumps(dict(model.config)))
            write_header_only(folder / part / "diffusion_pytorch_model.safetensors", model, "F32")
            index[part] = ["diffusers", type(model).__name__]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def write_header_only(path: Path, model: torch.nn.Module, dtype: str = "BF16") -> None:
    """A safetensors file of `model`'s tensor names and shapes whose data is a hole (a sparse file): it
    reads as whole, and weighs nothing on disk."""
    header, offset = {}, 0
    for name, tensor in model.named_parameters():  # tied weights once, as save_pretrained writes them
        size = tensor.numel() * (4 if dtype == "F32" else 2)
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.write(len(text).to_bytes(8, "little") + text)
        file.truncate(8 + len(text) + offset)
