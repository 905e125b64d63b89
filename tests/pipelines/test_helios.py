"""Helios' chunk generator against diffusers' own pipelines, on tiny models.

Each parity case runs diffusers' `HeliosPipeline` (base) or `HeliosPyramidPipeline` (mid, distilled)
from the folder with `generator=torch.Generator("cpu").manual_seed(seed)` and `output_type="np"`,
then concatenates what `generate_chunks` yields for the same request:

- with diffusers' transformer swapped in, the frames must equal diffusers' bit for bit (as uint8 and
  as the floats they round from). That proves the pipeline itself: random draw order (posterior
  samples, conditioning-noise sigmas, chunk noise, block noise), preprocessing, history layout,
  guidance, scheduler calls, per-chunk decoding and the final frame cut.
- with vidgen's own transformer (what `load` gives), within float rounding: that transformer matches
  diffusers' to ~1e-6 relative, which on these cases moves at most 1 uint8 level for ~0.005% of
  values. The bound (max 1, >= 99.9% identical, floats within 1e-4) keeps ~10x headroom and still
  fails any real mistake, which changes most pixels by far more than 1/255.

Two chunks (66 frames -> 65) in most cases, so the second chunk reads the first through the history.

diffusers' pyramid pipeline fails on CPU for the released gamma = 1/3 (its Cholesky factor of the
singular block covariance raises; see tests/stages/test_block_noise.py), so its `sample_block_noise`
is replaced by vidgen's never-failing version for these runs. That version draws the same numbers
as diffusers' wherever diffusers succeeds, which the block-noise tests prove.
"""

import gc
import weakref
from dataclasses import dataclass, field, replace

import diffusers
import numpy as np
import pytest
import torch
from parity import Recorder, assert_matches_within_rounding
from PIL import Image

from vidgen.core.errors import VidgenError
from vidgen.core.request import Request, Runtime
from vidgen.families.helios import pipeline as helios
from vidgen.families.helios import tiny as helios_tiny
from vidgen.families.helios.history import LatentHistory
from vidgen.stages import vae as vae_stage
from vidgen.stages.text import TextCache

RNG = np.random.default_rng(0)
# Not the output size: resizing is part of parity.
SMALL_IMAGE = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)
SMALL_VIDEO = RNG.integers(0, 256, (36, 40, 56, 3), dtype=np.uint8)  # 36: 3 frames before the chunk
WIDE_IMAGE = RNG.integers(0, 256, (72, 100, 3), dtype=np.uint8)
WIDE_VIDEO = RNG.integers(0, 256, (34, 64, 128, 3), dtype=np.uint8)

# Pyramid folders need latents that halve twice into whole 2x2 patches: 64x128 is the smallest that
# diffusers runs (at 64x64 its CFG-Zero* `.view` fails on a non-contiguous prediction).
BASE_SIZE = dict(height=32, width=48)
PYRAMID_SIZE = dict(height=64, width=128)
DISTILLED = dict(pyramid_steps=(1, 1, 1), amplify_first_chunk=True)


@dataclass(frozen=True)
class Case:
    variant: str
    request: dict
    settings: dict = field(default_factory=dict)
    end_to_end: bool = False  # also check vidgen's transformer (the slower half of a case)

    def make_request(self) -> Request:
        base = dict(
            mode="t2v",
            prompt="a red panda walks in the snow",
            negative_prompt="blurry, dark",
            seed=7,
            steps=2,
            guidance=5.0,
            frames=66,
            max_sequence_length=512,  # diffusers' Helios default
        )
        return Request(**{**base, **self.request})


