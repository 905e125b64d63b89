"""Wan 2.1 text-to-video, composed from the stages: text -> denoise -> decode.

For a given model folder, request and seed the frames equal those of diffusers' WanPipeline with
`generator=torch.Generator("cpu").manual_seed(seed)`: the one random draw (the initial noise, in
float32) happens on the CPU generator in the same shape, the latents stay float32 between steps, and
the guidance branches run one after the other (conditional first). Latents are [B, C, F, H, W].
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
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
from vidgen.families.wan.model import WanTransformer3DModel
from vidgen.runtime.levers import compile_stage, reset_step_cache, step_cache_context
from vidgen.runtime.parallel import outcome_speaker
from vidgen.stages import vae as vae_stage
from vidgen.stages import wan_vae
from vidgen.stages.text import TextCache, encode_prompts, truncation_warning
from vidgen.stages.umt5_text import encode_prompt
from vidgen.weights import loading

SCHEDULERS = {cls.__name__: cls for cls in (UniPCMultistepScheduler, FlowMatchEulerDiscreteScheduler)}


@dataclass
class Wan:
    """A loaded Wan 2.1 text-to-video folder: its parts, each where `runtime.offload` put it."""

    folder: Path
    tokenizer: object
    text_encoder: nn.Module
    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan  # always float32, as diffusers' Wan examples load it
    scheduler: UniPCMultistepScheduler | FlowMatchEulerDiscreteScheduler  # a template: copied per run
    park: str | torch.device = "cpu"  # where stage models wait off the device (tests use "meta")


def load(folder: Path, runtime: Runtime) -> Wan:
    """Load every part of a diffusers-format Wan 2.1 T2V folder (safetensors only) for `runtime`."""
    folder = Path(folder)
    loading.model_index(folder)  # a clear error for a folder that is not a model
    return Wan(
        **load_parts(folder, runtime, WanTransformer3DModel, AutoencoderKLWan, torch.float32, SCHEDULERS)
    )


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
    reset_step_cache(model.transformer)  # nothing cached from an earlier video
    progress = compile_stage(progress, model.transformer)
    guided = request.guidance > 1.0  # diffusers' rule: guidance 1 (or less) runs one branch

    with _stage("text", progress, result, runtime):
        positive, negative = _text_embeddings(model, request, runtime, text_cache, guided, result.warnings)

    scheduler = _scheduler(model, request)
    scheduler.set_timesteps(request.steps, device=runtime.device)
    timesteps = scheduler.timesteps
    scheduler.set_begin_index(0)
    latents = _noise(model, request, runtime, generator)
    reset_step_cache(model.transformer, timesteps)

    with (
        _stage("denoise", progress, result, runtime, total=len(timesteps)),
        loading.on_device(model.transformer, runtime, model.park),
    ):
        for t in timesteps:
            prediction = _predict(model.transformer, latents, t, positive, "cond")
            if guided:
                unconditional = _predict(model.transformer, latents, t, negative, "uncond")
                prediction = unconditional + request.guidance * (prediction - unconditional)
            latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
            progress.advance(1)

    if not outcome_speaker():  # under torchrun rank 0 alone decodes (every rank holds the same latents)
        return result
    with _stage("decode", progress, result, runtime):
        vae = model.vae
        vae_stage.set_tiling(vae, runtime.vae_tiling)
        with loading.on_device(vae, runtime, model.park):
            result.frames = wan_vae.decode_frames(vae, latents, wan_vae.video_processor(vae), runtime.device)
    return result


def _predict(
    transformer: nn.Module, latents: torch.Tensor, t: torch.Tensor, text: torch.Tensor, branch: str
) -> torch.Tensor:
    """One transformer call on the float32 latents cast to the transformer's dtype; its own step-cache
    state per guidance branch."""
    with step_cache_context(transformer, branch):
        return transformer(
            hidden_states=latents.to(transformer.dtype),
            timestep=t.expand(latents.shape[0]),
            encoder_hidden_states=text,
            return_dict=False,
        )[0]


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
    """Gaussian noise [1, C, F', h, w] in float32, drawn on the CPU generator whatever the device."""
    config = model.vae.config
    spatial, temporal = config.scale_factor_spatial, config.scale_factor_temporal
    shape = (
        1,
        model.transformer.config.in_channels,
        (request.frames - 1) // temporal + 1,
        request.height // spatial,
        request.width // spatial,
    )
    return randn_tensor(shape, generator=generator, device=torch.device(runtime.device), dtype=torch.float32)


@contextmanager
def _stage(
    name: str,
    progress: Progress,
    result: Result,
    runtime: Runtime,
    total: int | None = None,
) -> Iterator[None]:
    """Reports the stage to `progress` and records its wall time in `result.timings`."""
    progress.start_stage(name, total)
    start = time.perf_counter()
    yield
    if torch.device(runtime.device).type == "cuda":
        torch.cuda.synchronize()  # CUDA runs ahead of Python: wait, or the time lands in the next stage
    result.timings[name] = time.perf_counter() - start
    progress.end_stage()
