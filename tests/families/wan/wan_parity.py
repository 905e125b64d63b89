"""What the Wan parity tests share: the tiny folders as fixtures, the base request, diffusers' frames for a
request (WanPipeline, WanImageToVideoPipeline or WanVideoToVideoPipeline, computed in the test's own run),
vidgen's frames for it, and the "within one level" comparison (tests/parity.py's bound)."""

import diffusers
import numpy as np
import pytest
import torch
from parity import assert_uint8_matches
from PIL import Image

from vidgen.core.request import Request, Runtime
from vidgen.families.wan import pipeline as wan
from vidgen.stages import vae as vae_stage

# Guided (5.0 > 1), a negative prompt, 3 UniPC steps (its multistep orders 1 to 3), 9 frames (3 latent).
BASE_REQUEST = dict(
    mode="t2v",
    prompt="a cat on a skateboard",
    negative_prompt="blurry",
    seed=7,
    steps=3,
    guidance=5.0,
    height=32,
    width=48,
    frames=9,
    max_sequence_length=512,
)


def request(**changes) -> dict:
    """BASE_REQUEST with `changes`, as keywords of a Request."""
    return {**BASE_REQUEST, **changes}


def tiny_wan(variant: str):
    """A module-scoped fixture of the tiny Wan folder `variant`: `folder = tiny_wan("t2v")`."""

    @pytest.fixture(scope="module")
    def fixture(tiny_folder):
        return tiny_folder("wan", variant)

    return fixture


def loaded_wan():
    """A module-scoped fixture of the module's `folder` loaded by vidgen: `model = loaded_wan()`."""

    @pytest.fixture(scope="module")
    def fixture(folder):
        return wan.load(folder, Runtime())

    return fixture


def diffusers_reference(pipeline_class, request: dict | Request):
    """A module-scoped fixture of diffusers' uint8 frames for `request` on the module's `folder`, from
    `pipeline_class` (computed in this run): `reference = diffusers_reference(diffusers.WanPipeline, R)`."""

    @pytest.fixture(scope="module")
    def fixture(folder):
        return diffusers_frames(pipeline_class, folder, request)

    return fixture


def diffusers_pipeline(pipeline_class, folder):
    pipe = pipeline_class.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_diffusers(pipe, request: dict | Request, **extra) -> np.ndarray:
    """A loaded diffusers pipeline's uint8 frames for the request: its images and video given as PIL
    images as diffusers' examples load them, guidance_scale_2 where the request has a guidance_2, v2v's
    strength; `extra` are further keywords of the call."""
    request = Request(**request) if isinstance(request, dict) else request
    keywords = dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        height=request.height,
        width=request.width,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        generator=torch.Generator("cpu").manual_seed(request.seed),
        output_type="np",
    )
    if request.mode == "v2v":  # the number of frames is the video's
        keywords.update(video=[Image.fromarray(frame) for frame in request.video], strength=request.strength)
    else:
        keywords["num_frames"] = request.frames
    if request.image is not None:
        keywords["image"] = Image.fromarray(request.image)
    if request.last_image is not None:
        keywords["last_image"] = Image.fromarray(request.last_image)
    if request.guidance_2 is not None:
        keywords["guidance_scale_2"] = request.guidance_2
    return vae_stage.to_uint8(pipe(**keywords, **extra).frames[0])


def diffusers_frames(pipeline_class, folder, request: dict | Request, **extra) -> np.ndarray:
    """`pipeline_class` (e.g. diffusers.WanPipeline) loaded from `folder` in float32: its uint8 frames."""
    return run_diffusers(diffusers_pipeline(pipeline_class, folder), request, **extra)


def vidgen_frames(
    model, request: dict | Request, runtime: Runtime | None = None, progress=None
) -> np.ndarray:
    """vidgen's uint8 frames for the request; `model` a loaded Wan, or a folder to load it from."""
    runtime = Runtime() if runtime is None else runtime
    model = model if isinstance(model, wan.Wan) else wan.load(model, runtime)
    request = Request(**request) if isinstance(request, dict) else request
    progress = () if progress is None else (progress,)
    return wan.generate(model, request, runtime, *progress).frames


def with_diffusers_transformers(model, folder, parts=("transformer",)):
    """A copy of the loaded Wan whose transformers (`parts`) are diffusers' own, loaded from `folder`."""
    swapped = {
        part: diffusers.WanTransformer3DModel.from_pretrained(folder, subfolder=part).eval() for part in parts
    }
    return wan.Wan(**{**model.__dict__, **swapped})


def assert_within_one_level(frames: np.ndarray, expected: np.ndarray, shape: tuple) -> None:
    """Frames of `shape` within one uint8 level of diffusers', nearly all identical."""
    assert frames.shape == expected.shape == shape
    assert_uint8_matches(frames, expected)


def forbid_loading(monkeypatch) -> None:
    """Loading a Wan model fails the test: the errors it checks come before."""

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(wan, "load", never)
