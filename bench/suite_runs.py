"""The GPU suite's timed runs: one workload through diffusers' pipeline or vidgen's, clocked alike.

Helios: a video of `chunks` chunks; the first (amplified) is the warm-up, the rest are timed from the
end of chunk 1's decode to the end of the last chunk's decode: frames per second, transformer + VAE.
A one-chunk run (the memory table's) is timed from its start, text encoding and weight moves included.
CogVideoX and Wan: `steps` denoising steps; the first is the warm-up (and the compile), the rest give
the time per step; the decode is timed from the last step to the frames. The 50-step video time is
projected as 50 x step + decode (the text encoder's few milliseconds left out); a model built with
fewer blocks than released has its step time scaled by released / built blocks first. A workload
without a projection (the Wan 2.2 memory rows: a step of each expert) is timed from its start.

Clocks wait for the GPU (`torch.cuda.synchronize`) at each mark: one sync per step or chunk, the same
for both pipelines. With vidgen's decode beside the denoise (`decode_ahead`, what `vidgen stream` does
on CUDA) only the first and last marks wait: a sync per chunk would wait for the next chunk's denoising
too, undoing the overlap. Each chunk arrives decoded, so the span (end of chunk 1's decode to end of the
last one's) covers the same work as the other rows'.
"""

import time
import types
from dataclasses import dataclass, field

import numpy as np
import torch

from vidgen.core.request import Request, Runtime
from vidgen.families.cogvideox import pipeline as cogvideox
from vidgen.families.helios import pipeline as helios
from vidgen.families.helios import pyramid
from vidgen.families.wan import pipeline as wan

PROJECTED_STEPS = 50


@dataclass(frozen=True)
class Workload:
    """What one run generates."""

    family: str
    request: Request
    pyramid_steps: tuple[int, ...] = ()  # Helios-Distilled
    projected_steps: int | None = PROJECTED_STEPS  # CogVideoX, Wan; None: the run timed from its start

    @property
    def chunk_frames(self) -> int:
        return 33


@dataclass
class Measure:
    """One run's frames and clock marks."""

    frames: np.ndarray  # uint8 [F, H, W, 3]
    marks: list[float] = field(default_factory=list)  # chunk ends (Helios) or step ends (CogVideoX)
    end: float = 0.0
    start: float = 0.0  # when the run began (a one-chunk Helios run is timed from here)
    peak_bytes: int | None = None
    note: str = ""  # said after the timing detail
    projected_steps: int | None = PROJECTED_STEPS  # the workload's
    layer_scale: float = 1.0  # released over built blocks: a step's time is scaled by it

    def seconds(self, family: str) -> float:
        """Helios: the timed chunks' seconds; CogVideoX, Wan: the projected video's seconds, or the
        whole run's without a projection."""
        if family == "helios":
            return self.marks[-1] - (self.marks[0] if len(self.marks) > 1 else self.start)
        if self.projected_steps is None:
            return self.end - self.start
        return self.projected_steps * self.step_seconds + self.decode_seconds

    @property
    def step_seconds(self) -> float:
        """The mean step after the first, scaled to the released depth."""
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1) * self.layer_scale

    @property
    def decode_seconds(self) -> float:
        return self.end - self.marks[-1]

    def rate(self, family: str, chunk_frames: int) -> float:
        """Helios: frames per second over the timed chunks; CogVideoX: frames per projected second."""
        if family == "helios":
            return chunk_frames * max(1, len(self.marks) - 1) / self.seconds(family)
        return len(self.frames) / self.seconds(family)

    def detail(self, family: str) -> str:
        if family == "helios" and len(self.marks) == 1:
            detail = "1 chunk timed from the start (text, loading moves and warm-up included)"
        elif family == "helios":
            detail = f"{len(self.marks) - 1} chunks timed after 1 warm-up"
        elif self.projected_steps is None:
            detail = f"{len(self.marks)} steps + decode timed from the start (text, weight moves included)"
        else:
            scaled = f" (x{self.layer_scale:g}: released / built blocks)" if self.layer_scale != 1 else ""
            detail = f"step {self.step_seconds:.3f} s{scaled}, decode {self.decode_seconds:.2f} s"
        return f"{detail}; {self.note}" if self.note else detail


