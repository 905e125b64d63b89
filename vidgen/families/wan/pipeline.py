"""Wan text-, image- and video-to-video (2.1; 2.2 A14B's two experts; 2.2 TI2V-5B), composed from the
stages: text -> (encode) -> denoise -> decode.

For a given model folder, request and seed the frames equal those of diffusers' WanPipeline,
WanImageToVideoPipeline and WanVideoToVideoPipeline with `generator=torch.Generator("cpu").manual_seed(
seed)`: the one random draw (the initial noise, in float32) happens on the CPU generator in the same
shape, the latents stay float32 between steps, and the guidance branches run one after the other
(conditional first). Latents are [B, C, F, H, W]. Which expert runs which step is `experts.py`'s, the
image conditioning `image.py`'s, the video-to-video start `video.py`'s.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from vidgen.core.errors import VidgenError
from vidgen.core.progress import Progress, Silent
from vidgen.core.request import Request, Result, Runtime
from vidgen.families.parts import load_parts
from vidgen.families.wan import experts, image, video
from vidgen.families.wan.model import WanTransformer3DModel
from vidgen.runtime.levers import compile_stage, ready_transformer, reset_step_cache, step_cache_context
from vidgen.runtime.parallel import outcome_speaker
from vidgen.stages import vae as vae_stage
from vidgen.stages import wan_vae
from vidgen.stages.text import TextCache, encode_prompts, truncation_warning
from vidgen.stages.timing import timed_stage
from vidgen.stages.umt5_text import encode_prompt
from vidgen.weights import loading

SCHEDULERS = {cls.__name__: cls for cls in (UniPCMultistepScheduler, FlowMatchEulerDiscreteScheduler)}


@dataclass
class Wan:
    """A loaded Wan folder: its parts, each where `runtime.offload` put it."""

    folder: Path
    tokenizer: object
    text_encoder: nn.Module
    transformer: WanTransformer3DModel  # Wan 2.2 A14B: the high-noise expert
    vae: AutoencoderKLWan  # always float32, as diffusers' Wan examples load it
    scheduler: UniPCMultistepScheduler | FlowMatchEulerDiscreteScheduler  # a template: copied per run
    park: str | torch.device = "cpu"  # where stage models wait off the device (tests use "meta")
    transformer_2: WanTransformer3DModel | None = None  # Wan 2.2 A14B's low-noise expert
    boundary_ratio: float | None = None  # model_index.json's: where transformer_2 takes over
    expand_timesteps: bool = False  # model_index.json's (TI2V-5B): a timestep per latent token
    image_encoder: nn.Module | None = None  # 2.1 image-to-video: CLIP, which embeds the image(s)
    image_processor: object | None = None  # CLIP's resizing and normalisation

    @property
    def experts(self) -> dict[str, str]:
        """Each transformer part -> the expert `--lora high=/low=` names it ("" for the only one)."""
        return dict(experts.PARTS) if self.boundary_ratio is not None else {"transformer": ""}


@dataclass(frozen=True)
class Start:
    """Where denoising starts, and what the transformer sees besides the latents and the text."""

    latents: torch.Tensor  # [1, C, F', h, w] float32: noise, or the noised video (V2V)
    condition: torch.Tensor | None = None  # I2V: [1, 4 + C, F', h, w], beside the latents on the channels
    image_embeds: torch.Tensor | None = None  # 2.1 I2V: CLIP states [1 or 2, I, D], transformer dtype
    first_frame: torch.Tensor | None = None  # TI2V-5B I2V: [1, C, 1, h, w], latent frame 0, kept clean

    def model_input(self, latents: torch.Tensor) -> torch.Tensor:
        """The latents as the transformer takes them: I2V's condition on the channel axis, or TI2V's
        image latent in place of the first frame."""
        if self.first_frame is not None:
            latents = torch.cat([self.first_frame, latents[:, :, 1:]], dim=2)
        return latents if self.condition is None else torch.cat([latents, self.condition], dim=1)


def load(folder: Path, runtime: Runtime) -> Wan:
    """Load every part of a diffusers-format Wan folder (safetensors only) for `runtime`; a two-expert
    folder's `transformer_2` too, made ready as the first is (levers, its own LoRAs); a 2.1 image-to-
    video folder's CLIP image encoder."""
    folder = Path(folder)
    index = loading.model_index(folder)  # a clear error for a folder that is not a model
    ratio = index.get("boundary_ratio")
    expert = experts.HIGH if ratio is not None else ""
    parts = load_parts(
        folder, runtime, WanTransformer3DModel, AutoencoderKLWan, torch.float32, SCHEDULERS, expert
    )
    model = Wan(
        **parts,
        **image.load_image_encoder(folder, runtime),
        boundary_ratio=ratio,
        expand_timesteps=bool(index.get("expand_timesteps")),
    )
    if ratio is not None:
        second = loading.load_diffusers_model(WanTransformer3DModel, folder, "transformer_2", runtime.dtype)
        model.transformer_2 = ready_transformer(second, runtime, experts.LOW)
    return model