CASES = {
    "base-t2v": Case("base", BASE_SIZE, end_to_end=True),
    "base-i2v": Case("base", dict(BASE_SIZE, mode="i2v", image=SMALL_IMAGE)),
    "base-v2v": Case("base", dict(BASE_SIZE, mode="v2v", video=SMALL_VIDEO)),
    # 3 chunks through a 4+2+1 history: the window slides, old latents are dropped; re-anchored on
    # the second chunk's first frame.
    "base-t2v-sliding-history-skip-first": Case(
        "base", dict(BASE_SIZE, frames=99), dict(history_sizes=(4, 2, 1), skip_first_chunk=True)
    ),
    "distilled-t2v-amplified": Case("distilled", dict(PYRAMID_SIZE, guidance=1.0), DISTILLED),
    # One chunk each: what I2V/V2V change across chunks is covered by the base cases, and decoding at
    # this size is the slow part of the suite.
    "distilled-i2v": Case(
        "distilled", dict(PYRAMID_SIZE, mode="i2v", image=WIDE_IMAGE, guidance=1.0, frames=33), DISTILLED
    ),
    "distilled-v2v": Case(
        "distilled", dict(PYRAMID_SIZE, mode="v2v", video=WIDE_VIDEO, guidance=1.0, frames=33), DISTILLED
    ),
    # CFG-Zero* zero-init covers steps 0 and 1 of the first stage; the later stages are guided.
    "mid-t2v-cfg-zero-star": Case("mid", PYRAMID_SIZE, dict(pyramid_steps=(2, 1, 1)), end_to_end=True),
}


@pytest.fixture(scope="module")
def tiny_helios(tmp_path_factory):
    """variant -> folder of a tiny Helios model ("base", "mid", "distilled"), built once."""
    root = tmp_path_factory.mktemp("tiny-helios")
    built = {}

    def folder(variant: str):
        if variant not in built:
            built[variant] = helios_tiny.build_tiny_helios(root / variant, variant=variant)
        return built[variant]

    return folder


def diffusers_frames(folder, request: Request, settings: helios.HeliosSettings) -> np.ndarray:
    """Float frames [F, H, W, 3] in [0, 1] from diffusers' pipeline for the request."""
    pipe = diffusers.DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    inputs = dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        guidance_scale=request.guidance,
        height=request.height,
        width=request.width,
        num_frames=request.frames,
        max_sequence_length=request.max_sequence_length,
        history_sizes=list(settings.history_sizes),
        num_latent_frames_per_chunk=settings.chunk_latent_frames,
        keep_first_frame=settings.keep_first_frame,
        is_skip_first_chunk=settings.skip_first_chunk,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(request.seed),
    )
    if isinstance(pipe, diffusers.HeliosPyramidPipeline):
        inputs.update(
            pyramid_num_inference_steps_list=list(settings.pyramid_steps),
            is_amplify_first_chunk=settings.amplify_first_chunk,
            use_zero_init=settings.zero_init,
            zero_steps=settings.zero_steps,
        )
    else:
        inputs.update(num_inference_steps=request.steps)
    if request.mode == "i2v":
        inputs.update(image=Image.fromarray(request.image))
    if request.mode == "v2v":
        inputs.update(video=[Image.fromarray(frame) for frame in request.video])
    return pipe(**inputs).frames[0]


def vidgen_frames(model, request, settings, monkeypatch, **kwargs) -> tuple[list[np.ndarray], np.ndarray]:
    """(the uint8 chunks generate_chunks yields, the float frames they were rounded from)."""
    floats = []
    to_uint8 = vae_stage.to_uint8

    def recording_to_uint8(frames):
        floats.append(frames)
        return to_uint8(frames)

    monkeypatch.setattr(vae_stage, "to_uint8", recording_to_uint8)
    chunks = list(helios.generate_chunks(model, request, settings, Runtime(), **kwargs))
    monkeypatch.setattr(vae_stage, "to_uint8", to_uint8)
    return chunks, np.concatenate(floats)[: sum(len(chunk) for chunk in chunks)]


def with_diffusers_transformer(model: helios.Helios) -> helios.Helios:
    transformer = diffusers.HeliosTransformer3DModel.from_pretrained(model.folder, subfolder="transformer")
    return replace(model, transformer=transformer.eval())


