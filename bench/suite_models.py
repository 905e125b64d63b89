"""The GPU suite's models: built in memory from configs with random weights, no files, no downloads.

`build(spec, device, dtype)` returns diffusers' pipeline made from components (tokenizer built offline
as vidgen.weights.tiny does, T5/UMT5 text encoder, VAE, scheduler, diffusers' transformer, and Wan 2.2
A14B's second expert) and, from the SAME weight tensors, vidgen's loaded model
(`vidgen.families.cogvideox.pipeline.CogVideoX` / `helios.Helios` / `wan.Wan`) with vidgen's
transformer(s). At the released sizes the compute equals the real checkpoints'; a spec may build fewer
blocks than released (`released_layers`: the suite scales the step time up); `--smoke` builds the
same way from tiny configs.

Weights are made fast and without doubling memory: each model is built with its parameters on the
meta device (buffers stay real), then every parameter is drawn straight on the device in its load
dtype from a seeded generator and assigned. Values are normals of std GAIN / sqrt(fan in), norm
scales one, biases zero, so activations stay finite through 40 layers and the VAE.
"""

import math
from dataclasses import dataclass, field, replace
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
from vidgen.families.wan import experts
from vidgen.families.wan import pipeline as wan
from vidgen.families.wan import tiny as wan_tiny
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
    family: str  # "cogvideox" | "helios" | "wan"
    transformer: dict[str, Any]
    text: dict[str, Any]  # T5Config / UMT5Config fields besides the shared ones
    vae: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    # The released model's blocks when `transformer` builds fewer (its "num_layers"); None: as released.
    released_layers: int | None = None
    # Wan 2.2 A14B: a second expert of the same config (`transformer_2`) from this ratio on.
    boundary_ratio: float | None = None

    @property
    def layer_scale(self) -> float:
        """Released blocks over built blocks: what a step's time is scaled by (1.0 as released)."""
        return self.released_layers / self.transformer["num_layers"] if self.released_layers else 1.0


COGVIDEOX_2B = ModelSpec("cogvideox-2b", "cogvideox", {}, T5_XXL, dict(scaling_factor=1.15258426))
COGVIDEOX_5B = ModelSpec(
    "cogvideox-5b",
    "cogvideox",
    dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True),
    T5_XXL,
    dict(scaling_factor=0.7),
)
HELIOS_DISTILLED = ModelSpec("helios-distilled", "helios", {}, UMT5_XXL)
# The released Wan 2.1 T2V folders' sampler (480p shift); diffusers' class defaults are the 14B config.
WAN_SCHEDULER = wan_tiny.WAN_SCHEDULER
WAN_1_3B = ModelSpec(
    "wan2.1-t2v-1.3b", "wan", dict(num_attention_heads=12, ffn_dim=8960, num_layers=30), UMT5_XXL
)
# 4 of the 14B's 40 blocks (with all 40, each row's 3 guided steps at 81x480x832 would take ~30 s on an
# H100, the case minutes): the step time is scaled by 10; what the blocks leave out (embeddings, output,
# sampler) is under 1% of a step.
WAN_14B = ModelSpec("wan2.1-t2v-14b", "wan", dict(num_layers=4), UMT5_XXL, released_layers=40)
WAN_22_A14B = ModelSpec("wan2.2-t2v-a14b", "wan", dict(num_layers=40), UMT5_XXL, boundary_ratio=0.875)

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
TINY_WAN = ModelSpec("wan2.1-t2v-1.3b (tiny)", "wan", wan_tiny.WAN_TRANSFORMER, TINY_TEXT, tiny.WAN_VAE)
TINY_WAN_14B = ModelSpec(
    "wan2.1-t2v-14b (tiny)",
    "wan",
    dict(wan_tiny.WAN_TRANSFORMER, num_layers=2),  # the first-block cache needs two
    TINY_TEXT,
    tiny.WAN_VAE,
    released_layers=4,
)
TINY_WAN_22 = replace(TINY_WAN, name="wan2.2-t2v-a14b (tiny)", boundary_ratio=WAN_22_A14B.boundary_ratio)


@dataclass
class Built:
    """diffusers' pipeline and the weights vidgen's model is made from (shared, not copied)."""

    spec: ModelSpec
    pipe: Any  # diffusers.CogVideoXPipeline | diffusers.HeliosPyramidPipeline | diffusers.WanPipeline
    dtype: torch.dtype


def build(spec: ModelSpec, device: str, dtype: torch.dtype, seed: int = 0) -> Built:
    """diffusers' pipeline for `spec` with random weights on `device` (transformers and text encoder in
    `dtype`; the Wan VAE (Helios', Wan's) in float32 as vidgen and the authors load it)."""
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
        if spec.family == "wan":
            transformer_cls = diffusers.WanTransformer3DModel
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
    elif spec.family == "wan":
        if spec.boundary_ratio is not None:  # the low-noise expert: same config, its own weights
            parts["transformer_2"] = random_model(
                lambda: transformer_cls(**spec.transformer), device, dtype, generator
            )
        scheduler = diffusers.UniPCMultistepScheduler(**WAN_SCHEDULER)
        pipe = diffusers.WanPipeline(scheduler=scheduler, boundary_ratio=spec.boundary_ratio, **parts)
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


def vidgen_transformer(built: Built, part: str = "transformer") -> nn.Module:
    """vidgen's transformer holding the weights of diffusers' pipeline's `part` (Wan 2.2's second
    expert: "transformer_2"): the same tensors, not copies."""
    from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
    from vidgen.families.helios.model import HeliosTransformer3DModel
    from vidgen.families.wan.model import WanTransformer3DModel

    source = getattr(built.pipe, part)
    classes = {
        "cogvideox": CogVideoXTransformer3DModel,
        "helios": HeliosTransformer3DModel,
        "wan": WanTransformer3DModel,
    }
    cls = classes[built.spec.family]
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
    """vidgen's loaded model (what `cogvideox.load` / `helios.load` / `wan.load` return) from built
    parts, placed for `runtime` as load() places them. Text encoder and VAE default to diffusers'
    pipeline's own; a two-expert Wan gets vidgen's second expert on the pipeline's `transformer_2`."""
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
    if built.spec.family == "wan":
        second = None
        if built.spec.boundary_ratio is not None:
            second = ready_transformer(vidgen_transformer(built, "transformer_2"), runtime, experts.LOW)
        return wan.Wan(**parts, transformer_2=second, boundary_ratio=built.spec.boundary_ratio)
    return helios.Helios(**parts, sampler=helios.Sampler(pyramid=True, distilled=True))
