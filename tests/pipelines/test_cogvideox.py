"""CogVideoX pipelines against diffusers' own, on tiny models: same folder, prompt, seed -> same frames.

Each case runs diffusers' pipeline from the folder (`generator=torch.Generator("cpu").manual_seed`),
vidgen's `generate` with vidgen's transformer, and vidgen's `generate` with diffusers' transformer
swapped in. The last must equal diffusers bit for bit: that proves the pipeline itself (random draw
order, preprocessing, scaling, padding, guidance, scheduler calls, postprocessing) adds no difference.

The first is held to a bound, because vidgen's transformer matches diffusers' only to float rounding
(~1e-6 relative: a different but equivalent order of operations). Measured on these cases, frame
values (0..1) differ by at most 9e-6, which moves a pixel across a uint8 rounding boundary for about
0.005% of values (never by more than 1). The bound keeps ~10x headroom on both and still fails any
real mistake (a wrong noise draw or scaling changes most pixels by far more than 1/255).
"""

from dataclasses import dataclass, field, replace

import diffusers
import numpy as np
import pytest
import torch
from parity import Recorder, assert_matches_within_rounding
from PIL import Image

from vidgen.core.errors import VidgenError
from vidgen.core.request import Request, Runtime
from vidgen.families.cogvideox import pipeline as cogvideox
from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
from vidgen.stages import vae as vae_stage
from vidgen.stages.text import TextCache
from vidgen.weights import loading

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (72, 100, 3), dtype=np.uint8)  # another size: the resize is part of parity
VIDEO_9 = RNG.integers(0, 256, (9, 40, 52, 3), dtype=np.uint8)
VIDEO_13 = RNG.integers(0, 256, (13, 32, 48, 3), dtype=np.uint8)


@dataclass(frozen=True)
class Case:
    variant: str
    mode: str
    settings: dict = field(default_factory=dict)

    def request(self) -> Request:
        base = dict(
            mode=self.mode,
            prompt="a red panda walks in the snow",
            negative_prompt="blurry, dark",
            seed=7,
            steps=2,
            guidance=6.0,
            # Half the tiny models' trained size: the VAE decode dominates the run time.
            height=32,
            width=48,
            frames=9,
        )
        return Request(**{**base, **self.settings})


CASES = {
    "t2v-ddim-cfg": Case("t2v", "t2v"),
    "t2v-ddim-no-cfg": Case("t2v", "t2v", dict(guidance=1.0)),
    # 17 frames are 5 latent frames, padded to 6 for patch_size_t 2; the DPM solver draws noise per step.
    "t2v-1.5-dpm-padded-dynamic-cfg": Case("1.5-t2v", "t2v", dict(frames=17, dynamic_cfg=True)),
    # Learned positions fix this model to its trained 64x96 pixels and 9 frames.
    "i2v-learned-positions-dynamic-cfg": Case(
        "i2v", "i2v", dict(image=IMAGE, dynamic_cfg=True, height=64, width=96)
    ),
    "i2v-1.5-ofs-padded": Case("1.5-i2v", "i2v", dict(image=IMAGE, frames=17)),
    # 9 frames are 3 latent frames, also padded.
    "i2v-1.5-invert-scale-latents": Case("1.5-i2v-inverted", "i2v", dict(image=IMAGE)),
    # A preset's scheduler overrides, as the 5b authors sample: DPM with "trailing" timesteps.
    "t2v-scheduler-override": Case(
        "t2v",
        "t2v",
        dict(scheduler=(("_class_name", "CogVideoXDPMScheduler"), ("timestep_spacing", "trailing"))),
    ),
    # 3 steps at strength 0.7 keep the last 2 timesteps.
    "v2v-ddim-strength": Case("t2v", "v2v", dict(video=VIDEO_9, steps=3, strength=0.7)),
    "v2v-1.5-dpm": Case("1.5-t2v", "v2v", dict(video=VIDEO_13, frames=13, steps=3, strength=0.7)),
}


def diffusers_frames(folder, request: Request) -> np.ndarray:
    """Float frames [F, H, W, 3] in [0, 1] from diffusers' pipeline for the request."""
    inputs = dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        use_dynamic_cfg=request.dynamic_cfg,
        height=request.height,
        width=request.width,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(request.seed),
    )
    if request.mode == "v2v":
        # The V2V pipeline loads the same T2V folder.
        pipe = diffusers.CogVideoXVideoToVideoPipeline.from_pretrained(folder)
        inputs.update(video=[Image.fromarray(frame) for frame in request.video], strength=request.strength)
    else:
        pipe = diffusers.DiffusionPipeline.from_pretrained(folder)
        inputs.update(num_frames=request.frames)
    if request.mode == "i2v":
        inputs.update(image=Image.fromarray(request.image))
    if request.scheduler:
        overrides = dict(request.scheduler)
        scheduler_class = getattr(diffusers, overrides.pop("_class_name"))
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **overrides)
    pipe.set_progress_bar_config(disable=True)
    return pipe(**inputs).frames[0]


def vidgen_frames(model, request: Request, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 frames, the float frames they were rounded from) from vidgen's generate."""
    floats = []

    def recording_to_uint8(frames):
        floats.append(frames)
        return to_uint8(frames)

    to_uint8 = vae_stage.to_uint8
    monkeypatch.setattr(vae_stage, "to_uint8", recording_to_uint8)
    frames = cogvideox.generate(model, request, Runtime()).frames
    monkeypatch.setattr(vae_stage, "to_uint8", to_uint8)
    return frames, floats[0]


def with_diffusers_transformer(model: cogvideox.CogVideoX) -> cogvideox.CogVideoX:
    transformer = diffusers.CogVideoXTransformer3DModel.from_pretrained(model.folder, subfolder="transformer")
    return replace(model, transformer=transformer.eval())