@pytest.mark.parametrize("name", list(CASES))
def test_chunks_concatenate_to_the_diffusers_video(name, tiny_helios, never_failing_block_noise, monkeypatch):
    case = CASES[name]
    folder = tiny_helios(case.variant)
    request, settings = case.make_request(), helios.HeliosSettings(**case.settings)
    reference = diffusers_frames(folder, request, settings)
    model = helios.load(folder, Runtime())
    plan = helios.chunk_plan(model, request, settings)
    assert reference.shape[0] == plan.total_frames

    # The pipeline alone: with diffusers' transformer, nothing may differ.
    chunks, exact = vidgen_frames(with_diffusers_transformer(model), request, settings, monkeypatch)
    assert [len(chunk) for chunk in chunks] == [plan.frames_in(i) for i in range(plan.chunks)]
    assert np.array_equal(exact, reference)
    assert np.array_equal(np.concatenate(chunks), (reference * 255).round().astype(np.uint8))

    if case.end_to_end:  # vidgen's transformer: within float rounding (see the module docstring)
        chunks, floats = vidgen_frames(model, request, settings, monkeypatch)
        assert_matches_within_rounding(np.concatenate(chunks), floats, reference)


def test_progress_reports_each_chunk_with_its_steps(tiny_helios, monkeypatch):
    model = helios.load(tiny_helios("distilled"), Runtime())
    request = replace(CASES["distilled-i2v"].make_request(), frames=66)
    progress = Recorder()
    # Decoding is not what this test is about, and is the slow part at this size.
    monkeypatch.setattr(helios.wan_vae, "decode_frames", lambda *args: np.zeros((33, 64, 128, 3), np.uint8))
    list(helios.generate_chunks(model, request, helios.HeliosSettings(**DISTILLED), Runtime(), progress))
    # The amplified first chunk takes twice the 3 pyramid steps.
    assert progress.events == [
        ("start", "text", None),
        ("end",),
        ("start", "encode", None),
        ("end",),
        ("start", "chunk 1/2", 6),
        *[("advance", 1)] * 6,
        ("end",),
        ("start", "chunk 2/2", 3),
        *[("advance", 1)] * 3,
        ("end",),
    ]


def test_stopping_after_a_chunk_parks_the_models_unless_kept(tiny_helios):
    request = replace(CASES["base-t2v"].make_request(), frames=99, steps=1)
    for keep_models, expected in ((False, "meta"), (True, "cpu")):
        model = replace(helios.load(tiny_helios("base"), Runtime()), park="meta")
        runtime = Runtime(offload="model", keep_models=keep_models)
        chunks = helios.generate_chunks(model, request, helios.HeliosSettings(), runtime)
        assert next(chunks).shape == (33, 32, 48, 3)
        chunks.close()
        for part in (model.text_encoder, model.transformer, model.vae):
            assert next(part.parameters()).device.type == expected


def test_generator_keeps_no_decoded_frames_and_a_bounded_history(tiny_helios, monkeypatch):
    windows = []
    append = LatentHistory.append

    def recording_append(self, latents):
        append(self, latents)
        windows.append(self.window.shape[2])

    monkeypatch.setattr(LatentHistory, "append", recording_append)
    model = helios.load(tiny_helios("base"), Runtime())
    request = replace(CASES["base-t2v"].make_request(), frames=99, steps=1)
    chunks = helios.generate_chunks(model, request, helios.HeliosSettings(history_sizes=(4, 2, 1)), Runtime())
    first = weakref.ref(next(chunks))
    for _ in range(2):
        next(chunks)
        gc.collect()
        assert first() is None  # handed over, not kept
    chunks.close()
    assert windows == [4 + 2 + 1] * 3  # 9, 18, then 27 latent frames generated


def test_decoding_beside_the_next_chunk_yields_the_same_chunks(tiny_helios, monkeypatch):
    from deferred_decode import DeferredSideStream

    side = DeferredSideStream()
    monkeypatch.setattr(helios, "_side_stream", lambda runtime: side)
    model = helios.load(tiny_helios("base"), Runtime())
    request = replace(CASES["base-t2v"].make_request(), frames=99, steps=1)
    settings = helios.HeliosSettings()
    in_turn = list(helios.generate_chunks(model, request, settings, Runtime()))
    assert side.started == 0
    beside = list(helios.generate_chunks(model, request, settings, Runtime(), decode_ahead=True))
    assert side.started == 2 and side.most_waiting == 1  # the first chunk decodes in turn, then one waits
    assert [len(chunk) for chunk in beside] == [33, 33, 31]
    assert all(np.array_equal(a, b) for a, b in zip(beside, in_turn, strict=True))


