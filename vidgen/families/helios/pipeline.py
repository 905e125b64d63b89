"""Helios: a chunk generator that yields each chunk's decoded frames as soon as they exist.

Helios generates video autoregressively, 9 latent frames (33 video frames) per chunk, each chunk
conditioned on a bounded latent history (long, mid, short) and the first frame. `generate_chunks`
yields one uint8 [F, H, W, 3] array per chunk, so a caller can write, show or stop at any chunk
boundary; the concatenation of what it yields is the whole video, frame for frame what diffusers'
`HeliosPipeline` / `HeliosPyramidPipeline` return for the same folder, seed and settings. Nothing
grows with the video's length: decoded frames are handed over, not kept, and only the latent frames
the model reads are remembered.

The three released checkpoints differ only in how a chunk is sampled, which their model_index.json
says: Helios-Base (single stage, CFG), Helios-Mid (3-stage pyramid, CFG-Zero*), Helios-Distilled
(pyramid with the DMD scheduler, no guidance, optionally twice the steps for the first chunk).
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan, HeliosDMDScheduler, HeliosScheduler
from torch import nn

from vidgen.core.errors import VidgenError
from vidgen.core.progress import Progress, Silent
from vidgen.core.request import Request, Runtime
from vidgen.families.helios import conditioning as helios_conditioning
from vidgen.families.helios.chunks import ChunkPlan, HeliosSettings, plan_chunks, window_frames
from vidgen.families.helios.denoise import (
    Conditioning,
    Guidance,
    denoise_pyramid,
    denoise_single_stage,
    pyramid_step_count,
)
from vidgen.families.helios.history import LatentHistory
from vidgen.families.helios.model import HeliosCache, HeliosTransformer3DModel
from vidgen.families.parts import load_parts
from vidgen.runtime.levers import compile_stage, reset_step_cache
from vidgen.runtime.parallel import outcome_speaker
from vidgen.stages import decode_ahead as decode_ahead_stage
from vidgen.stages import vae as vae_stage
from vidgen.stages import wan_vae
from vidgen.stages.text import TextCache, encode_prompts
from vidgen.stages.umt5_text import encode_prompt
from vidgen.weights import loading

SCHEDULERS = {cls.__name__: cls for cls in (HeliosScheduler, HeliosDMDScheduler)}

# Chunk index -> the text that conditions it: a prompt, or (prompt, weight) pairs whose embeddings are
# blended, weight x embedding summed (the authors' interactive mode interpolates between two prompts
# over a few chunks after a switch).
PromptSchedule = Callable[[int], str | Sequence[tuple[str, float]]]


@dataclass(frozen=True)
class Sampler:
    """How the checkpoint samples a chunk, from its model_index.json."""

    pyramid: bool = False  # HeliosPyramidPipeline: coarse-to-fine stages
    distilled: bool = False  # DMD-distilled: guidance-free
    cfg_zero_star: bool = False


@dataclass
class Helios:
    """A loaded Helios model folder: its parts, each where `runtime.offload` put it."""

    folder: Path
    tokenizer: object
    text_encoder: nn.Module
    transformer: nn.Module
    vae: AutoencoderKLWan
    scheduler: HeliosScheduler | HeliosDMDScheduler  # a template: each run gets a fresh copy
    sampler: Sampler
    park: str | torch.device = "cpu"  # where stage models wait off the device (tests use "meta")

    @property
    def temporal_compression(self) -> int:
        return self.vae.config.scale_factor_temporal

    @property
    def spatial_compression(self) -> int:
        return self.vae.config.scale_factor_spatial


def load(folder: str | Path, runtime: Runtime) -> Helios:
    """Load every part of a diffusers-format Helios folder (safetensors only) for `runtime`.

    The VAE stays float32 whatever `runtime.dtype`, as the authors load it.
    """
    folder = Path(folder)
    sampler = sampler_for(loading.model_index(folder), folder)
    parts = load_parts(folder, runtime, HeliosTransformer3DModel, AutoencoderKLWan, torch.float32, SCHEDULERS)
    return Helios(
        **parts,
        sampler=sampler,
    )


def sampler_for(index: dict, folder: Path) -> Sampler:
    """The chunk sampler a model_index.json asks for."""
    pipeline = index.get("_class_name")
    if pipeline not in ("HeliosPipeline", "HeliosPyramidPipeline"):
        raise VidgenError(
            f"{folder} holds a {pipeline}, not a Helios model", hint="pass a Helios model folder"
        )
    return Sampler(
        pyramid=pipeline == "HeliosPyramidPipeline",
        distilled=bool(index.get("is_distilled", False)),
        cfg_zero_star=bool(index.get("is_cfg_zero_star", False)),
    )


def settings_for(request: Request) -> HeliosSettings:
    """The HeliosSettings a validated request carries (`Request.settings`), defaults for the rest."""
    return HeliosSettings(**dict(request.settings))


def chunk_plan(model: Helios, request: Request, settings: HeliosSettings) -> ChunkPlan:
    """Chunks for `request.frames` (rounded up to whole chunks), and the frames the video ends with."""
    return plan_chunks(
        request.frames, model.temporal_compression, settings.chunk_latent_frames, settings.whole_chunks
    )


def prompts_by_chunk(prompts: Sequence[str]) -> PromptSchedule:
    """A schedule giving chunk k the k-th prompt, and the last prompt to every chunk after them."""
    prompts = list(prompts)
    if not prompts:
        raise VidgenError("a prompt schedule needs at least one prompt")
    return lambda chunk: prompts[min(chunk, len(prompts) - 1)]


def validate(model: Helios, request: Request, settings: HeliosSettings) -> None:
    """Raise VidgenError for a request this model cannot generate, before any work starts."""
    media = {"i2v": request.image, "v2v": request.video}
    if request.mode not in ("t2v", "i2v", "v2v"):
        raise VidgenError(f"unknown mode {request.mode!r}", hint="use t2v, i2v or v2v")
    if request.mode in media and media[request.mode] is None:
        raise VidgenError(f"{request.mode} needs an input {'image' if request.mode == 'i2v' else 'video'}")
    multiple = 16
    if model.sampler.pyramid:
        # Each stage halves the latent grid, and the coarsest must still hold whole 2x2 patches.
        _, ph, pw = model.transformer.config.patch_size
        multiple = model.spatial_compression * 2 ** (len(settings.pyramid_steps) - 1) * max(ph, pw)
        if len(settings.pyramid_steps) != model.scheduler.config.stages:
            raise VidgenError(
                f"{len(settings.pyramid_steps)} pyramid stages given; this model samples in "
                f"{model.scheduler.config.stages}",
                hint=f"give {model.scheduler.config.stages} step counts",
            )
    if request.height % multiple or request.width % multiple:
        raise VidgenError(
            f"{request.width}x{request.height} does not fit this model's latent grid",
            hint=f"use a width and height that are multiples of {multiple}",
        )
    if len(settings.history_sizes) != 3 or min(settings.history_sizes) < 1:
        raise VidgenError("history sizes must be three positive numbers (long, mid, short latent frames)")
    steps = settings.pyramid_steps if model.sampler.pyramid else (request.steps,)
    if min(steps) < 1 or settings.chunk_latent_frames < 1:
        raise VidgenError("steps and latent frames per chunk must be at least 1")
    window = chunk_plan(model, request, settings).window_frames
    if request.mode == "v2v" and len(request.video) < window:
        raise VidgenError(
            f"the input video has {len(request.video)} frames; Helios reads whole chunks of {window}",
            hint=f"give a video of at least {window} frames",
        )


@torch.no_grad()
def generate_chunks(
    model: Helios,
    request: Request,
    settings: HeliosSettings,
    runtime: Runtime,
    progress: Progress = Silent(),
    text_cache: TextCache | None = None,
    prompts: PromptSchedule | None = None,
    decode_ahead: bool = False,
) -> Iterator[np.ndarray]:
    """Yield each chunk's new frames, uint8 [F, H, W, 3], for a validated request.

    `prompts` may change the text at chunk boundaries (default: `request.prompt` throughout). Closing
    the generator early parks the models as finishing does. Distilled models ignore `request.guidance`
    (diffusers warns that it does, then applies it anyway when > 1; its authors sample at 1.0).
    `decode_ahead` (`vidgen stream`): on CUDA, decode each chunk on a second stream while the next
    one denoises (vidgen.stages.decode_ahead); a chunk is then yielded once the next one is queued.
    """
    validate(model, request, settings)
    progress = compile_stage(progress, model.transformer)
    plan = chunk_plan(model, request, settings)
    generator = torch.Generator("cpu").manual_seed(request.seed)
    guidance = _guidance(model.sampler, request, settings)
    sampler = _ChunkSampler(model, request, settings, guidance, generator)
    text = _ChunkText(model, request, runtime, guidance, text_cache, prompts or (lambda _: request.prompt))
    processor = wan_vae.video_processor(model.vae)
    vae_stage.set_tiling(model.vae, runtime.vae_tiling)

    with ExitStack() as held:
        if runtime.offload != "model":
            # Held for the whole video: moving 14B weights per chunk would cost more than the chunk.
            held.enter_context(loading.on_device(model.transformer, runtime, model.park))
            held.enter_context(loading.on_device(model.vae, runtime, model.park))
        progress.start_stage("text")
        text.at(0)
        progress.end_stage()
        history = _start_history(model, request, settings, runtime, generator, processor, progress)

        def stepped() -> None:
            progress.advance(1)

        def denoised() -> Iterator[tuple[int, torch.Tensor]]:
            for chunk in range(plan.chunks):
                conditioning = text.at(chunk)
                progress.start_stage(f"chunk {chunk + 1}/{plan.chunks}", sampler.steps(chunk))
                reset_step_cache(model.transformer)  # each chunk denoises new latents from new noise
                with _stage_device(model.transformer, model, runtime):
                    latents = sampler.sample(chunk, history, conditioning, on_step=stepped)
                _remember(history, latents, settings, chunk)
                yield chunk, latents

        side = _side_stream(runtime) if decode_ahead else None
        decoder = _ChunkDecoder(model, request, runtime, plan, processor, progress, side)
        yield from decode_ahead_stage.in_order(denoised(), decoder.start)


def _side_stream(runtime: Runtime) -> decode_ahead_stage.SideStream | None:
    """A second stream to decode on beside the denoising, where that can work: on CUDA, with every
    model resident. Offload plans decode in turn: "model" and "group" park the VAE between stages
    (they exist because the transformer and the decode do not fit together), and "sequential"'s hooks
    move each layer's weights on the stream that calls it, which a decode beside the transformer would
    race."""
    if torch.device(runtime.device).type != "cuda" or runtime.offload != "none":
        return None
    return decode_ahead_stage.SideStream(runtime.device)


class _ChunkDecoder:
    """Starts each chunk's decode: in turn, or on the side stream once the first chunk (decoded in turn)
    has shown that the device has room for a decode beside a denoise."""

    def __init__(
        self,
        model: Helios,
        request: Request,
        runtime: Runtime,
        plan: ChunkPlan,
        processor,
        progress: Progress,
        side: decode_ahead_stage.SideStream | None,
    ) -> None:
        self.model, self.request, self.runtime, self.plan = model, request, runtime, plan
        self.processor, self.progress, self.side = processor, progress, side
        self.room: bool | None = None  # asked once, after the first chunk
        self.stats = wan_vae.latent_stats(model.vae, runtime.device) if side is not None else None

    def start(self, item: tuple[int, torch.Tensor]) -> decode_ahead_stage.Decoding[np.ndarray]:
        chunk, latents = item
        count = self.plan.frames_in(chunk)
        if not outcome_speaker():  # under torchrun rank 0 alone decodes: the history is latents
            self.progress.end_stage()
            empty = np.zeros((0, self.request.height, self.request.width, 3), np.uint8)
            return decode_ahead_stage.Decoding(lambda: empty)
        if self.side is not None and chunk > 0 and self.room is None:
            self.room = self.side.has_room()
        model, vae, device, stats = self.model, self.model.vae, self.runtime.device, self.stats
        if self.side is None or not self.room:
            with _stage_device(vae, model, self.runtime):
                frames = wan_vae.decode_frames(vae, latents, self.processor, device)
            self.progress.end_stage()
            return decode_ahead_stage.Decoding(lambda: frames[:count])
        pixels = self.side.run(lambda: wan_vae.decode(vae, latents, device, stats), latents, *stats)
        self.progress.end_stage()
        return decode_ahead_stage.Decoding(
            lambda: wan_vae.to_frames(pixels(), self.processor)[:count], in_flight=True
        )


def _guidance(sampler: Sampler, request: Request, settings: HeliosSettings) -> Guidance:
    if sampler.distilled:
        return Guidance(scale=1.0)
    return Guidance(
        scale=request.guidance,
        cfg_zero_star=sampler.cfg_zero_star,
        zero_init_steps=settings.zero_steps if settings.zero_init else None,
    )


def _fresh_scheduler(template, overrides: tuple[tuple[str, object], ...]):
    """A new scheduler (they keep per-run state), with a preset's config overrides applied."""
    config = {**template.config, **dict(overrides)}
    cls = SCHEDULERS.get(config.get("_class_name", type(template).__name__), type(template))
    return cls.from_config(config)


