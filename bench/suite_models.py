"""The GPU suite's models: built in memory from configs with random weights, no files, no downloads.

`build(spec, device, dtype)` returns diffusers' pipeline made from components (tokenizer built offline
as vidgen.weights.tiny does, T5/UMT5 text encoder, VAE, scheduler, diffusers' transformer) and, from the SAME
weight tensors, vidgen's loaded model (`vidgen.families.cogvideox.pipeline.CogVideoX` / `helios.Helios`) with
vidgen's transformer. At the released sizes the compute equals the real checkpoints'; `--smoke` builds
the same way from tiny configs.

Weights are made fast and without doubling memory: each model is built with its parameters on the
meta device (buffers stay real), then every parameter is drawn straight on the device in its load
dtype from a seeded generator and assigned. Values are normals of std GAIN / sqrt(fan in), norm
scales one, biases zero, so activations stay finite through 40 layers and the VAE.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from torch import nn

from vidgen.core.request import Runtime
from vidgen.families.cogvideox import pipeline as cogvideox
from vidgen.families.cogvideox import tiny as cogvideox_tiny
from vidgen.families.helios import pipeline as helios
from vidgen.families.helios import tiny as helios_tiny
from vidgen.weights import tiny
from vidgen.weights.loading import place

# Released sizes (diffusers' class defaults are the released configs of CogVideoX-2b, Helios and the
# Wan VAE; MODELS.md lists the rest).
XXL_TEXT = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)
T5_XXL = dict(vocab_size=32128, **XXL_TEXT)
UMT5_XXL = dict(vocab_size=256384, **XXL_TEXT)
# Weights are normal with std GAIN / sqrt(fan in). At 1.0 a random denoiser is chaotic: float
# rounding differences of 1e-6 between two equal implementations grow into different videos over
# Helios' chunks; at 0.35 they stay within a uint8 level while the frames still vary.
GAIN = 0.35
TINY_TEXT = dict(d_model=tiny.TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4)


@dataclass(frozen=True)
class ModelSpec:
    """One model to build: its family and the configs of its parts."""

    name: str
    family: str  # "cogvideox" | "helios"
    transformer: dict[str, Any]
    text: dict[str, Any]  # T5Config / UMT5Config fields besides the shared ones
    vae: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)


COGVIDEOX_2B = ModelSpec("cogvideox-2b", "cogvideox", {}, T5_XXL, dict(scaling_factor=1.15258426))
COGVIDEOX_5B = ModelSpec(
    "cogvideox-5b",
    "cogvideox",
    dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True),
    T5_XXL,
    dict(scaling_factor=0.7),
)
HELIOS_DISTILLED = ModelSpec("helios-distilled", "helios", {}, UMT5_XXL)

TINY_2B = ModelSpec(
    "cogvideox-2b (tiny)",
    "cogvideox",
    dict(cogvideox_tiny.COGVIDEOX_TRANSFORMER, spatial_interpolation_scale=1.875),
    TINY_TEXT,
    cogvideox_tiny.COGVIDEOX_VAE,
)
TINY_5B = ModelSpec(
    "cogvideox-5b (tiny)",
    "cogvideox",
    dict(cogvideox_tiny.COGVIDEOX_TRANSFORMER, use_rotary_positional_embeddings=True),
    TINY_TEXT,
    cogvideox_tiny.COGVIDEOX_VAE,
)
TINY_HELIOS = ModelSpec(
    "helios-distilled (tiny)",
    "helios",
    helios_tiny.HELIOS_TRANSFORMER,
    TINY_TEXT,
    helios_tiny.HELIOS_VAE,
)


@dataclass
class Built:
    """diffusers' pipeline and the weights vidgen's model is made from (shared, not copied)."""

    spec: ModelSpec
    pipe: Any  # diffusers.CogVideoXPipeline | diffusers.HeliosPyramidPipeline
    dtype: torch.dtype


def build(spec: ModelSpec, device: str, dtype: torch.dtype, seed: int = 0) -> Built:
    """diffusers' pipeline for `spec` with random weights on `device` (transformer and text encoder in
    `dtype`; Helios' VAE in float32 as vidgen and the authors load it)."""
    import diffusers
    import transformers

    generator = torch.Generator(device).manual_seed(seed)
    text_config = dict(
        relative_attention_num_buckets=32,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        **spec.text,
    )
    if spec.family == "cogvideox":
        encoder_cls, config_cls = transformers.T5EncoderModel, transformers.T5Config
        transformer_cls, vae_cls = diffusers.CogVideoXTransformer3DModel, diffusers.AutoencoderKLCogVideoX
        vae_dtype, max_length = dtype, 226
    else:
        encoder_cls, config_cls = transformers.UMT5EncoderModel, transformers.UMT5Config
        transformer_cls, vae_cls = diffusers.HeliosTransformer3DModel, diffusers.AutoencoderKLWan
        vae_dtype, max_length = torch.float32, 512
    parts = dict(
        tokenizer=tiny.build_tokenizer(model_max_length=max_length),
        text_encoder=random_model(lambda: encoder_cls(config_cls(**text_config)), device, dtype, generator),
        transformer=random_model(lambda: transformer_cls(**spec.transformer), device, dtype, generator),
        vae=random_model(lambda: vae_cls(**spec.vae), device, vae_dtype, generator),
    )
    if spec.family == "cogvideox":
        scheduler = diffusers.CogVideoXDDIMScheduler(
            timestep_spacing="trailing", prediction_type="v_prediction", rescale_betas_zero_snr=True
        )
        pipe = diffusers.CogVideoXPipeline(scheduler=scheduler, **parts)
    else:
        scheduler = diffusers.HeliosDMDScheduler()
        pipe = diffusers.HeliosPyramidPipeline(scheduler=scheduler, is_distilled=True, **parts)
    pipe.set_progress_bar_config(disable=True)
    return Built(spec, pipe, dtype)


