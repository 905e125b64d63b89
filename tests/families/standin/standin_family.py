"""A third model family that lives only in this folder: the proof that the registry is vidgen's one
switch between families. Its model is a tiny CogVideoX-shaped folder under another pipeline name; its
pipeline draws each frame as a flat colour from the seed and the frame index, so a test can check
that vidgen ran this family's code (and nothing else) from the frames alone."""

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from vidgen.core.family import Family
from vidgen.core.model_info import ModelInfo
from vidgen.core.request import Request, Result
from vidgen.families.cogvideox.info import read_cogvideox_info
from vidgen.families.cogvideox.tiny import build_tiny_cogvideox

PIPELINE = "StandInPipeline"


def build_tiny(folder: Path, variant: str, seed: int) -> Path:
    build_tiny_cogvideox(folder, "t2v", seed)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": PIPELINE}))
    return folder


def read_info(folder: Path) -> ModelInfo:
    info = read_cogvideox_info(folder)
    return replace(info, family="standin", pipeline=PIPELINE, architecture="standin", modes=("t2v",))


def build_request(options, prompt, seed, preset, info, notes, reader=None) -> Request:
    return Request(
        mode="t2v",
        prompt=prompt,
        seed=seed,
        steps=options.steps or preset.steps,
        guidance=preset.guidance,
        height=options.height or preset.height,
        width=options.width or preset.width,
        frames=options.frames or preset.frames,
        fps=options.fps or preset.fps,
    )


def expected_frames(seed: int, frames: int, height: int, width: int) -> np.ndarray:
    shades = (seed * 37 + np.arange(frames) * 20) % 256
    return np.broadcast_to(shades[:, None, None, None], (frames, height, width, 3)).astype(np.uint8)


def load(folder: Path, runtime) -> SimpleNamespace:
    # A one-weight transformer: run.load counts its bytes for the sidecar.
    return SimpleNamespace(transformer=torch.nn.Linear(1, 1), folder=folder)


def generate(model, request: Request, runtime, progress, text_cache=None) -> Result:
    return Result(frames=expected_frames(request.seed, request.frames, request.height, request.width))


PIPELINE_MODULE = SimpleNamespace(load=load, generate=generate)

FAMILY = Family(
    name="standin",
    title="StandIn",
    pipeline_prefixes=("StandIn",),
    classes={
        "text_encoder": ("T5EncoderModel",),
        "transformer": ("CogVideoXTransformer3DModel",),
        "vae": ("AutoencoderKLCogVideoX",),
        "scheduler": ("CogVideoXDDIMScheduler",),
    },
    read_info=read_info,
    build_request=build_request,
    pipeline=lambda: PIPELINE_MODULE,
    build_tiny=build_tiny,
    transformer=lambda: torch.nn.Linear,
)

PRESET = """
name = "tiny-standin"
family = "standin"
source = "tiny:standin/basic"
description = "A stand-in third family for the registry test"
architecture = "standin"
modes = ["t2v"]
dtype = "fp32"
height = 32
width = 48
frames = 5
fps = 8
steps = 2
guidance = 1.0
dynamic_cfg = false
vae_tiling = false
frame_step = 4
max_frames = 9
"""
