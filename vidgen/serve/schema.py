"""What `POST /v1/videos` takes (JSON or a multipart form, OpenAI's fields and vidgen's beside them) and
the video object every endpoint answers with.

Only the shape is checked here (types, the command line's bounds on numbers and text); whether the
model can make the video is checked by the same functions as the CLI's (vidgen.serve.plans).
"""

import math
from dataclasses import dataclass
from typing import Any

from vidgen.serve.errors import ApiError
from vidgen.serve.store import Job
from vidgen.ui.live_prompts import MAX_LINE_BYTES

# A prompt (or a steering line) is read up to the length `vidgen stream --live` reads a typed line.
MAX_PROMPT_BYTES = MAX_LINE_BYTES
MAX_SEED = 2**64 - 1  # torch's generator takes 64 bits
# The bounds vidgen.cli.options declares for --seed and --steps (serve sits below the CLI).
BOUNDS = {"seed": (0, MAX_SEED), "steps": (1, 1000)}

TEXT_FIELDS = ("prompt", "model", "negative_prompt")
INT_FIELDS = ("seed", "steps", "frames")
FLOAT_FIELDS = ("guidance",)
FIELDS = (*TEXT_FIELDS, *INT_FIELDS, *FLOAT_FIELDS, "seconds", "size", "stream", "input_reference")


@dataclass(frozen=True)
class VideoRequest:
    prompt: str
    model: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    frames: int | None = None
    seconds: float | None = None
    height: int | None = None
    width: int | None = None
    stream: bool = False


def parse_request(fields: dict[str, Any]) -> VideoRequest:
    """The request's fields (an uploaded file's field left out), typed and bounded; raises ApiError 400."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ApiError(
            400,
            f"unknown field '{unknown[0]}' (fields: {', '.join(FIELDS)})",
            "unknown_parameter",
            unknown[0],
        )
    values: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        if fields.get(name) is not None:
            values[name] = _text(name, fields[name])
    if "prompt" not in values or not values["prompt"].strip():
        raise ApiError(
            400, "the prompt is empty (send a prompt field)", "missing_required_parameter", "prompt"
        )
    for name in INT_FIELDS:
        if fields.get(name) is not None:
            values[name] = _integer(name, fields[name])
    for name in FLOAT_FIELDS:
        if fields.get(name) is not None:
            values[name] = _number(name, fields[name])
    if fields.get("seconds") is not None:
        values["seconds"] = _seconds(fields["seconds"])
    if fields.get("size") is not None:
        values["width"], values["height"] = _size(fields["size"])
    if fields.get("stream") is not None:
        values["stream"] = _flag("stream", fields["stream"])
    _check_bounds(values)
    return VideoRequest(**values)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string", "invalid_type", name)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PROMPT_BYTES:
        raise ApiError(
            400, f"{name} is longer than {MAX_PROMPT_BYTES} bytes", "string_above_max_length", name
        )
    return value


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ApiError(400, f"{name} must be a whole number", "invalid_type", name)
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not '{value}'", "invalid_type", name) from None


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(400, f"{name} must be a number", "invalid_type", name)
    try:
        return float(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, not '{value}'", "invalid_type", name) from None


def _seconds(value: Any) -> float:
    """OpenAI's clients send seconds as a string ("4"); a number is taken too."""
    seconds = _number("seconds", value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ApiError(
            400, f'seconds {value} is not a positive duration (e.g. "4")', "invalid_value", "seconds"
        )
    return seconds


def _size(value: Any) -> tuple[int, int]:
    """ "WIDTHxHEIGHT", as OpenAI's size reads."""
    parts = value.lower().split("x") if isinstance(value, str) else []
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ApiError(400, f"size '{value}' is not WIDTHxHEIGHT (e.g. \"720x480\")", "invalid_value", "size")
    return int(parts[0]), int(parts[1])


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise ApiError(400, f"{name} must be true or false", "invalid_type", name)


def _check_bounds(values: dict[str, Any]) -> None:
    """The bounds the command line's options declare (--seed, --steps); the rest (sizes, frames,
    guidance, seconds) are checked by vidgen.validate.limits, as for the CLI."""
    for name, (low, high) in BOUNDS.items():
        value = values.get(name)
        if value is None:
            continue
        if value < low:
            raise ApiError(400, f"--{name} {value} is too small (at least {low})", "invalid_value", name)
        if value > high:
            raise ApiError(400, f"--{name} {value} is too large (at most {high})", "invalid_value", name)


def video_object(job: Job) -> dict[str, Any]:
    """The job as OpenAI's Video object, and vidgen's `stream` beside it."""
    video = {
        "id": job.id,
        "object": "video",
        "status": job.status,
        "progress": job.progress,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "model": job.model,
        "prompt": job.prompt,
        "seconds": job.seconds,
        "size": job.size,
        "stream": job.stream,
        "error": None,
    }
    if job.status == "failed":
        video["error"] = {"code": job.error_code or "failed", "message": job.error_message or ""}
    return video


def seconds_text(frames: int, fps: int) -> str:
    """A video's length as OpenAI writes seconds: "4", or "1.38" where it is not whole."""
    return f"{frames / fps:.2f}".rstrip("0").rstrip(".")