class _ChunkText:
    """Each chunk's text conditioning, encoded once per prompt and kept while the prompt stays."""

    def __init__(
        self,
        model: Helios,
        request: Request,
        runtime: Runtime,
        guidance: Guidance,
        cache: TextCache | None,
        schedule: PromptSchedule,
    ) -> None:
        self.model, self.request, self.runtime, self.guidance = model, request, runtime, guidance
        self.cache = TextCache() if cache is None else cache
        self.schedule = schedule
        self.current: tuple[object, Conditioning] | None = None
        # One transformer cache per guidance branch, reused across steps (vidgen's transformer only).
        cached = isinstance(model.transformer, HeliosTransformer3DModel)
        self.caches = (HeliosCache(), HeliosCache()) if cached else (None, None)

    def at(self, chunk: int) -> Conditioning:
        text = self.schedule(chunk)
        key = text if isinstance(text, str) else tuple((prompt, float(weight)) for prompt, weight in text)
        if self.current is None or self.current[0] != key:
            self.current = (key, self._encode(key))
        return self.current[1]

    def _encode(self, text: str | tuple[tuple[str, float], ...]) -> Conditioning:
        blend = ((text, 1.0),) if isinstance(text, str) else text
        prompts = [prompt for prompt, _ in blend]
        if self.guidance.enabled:
            prompts.append(self.request.negative_prompt)
        model = self.model
        encodings = encode_prompts(
            prompts,
            model.tokenizer,
            model.text_encoder,
            self.request.max_sequence_length,
            self.runtime,
            self.cache,
            model_key=str(model.folder),
            park=model.park,
            encode=encode_prompt,
        )
        dtype = model.transformer.dtype
        embeds = [e.embeds for e in encodings]  # [1, L, D] each, on the CPU
        prompt = embeds[0] if isinstance(text, str) else _blended(blend, embeds)
        negative = embeds[-1].to(self.runtime.device, dtype) if self.guidance.enabled else None
        return Conditioning(prompt.to(self.runtime.device, dtype), negative, self.caches)