def random_model(make, device: str, dtype: torch.dtype, generator: torch.Generator) -> nn.Module:
    """`make()` with random parameters drawn on `device` in their load dtype, in eval mode.

    Modules the class keeps in float32 get float32, as its from_pretrained does (`kept_in_float32`).
    """
    with init_empty_weights():  # parameters on meta; buffers (rotary, sin-cos tables) computed for real
        model = make()
    keep = kept_in_float32(model, dtype)
    state = {}
    for name, parameter in model.named_parameters():
        kept = keep & set(name.split("."))
        state[name] = _draw(name, parameter.shape, torch.float32 if kept else dtype, device, generator)
    model.load_state_dict(state, strict=False, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()  # T5's encoder.embed_tokens is its `shared` embedding
    if not keep:
        model.to(dtype)  # buffers too, as from_pretrained casts a model without float32 parts
    model.to(device)
    still_empty = [name for name, p in model.named_parameters() if p.is_meta]
    assert not still_empty, f"parameters left without weights: {still_empty[:5]}"
    return model.eval()


def kept_in_float32(model: nn.Module, dtype: torch.dtype) -> set[str]:
    """Module names from_pretrained keeps in float32 when loading in `dtype`: diffusers keeps
    `_keep_in_fp32_modules` for half dtypes; transformers keeps them for float16 only, and
    `_keep_in_fp32_modules_strict` for float16 and bfloat16."""
    if dtype not in (torch.float16, torch.bfloat16):
        return set()
    if hasattr(model, "_keep_in_fp32_modules_strict"):  # a transformers model
        kept = set(model._keep_in_fp32_modules_strict or ())
        return kept | set(model._keep_in_fp32_modules or ()) if dtype == torch.float16 else kept
    return set(getattr(model, "_keep_in_fp32_modules", None) or ())


def _draw(name: str, shape: torch.Size, dtype: torch.dtype, device: str, generator) -> torch.Tensor:
    tensor = torch.empty(shape, dtype=dtype, device=device)
    if len(shape) <= 1:
        # Norm scales one, biases and other vectors zero: a random scale per channel would compound.
        return tensor.fill_(0.0 if name.endswith("bias") or "bias" in name.split(".")[-2:] else 1.0)
    fan_in = math.prod(shape[1:])
    return tensor.normal_(0.0, GAIN / math.sqrt(fan_in), generator=generator)


def vidgen_transformer(built: Built) -> nn.Module:
    """vidgen's transformer holding diffusers' transformer's weights: the same tensors, not copies."""
    from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
    from vidgen.families.helios.model import HeliosTransformer3DModel

    source = built.pipe.transformer
    cls = CogVideoXTransformer3DModel if built.spec.family == "cogvideox" else HeliosTransformer3DModel
    return sharing(lambda: cls.from_config(source.config), source, built.dtype)


def fresh(module: nn.Module) -> nn.Module:
    """A new module of `module`'s class holding its weight tensors: what an offload plan may hook or
    move without touching `module` (the hooks stay on the new one)."""
    if hasattr(module, "from_config"):
        return sharing(lambda: type(module).from_config(module.config), module, module.dtype)
    return sharing(lambda: type(module)(module.config), module, module.dtype)


def sharing(make, source: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`make()` with `source`'s parameters and persistent buffers assigned (shared, not copied), its
    other buffers cast as from_pretrained casts them, all on the device of `source`'s weights."""
    with init_empty_weights():
        model = make()
    state = source.state_dict()
    model.load_state_dict(state, strict=True, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    if not kept_in_float32(model, dtype):
        model.to(dtype)
    return model.to(next(iter(state.values())).device).eval()


def vidgen_model(built: Built, runtime: Runtime, transformer: nn.Module, text_encoder=None, vae=None):
    """vidgen's loaded model (what `cogvideox.load` / `helios.load` return) from built parts, placed
    for `runtime` as load() places them. Text encoder and VAE default to diffusers' pipeline's own."""
    from vidgen.runtime.levers import ready_transformer

    pipe = built.pipe
    parts = dict(
        folder=Path(f"in-memory/{built.spec.name}"),
        tokenizer=pipe.tokenizer,
        text_encoder=place(text_encoder or pipe.text_encoder, runtime),
        transformer=ready_transformer(transformer, runtime),
        vae=place(vae or pipe.vae, runtime),
        scheduler=pipe.scheduler,
    )
    if built.spec.family == "cogvideox":
        return cogvideox.CogVideoX(**parts)
    return helios.Helios(**parts, sampler=helios.Sampler(pyramid=True, distilled=True))
