"""A request, over the server's defaults, checked into a plan by the CLI's own functions (`prepare`,
`prepare_stream`): the same checks, the same one-line messages, before the job is queued.

The checked options are what the job stores; its worker plans it again from them (the seed fixed), so
a job queued before a restart makes the same video after it. Every path is the server's: the video is
DIR/ID.mp4, an upload DIR/uploads/ID.
"""

import math
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vidgen.app.prepare import prepare
from vidgen.app.prepare_stream import StreamOptions, StreamPlan, prepare_stream
from vidgen.core.errors import VidgenError
from vidgen.validate.common import Model, Options, Plan
from vidgen.validate.limits import check_numbers
from vidgen.weights.presets import Preset

OPTION_NAMES = {field.name for field in fields(Options)}
STREAM_NAMES = {field.name for field in fields(StreamOptions)}
UPLOADS = "uploads"


@dataclass(frozen=True)
class Checked:
    options: dict[str, Any]  # what the job stores: StreamOptions' (stream) or Options' fields
    plan: Plan
    stream: bool


def video_path(folder: Path, job_id: str) -> Path:
    return folder / f"{job_id}.mp4"


def upload_path(folder: Path, job_id: str) -> Path:
    return folder / UPLOADS / job_id


def check_request(
    request: Any, defaults: dict[str, Any], model: Model, folder: Path, job_id: str, image: Path | None
) -> Checked:
    """The request's options over the server's `defaults`, checked; raises VidgenError."""
    given = {
        name: getattr(request, name)
        for name in ("negative_prompt", "seed", "steps", "guidance", "height", "width", "frames")
        if getattr(request, name) is not None
    }
    values = {**defaults, **given, "prompt": request.prompt.strip()}
    values["mode"] = "i2v" if image is not None else "t2v"
    values["image"] = None if image is None else str(image)
    if values.get("seed") is None:  # chosen now, so that a job run again after a restart is the same video
        values["seed"] = secrets.randbelow(2**32)
    if request.stream:
        if request.seconds is not None:
            values["seconds"] = request.seconds
        values["live"] = True  # steerable: POST /v1/videos/{id}/prompts
        options = {key: value for key, value in values.items() if key in STREAM_NAMES}
    else:
        if request.seconds is not None and request.frames is None:
            values["frames"] = frames_for(request.seconds, values.get("fps"), model.preset)
        options = {key: value for key, value in values.items() if key in OPTION_NAMES}
    plan = plan_job(options, request.stream, folder, job_id, overwrite=False)
    return Checked(options, plan, request.stream)


def plan_job(options: dict[str, Any], stream: bool, folder: Path, job_id: str, overwrite: bool) -> Plan:
    """The plan for a job's stored options (a worker passes `overwrite`: the output is the job's own,
    whatever a killed run left of it)."""
    where = {"output": str(video_path(folder, job_id)), "format": "mp4", "overwrite": overwrite}
    if stream:
        return prepare_stream(StreamOptions(**{**options, **where})).plan
    return prepare(Options(**{**options, **where}))


def stream_plan(options: dict[str, Any], folder: Path, job_id: str) -> StreamPlan:
    where = {"output": str(video_path(folder, job_id)), "format": "mp4", "overwrite": True}
    return prepare_stream(StreamOptions(**{**options, **where}))


def frames_for(seconds: float, fps: int | None, preset: Preset) -> int:
    """The frame count for `seconds` that the model's frame rule takes: step * k + 1, rounded up."""
    check_numbers(StreamOptions(mode="t2v", model="", seconds=seconds))  # the CLI's bounds on --seconds
    fps = fps or preset.fps
    step = max(preset.frame_step, 1)
    wanted = seconds * fps
    if wanted > 10**7:
        raise VidgenError(f"--seconds {seconds:g} is too long", "pass fewer seconds")
    return math.ceil(max(wanted - 1, 0) / step) * step + 1