class Clock:
    """Marks times after the device has caught up; also vidgen's Progress (a mark per step)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def mark(self, sync: bool = True) -> None:
        if sync:
            _sync()
        self.marks.append(time.perf_counter())

    def advance(self, steps: int = 1) -> None:
        self.mark()

    def start_stage(self, name: str, total: int | None = None) -> None:
        pass

    def end_stage(self) -> None:
        pass

    def note(self, line: str) -> None:
        pass


def diffusers_run(pipe, workload: Workload) -> Measure:
    """diffusers' own pipeline on the workload, with the clock marks described above."""
    request, clock = workload.request, Clock()
    inputs = dict(
        prompt=request.prompt,
        guidance_scale=request.guidance,
        height=request.height,
        width=request.width,
        num_frames=request.frames,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(request.seed),
    )
    restore = None
    if workload.family == "helios":
        inputs.update(
            pyramid_num_inference_steps_list=list(workload.pyramid_steps), is_amplify_first_chunk=True
        )
        restore = _mark_after_decode(pipe.vae, clock)  # the pipeline decodes each chunk as it ends
        if pipe.device.type == "cpu":  # diffusers' float32 Cholesky fails there for the released gamma
            pipe.sample_block_noise = types.MethodType(pyramid.diffusers_sample_block_noise, pipe)
    else:
        inputs.update(
            num_inference_steps=request.steps,
            max_sequence_length=request.max_sequence_length,
            callback_on_step_end=lambda pipe, step, t, tensors: (clock.mark(), tensors)[1],
        )
    _reset_peak()
    start = _now()
    try:
        with torch.no_grad():
            frames = pipe(**inputs).frames[0]
    finally:
        if restore:
            restore()
    _sync()
    end = time.perf_counter()
    frames = (frames * 255).round().astype(np.uint8)
    return Measure(frames, clock.marks, end, start, _peak(), projected_steps=workload.projected_steps)


def _mark_after_decode(vae, clock: Clock):
    decode = vae.decode

    def marked(*args, **kwargs):
        out = decode(*args, **kwargs)
        clock.mark()
        return out

    vae.decode = marked
    return lambda: vars(vae).pop("decode", None)


def vidgen_run(model, workload: Workload, runtime: Runtime, decode_ahead: bool = False) -> Measure:
    """vidgen's pipeline on the workload for a built model (`suite_models.vidgen_model`);
    `decode_ahead`: Helios chunks decoded beside the next one's denoising, as `vidgen stream` does."""
    request = workload.request
    _reset_peak()
    start = _now()
    if workload.family in ("cogvideox", "wan"):
        generate = cogvideox.generate if workload.family == "cogvideox" else wan.generate
        clock, calls = Clock(), _count_expert_calls(model)
        frames = generate(model, request, runtime, progress=clock).frames
        note = _experts_note(model, calls) if calls else ""
        return Measure(frames, clock.marks, _now(), start, _peak(), note, workload.projected_steps)
    settings = helios.HeliosSettings(pyramid_steps=workload.pyramid_steps, amplify_first_chunk=True)
    clock, chunks = Clock(), []
    for frames in helios.generate_chunks(model, request, settings, runtime, decode_ahead=decode_ahead):
        clock.mark(sync=not (decode_ahead and chunks))
        chunks.append(frames)
    if decode_ahead:
        clock.marks[-1] = _now()
    note = ""
    if decode_ahead and helios._side_stream(runtime) is None:
        note = "decoded in turn: no second stream here (CPU or offload)"
    return Measure(np.concatenate(chunks), clock.marks, clock.marks[-1], start, _peak(), note)


def _count_expert_calls(model) -> dict[str, int]:
    """A two-expert Wan's transformer calls per expert, counted as they happen; {} for one expert."""
    if getattr(model, "transformer_2", None) is None:
        return {}
    calls = {"high": 0, "low": 0}

    def counter(name: str):
        def count(module, args) -> None:
            calls[name] += 1

        return count

    model.transformer.register_forward_pre_hook(counter("high"))
    model.transformer_2.register_forward_pre_hook(counter("low"))
    return calls


def _experts_note(model, calls: dict[str, int]) -> str:
    """How many calls each expert ran and how large each is: the peak says whether both were resident."""
    gb = sum(p.numel() * p.element_size() for p in model.transformer.parameters()) / 1024**3
    counts = ", ".join(f"{name} {count}" for name, count in calls.items())
    parked = "; parked on meta, not the CPU" if str(model.park) == "meta" else ""
    return f"transformer calls: {counts}; {gb:.3g} GB of weights per expert{parked}"


def largest_difference(frames: np.ndarray, reference: np.ndarray) -> int:
    """Largest uint8 difference to the reference's frames (compared over the frames both have)."""
    count = min(len(frames), len(reference))
    return int(np.abs(frames[:count].astype(int) - reference[:count].astype(int)).max())


def _now() -> float:
    _sync()
    return time.perf_counter()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak() -> int | None:
    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