@pytest.mark.parametrize("name", list(CASES))
def test_frames_match_diffusers_pipeline(name, tiny_cogvideox, monkeypatch):
    case = CASES[name]
    folder = tiny_cogvideox(case.variant)
    request = case.request()
    reference = diffusers_frames(folder, request)
    model = cogvideox.load(folder, Runtime())

    # The pipeline alone: with diffusers' transformer, nothing may differ.
    _, exact = vidgen_frames(with_diffusers_transformer(model), request, monkeypatch)
    assert exact.shape == reference.shape
    assert np.array_equal(exact, reference)

    # vidgen end to end: within the transformer's float rounding (see the module docstring).
    frames, floats = vidgen_frames(model, request, monkeypatch)
    assert_matches_within_rounding(frames, floats, reference)


def test_i2v_reports_each_stage_its_steps_and_timings(tiny_cogvideox):
    model = cogvideox.load(tiny_cogvideox("i2v"), Runtime())
    progress = Recorder()
    result = cogvideox.generate(
        model, CASES["i2v-learned-positions-dynamic-cfg"].request(), Runtime(), progress
    )
    assert progress.events == [
        ("start", "text", None),
        ("end",),
        ("start", "encode", None),
        ("end",),
        ("start", "denoise", 2),
        ("advance", 1),
        ("advance", 1),
        ("end",),
        ("start", "decode", None),
        ("end",),
    ]
    assert list(result.timings) == ["text", "encode", "denoise", "decode"]
    assert all(seconds > 0 for seconds in result.timings.values())
    assert result.frames.shape == (9, 64, 96, 3) and result.warnings == []


def test_text_cache_skips_the_encoder_for_a_repeated_prompt(tiny_cogvideox):
    model = cogvideox.load(tiny_cogvideox("t2v"), Runtime())
    calls = []
    model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    cache = TextCache()
    request = CASES["t2v-ddim-cfg"].request()
    first = cogvideox.generate(model, request, Runtime(), text_cache=cache)
    assert len(calls) == 2  # prompt and negative prompt
    second = cogvideox.generate(model, replace(request, seed=8), Runtime(), text_cache=cache)
    assert len(calls) == 2 and cache.hits == 2
    assert list(second.timings) == ["text", "denoise", "decode"]
    assert not np.array_equal(first.frames, second.frames)  # the seed still matters


def test_long_prompt_warns_how_many_tokens_were_dropped(tiny_cogvideox):
    model = cogvideox.load(tiny_cogvideox("t2v"), Runtime())
    request = replace(CASES["t2v-ddim-no-cfg"].request(), prompt=" ".join(["cat"] * 299))  # + end token
    result = cogvideox.generate(model, request, Runtime())
    assert result.warnings == ["prompt is 300 tokens; the text encoder reads 226, 74 were dropped"]


@pytest.mark.parametrize("offload, expected", [("model", "meta"), ("none", "cpu")])
def test_stage_models_leave_the_device_after_their_stage_only_under_model_offload(
    tiny_cogvideox, offload, expected
):
    # On a CPU-only machine the device is the CPU, so models are parked on "meta" to make the move visible.
    runtime = Runtime(offload=offload)
    model = replace(cogvideox.load(tiny_cogvideox("t2v"), runtime), park="meta")
    cogvideox.generate(model, CASES["t2v-ddim-no-cfg"].request(), runtime)
    for part in (model.text_encoder, model.transformer, model.vae):
        assert {p.device.type for p in part.parameters()} == {expected}


def test_sequential_offload_gives_the_same_frames(tiny_cogvideox):
    folder = tiny_cogvideox("t2v")
    request = CASES["t2v-ddim-cfg"].request()
    plain = cogvideox.generate(cogvideox.load(folder, Runtime()), request, Runtime())
    runtime = Runtime(offload="sequential")
    model = cogvideox.load(folder, runtime)
    assert next(model.transformer.parameters()).device.type == "meta"  # weights live in accelerate's hooks
    assert np.array_equal(cogvideox.generate(model, request, runtime).frames, plain.frames)


def test_load_builds_vidgen_transformer_and_eval_mode_models(tiny_cogvideox):
    model = cogvideox.load(tiny_cogvideox("1.5-i2v"), Runtime())
    assert type(model.transformer) is CogVideoXTransformer3DModel
    assert not (model.text_encoder.training or model.vae.training or model.transformer.training)
    assert type(model.scheduler).__name__ == "CogVideoXDPMScheduler"


def test_v2v_on_1_5_needs_an_even_number_of_latent_frames(tiny_cogvideox):
    model = cogvideox.load(tiny_cogvideox("1.5-t2v"), Runtime())
    request = CASES["v2v-ddim-strength"].request()  # 9 frames: 3 latent frames
    with pytest.raises(VidgenError, match="even number of latent frames"):
        cogvideox.generate(model, request, Runtime())


def test_v2v_strength_that_leaves_no_step_is_a_user_error(tiny_cogvideox):
    model = cogvideox.load(tiny_cogvideox("t2v"), Runtime())
    request = replace(CASES["v2v-ddim-strength"].request(), strength=0.2)
    with pytest.raises(VidgenError, match="leaves no denoising step"):
        cogvideox.generate(model, request, Runtime())


def test_on_device_parks_under_model_offload_unless_keep_models():
    layer = torch.nn.Linear(2, 2)
    for kept in (Runtime(), Runtime(offload="model", keep_models=True), Runtime(offload="sequential")):
        with loading.on_device(layer, kept, park="meta"):
            pass
        assert layer.weight.device.type == "cpu"
    with loading.on_device(layer, Runtime(offload="model"), park="meta"):
        assert layer.weight.device.type == "cpu"
    assert layer.weight.device.type == "meta"