def _blended(blend: tuple[tuple[str, float], ...], embeds: list[torch.Tensor]) -> torch.Tensor:
    """The weighted sum of the blend's prompt embeddings, in float32 (in bf16 each term would round)."""
    return sum(weight * e.float() for (_, weight), e in zip(blend, embeds[: len(blend)], strict=True))


def _start_history(
    model: Helios,
    request: Request,
    settings: HeliosSettings,
    runtime: Runtime,
    generator: torch.Generator,
    processor,
    progress: Progress,
) -> LatentHistory:
    """The history before the first chunk: empty (T2V), or seeded by the input image or video."""
    height, width = request.height // model.spatial_compression, request.width // model.spatial_compression
    channels = model.transformer.config.in_channels
    seed, prefix = torch.zeros(1, channels, 0, height, width, device=runtime.device), None
    if request.mode != "t2v":
        progress.start_stage("encode")
        with _stage_device(model.vae, model, runtime):
            media = _media_latents(model, request, settings, runtime, generator, processor)
        seed, prefix = media.history, media.prefix
        progress.end_stage()
    return LatentHistory(
        settings.history_sizes, settings.chunk_latent_frames, settings.keep_first_frame, seed, prefix
    )


def _media_latents(
    model: Helios,
    request: Request,
    settings: HeliosSettings,
    runtime: Runtime,
    generator: torch.Generator,
    processor,
) -> helios_conditioning.MediaLatents:
    window = window_frames(model.temporal_compression, settings.chunk_latent_frames)
    noise = (
        helios_conditioning.NoiseRanges(settings.image_noise_sigma, settings.video_noise_sigma)
        if settings.conditioning_noise
        else None
    )
    encode = helios_conditioning.image_latents if request.mode == "i2v" else helios_conditioning.video_latents
    media = request.image if request.mode == "i2v" else request.video
    size = (request.height, request.width)
    return encode(model.vae, processor, media, size, window, generator, runtime.device, noise)