@pytest.mark.parametrize(
    "runtime", [Runtime(), *(Runtime("cuda", offload=o) for o in ("model", "group", "sequential"))]
)
def test_only_cuda_with_every_model_resident_decodes_on_a_side_stream(runtime):
    assert helios._side_stream(runtime) is None  # offload moves weights: decoded in turn


def test_model_and_sequential_offload_give_the_same_frames(tiny_helios):
    request = replace(CASES["base-t2v"].make_request(), steps=1)
    settings = helios.HeliosSettings()
    videos = []
    # "sequential" streams each module's weights through accelerate hooks: it fails if the model reads
    # a weight without calling the module that owns it.
    for offload in ("none", "model", "sequential"):
        runtime = Runtime(offload=offload)
        model = helios.load(tiny_helios("base"), runtime)
        videos.append(np.concatenate(list(helios.generate_chunks(model, request, settings, runtime))))
    assert np.array_equal(videos[0], videos[1]) and np.array_equal(videos[0], videos[2])


def test_prompt_schedule_changes_the_text_at_a_chunk_boundary(tiny_helios):
    model = helios.load(tiny_helios("base"), Runtime())
    calls = []
    model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    request, settings = replace(CASES["base-t2v"].make_request(), steps=1), helios.HeliosSettings()
    cache = TextCache()
    schedule = helios.prompts_by_chunk([request.prompt, "a robot dances at night"])
    first_only = list(helios.generate_chunks(model, request, settings, Runtime(), text_cache=cache))
    scheduled = list(
        helios.generate_chunks(model, request, settings, Runtime(), text_cache=cache, prompts=schedule)
    )
    assert np.array_equal(scheduled[0], first_only[0])
    assert not np.array_equal(scheduled[1], first_only[1])
    assert len(calls) == 3  # prompt and negative once (cached for the second video), then the new prompt


def test_scheduler_overrides_from_a_preset_reach_the_sampler(tiny_helios):
    model = helios.load(tiny_helios("base"), Runtime())
    request = replace(CASES["base-t2v"].make_request(), frames=33, steps=2)
    unshifted = replace(request, scheduler=(("use_dynamic_shifting", False),))
    videos = [
        next(helios.generate_chunks(model, r, helios.HeliosSettings(), Runtime()))
        for r in (request, unshifted)
    ]
    assert not np.array_equal(*videos)
    assert model.scheduler.config.use_dynamic_shifting  # the folder's template is left alone


def test_keep_first_frame_off_runs_where_diffusers_crashes(tiny_helios):
    folder = tiny_helios("base")
    request = replace(CASES["base-t2v"].make_request(), steps=1)
    settings = helios.HeliosSettings(keep_first_frame=False)
    # diffusers 0.42.1 grows the short history after sizing the window it splits.
    with pytest.raises(RuntimeError, match="split_with_sizes"):
        diffusers_frames(folder, request, settings)
    model = helios.load(folder, Runtime())
    frames = np.concatenate(list(helios.generate_chunks(model, request, settings, Runtime())))
    assert frames.shape == (65, 32, 48, 3) and frames.std() > 1


@pytest.mark.parametrize(
    ("variant", "change", "message"),
    [
        ("distilled", dict(height=96, width=128), "multiples of 64"),
        ("distilled", dict(pyramid_steps=(2, 2)), "3 step counts"),
        ("base", dict(height=40), "multiples of 16"),
        ("base", dict(mode="v2v", video=SMALL_VIDEO[:20]), "at least 33 frames"),
        ("base", dict(mode="i2v"), "needs an input image"),
    ],
)
def test_requests_the_model_cannot_run_fail_before_any_work(tiny_helios, variant, change, message):
    model = helios.load(tiny_helios(variant), Runtime())
    settings_change = {k: v for k, v in change.items() if k in helios.HeliosSettings.__dataclass_fields__}
    request_change = {k: v for k, v in change.items() if k not in settings_change}
    size = PYRAMID_SIZE if variant != "base" else BASE_SIZE
    request = Request(**{"mode": "t2v", "prompt": "a cat", "frames": 33, **size, **request_change})
    with pytest.raises(VidgenError, match=message):
        next(helios.generate_chunks(model, request, helios.HeliosSettings(**settings_change), Runtime()))