@torch.no_grad()
def generate(
    model: Wan,
    request: Request,
    runtime: Runtime,
    progress: Progress = Silent(),
    text_cache: TextCache | None = None,
) -> Result:
    """Generate one video for a validated request; returns uint8 frames [F, H, W, 3] and stage timings."""
    result = Result(frames=np.zeros((0, request.height, request.width, 3), np.uint8))
    generator = torch.Generator("cpu").manual_seed(request.seed)
    for transformer in _transformers(model):
        reset_step_cache(transformer)  # nothing cached from an earlier video
    progress = compile_stage(progress, *_transformers(model))
    # diffusers' rule: guidance 1 (or less) runs one branch, for both experts (it asks only the first's)
    guided = request.guidance > 1.0

    with timed_stage("text", progress, result, runtime):
        positive, negative = _text_embeddings(model, request, runtime, text_cache, guided, result.warnings)

    scheduler = _scheduler(model, request)
    scheduler.set_timesteps(request.steps, device=runtime.device)
    timesteps = scheduler.timesteps
    if request.mode == "v2v":  # the scheduler finds its first step by the timestep, as in diffusers
        timesteps = video.kept_timesteps(scheduler, request)
    else:
        scheduler.set_begin_index(0)
    noise = _noise(model, request, runtime, generator)
    with nullcontext() if request.mode == "t2v" else timed_stage("encode", progress, result, runtime):
        start = _start(model, scheduler, request, runtime, noise, timesteps)
    latents = start.latents
    clean_first = start.first_frame is not None
    boundary = experts.boundary_timestep(model.boundary_ratio, scheduler.config.num_train_timesteps)
    # diffusers' default for the second expert's guidance: the first's
    guidance_2 = request.guidance if request.guidance_2 is None else request.guidance_2
    stretches = experts.stretches(
        timesteps, boundary, (model.transformer, model.transformer_2), (request.guidance, guidance_2)
    )

    with timed_stage("denoise", progress, result, runtime, total=len(timesteps)):
        for stretch in stretches:  # under model offload one expert at a time on the device, high first
            transformer = stretch.transformer
            reset_step_cache(transformer, stretch.timesteps)
            with loading.on_device(transformer, runtime, model.park):
                for t in stretch.timesteps:
                    timestep = _timestep(t, latents, model.expand_timesteps, clean_first)
                    prediction = _predict(transformer, latents, timestep, positive, "cond", start)
                    if guided:
                        unconditional = _predict(transformer, latents, timestep, negative, "uncond", start)
                        prediction = unconditional + stretch.guidance * (prediction - unconditional)
                    latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
                    progress.advance(1)

    if clean_first:  # the image's latent frame, as the transformer saw it
        latents = start.model_input(latents)
    if not outcome_speaker():  # under torchrun rank 0 alone decodes (every rank holds the same latents)
        return result
    with timed_stage("decode", progress, result, runtime):
        vae = model.vae
        vae_stage.set_tiling(vae, runtime.vae_tiling)
        with loading.on_device(vae, runtime, model.park):
            result.frames = wan_vae.decode_frames(vae, latents, wan_vae.video_processor(vae), runtime.device)
    return result


def _transformers(model: Wan) -> list[nn.Module]:
    return [
        transformer for transformer in (model.transformer, model.transformer_2) if transformer is not None
    ]