class _ChunkSampler:
    """Samples one chunk's clean latents [1, C, chunk_latent_frames, h, w] the way the model was trained."""

    def __init__(
        self,
        model: Helios,
        request: Request,
        settings: HeliosSettings,
        guidance: Guidance,
        generator: torch.Generator,
    ) -> None:
        self.model, self.request, self.settings = model, request, settings
        self.guidance, self.generator = guidance, generator
        self.scheduler = _fresh_scheduler(model.scheduler, request.scheduler)

    def amplified(self, chunk: int) -> bool:
        # Passed to the scheduler for any pyramid model, as diffusers does; only the DMD one uses it.
        return self.settings.amplify_first_chunk and chunk == 0

    def steps(self, chunk: int) -> int:
        """Transformer steps (each one or two forward passes) the chunk takes, for progress."""
        if not self.model.sampler.pyramid:
            return self.request.steps
        doubled = self.amplified(chunk) and self.model.sampler.distilled
        return pyramid_step_count(self.settings.pyramid_steps, doubled)

    def sample(
        self, chunk: int, history: LatentHistory, conditioning: Conditioning, on_step: Callable[[], None]
    ) -> torch.Tensor:
        model, window = self.model, history.window
        shape = (1, window.shape[1], self.settings.chunk_latent_frames, *window.shape[3:])
        # Drawn on the CPU generator and moved: the same seed gives the same video on any device.
        noise = torch.randn(shape, generator=self.generator, dtype=torch.float32).to(window.device)
        common = (model.transformer, self.scheduler, noise, conditioning, history.inputs(), self.guidance)
        if not model.sampler.pyramid:
            return denoise_single_stage(*common, self.request.steps, self.generator, on_step)
        return denoise_pyramid(
            *common,
            self.settings.pyramid_steps,
            self.generator,
            distilled=model.sampler.distilled,
            amplify=self.amplified(chunk),
            on_step=on_step,
        )


def _remember(history: LatentHistory, latents: torch.Tensor, settings: HeliosSettings, chunk: int) -> None:
    """Add a chunk to the history, taking its first frame as the anchor where diffusers does.

    T2V anchors on the first generated frame; `skip_first_chunk` re-anchors on the second chunk's.
    """
    if settings.keep_first_frame and (
        (chunk == 0 and history.prefix is None) or (settings.skip_first_chunk and chunk == 1)
    ):
        history.prefix = latents[:, :, :1]
    history.append(latents)


def _stage_device(module: nn.Module, model: Helios, runtime: Runtime):
    """Per-stage placement under model offload; otherwise the module is already held for the video."""
    if runtime.offload == "model":
        return loading.on_device(module, runtime, model.park)
    return nullcontext(module)