def _timestep(
    t: torch.Tensor, latents: torch.Tensor, per_token: bool, clean_first: bool = False
) -> torch.Tensor:
    """The transformer's timestep input: [B], or with `per_token` (TI2V-5B's expand_timesteps) [B, S],
    one per latent token (S = F' x H'/2 x W'/2 for the 1x2x2 patch), all t in text-to-video; with
    `clean_first` (TI2V-5B's image-to-video) 0 for the first frame's tokens, the image's."""
    batch, _, frames, height, width = latents.shape
    if not per_token:
        return t.expand(batch)
    # As diffusers builds it: a float32 ones-mask times t, so the values and dtype are its own.
    tokens = torch.ones(frames, height // 2, width // 2, dtype=torch.float32, device=latents.device)
    if clean_first:
        tokens[0] = 0.0
    return (tokens * t).flatten().unsqueeze(0).expand(batch, -1)


def _predict(
    transformer: nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    text: torch.Tensor,
    branch: str,
    start: Start,
) -> torch.Tensor:
    """One transformer call on the float32 latents (with the image conditioning) cast to the
    transformer's dtype; its own step-cache state per guidance branch."""
    with step_cache_context(transformer, branch):
        return transformer(
            hidden_states=start.model_input(latents).to(transformer.dtype),
            timestep=timestep,
            encoder_hidden_states=text,
            encoder_hidden_states_image=start.image_embeds,
            return_dict=False,
        )[0]


def _start(
    model: Wan,
    scheduler,
    request: Request,
    runtime: Runtime,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> Start:
    """The starting latents for the request's mode, and image-to-video's conditioning."""
    if request.mode == "v2v":
        return Start(video.noised_video(model.vae, scheduler, request, runtime, noise, timesteps, model.park))
    if request.mode != "i2v":
        return Start(noise)
    if model.expand_timesteps:  # TI2V-5B: the image is the first latent frame, not extra channels
        return Start(noise, first_frame=image.first_frame(model.vae, request, runtime, model.park))
    embeds = None
    if model.image_encoder is not None:  # Wan 2.1; 2.2 A14B takes the image(s) in the latents alone
        frames = image.images(request)
        embeds = image.embed_images(model.image_encoder, model.image_processor, frames, runtime, model.park)
        embeds = embeds.to(model.transformer.dtype)
    return Start(noise, image.condition(model.vae, request, runtime, model.park), embeds)


def _text_embeddings(
    model: Wan,
    request: Request,
    runtime: Runtime,
    cache: TextCache | None,
    guided: bool,
    warnings: list[str],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prompt, negative prompt or None without guidance), each [1, L, D] on the device in the
    transformer's dtype."""
    prompts = {"prompt": request.prompt}
    if guided:
        prompts["negative prompt"] = request.negative_prompt
    encodings = encode_prompts(
        list(prompts.values()),
        model.tokenizer,
        model.text_encoder,
        request.max_sequence_length,
        runtime,
        cache,
        model_key=str(model.folder.resolve()),
        park=model.park,
        encode=encode_prompt,
    )
    for label, encoding in zip(prompts, encodings, strict=True):
        warning = truncation_warning(label, encoding)
        if warning:
            warnings.append(warning)
    embeds = [
        encoding.embeds.to(device=runtime.device, dtype=model.transformer.dtype) for encoding in encodings
    ]
    return embeds[0], embeds[1] if guided else None


def _scheduler(model: Wan, request: Request):
    """A fresh scheduler for this run (they keep per-run state): the folder's, with the request's overrides
    (a preset's `scheduler` table; "_class_name" swaps the class, "flow_shift" the shift)."""
    overrides = dict(request.scheduler)
    name = overrides.pop("_class_name", type(model.scheduler).__name__)
    if name not in SCHEDULERS:
        raise VidgenError(
            f"scheduler {name!r} does not run Wan here", hint=f"use one of {', '.join(sorted(SCHEDULERS))}"
        )
    if name == FlowMatchEulerDiscreteScheduler.__name__ and "flow_shift" in overrides:
        overrides["shift"] = overrides.pop("flow_shift")  # the same shift, under this class's name
    return SCHEDULERS[name].from_config(model.scheduler.config, **overrides)


def _noise(model: Wan, request: Request, runtime: Runtime, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise [1, C, F', h, w] in float32 (C: the VAE's latent channels), drawn on the CPU
    generator whatever the device."""
    config = model.vae.config
    spatial, temporal = config.scale_factor_spatial, config.scale_factor_temporal
    shape = (
        1,
        config.z_dim,
        (request.frames - 1) // temporal + 1,
        request.height // spatial,
        request.width // spatial,
    )
    return randn_tensor(shape, generator=generator, device=torch.device(runtime.device), dtype=torch.float32)
