"""The keys a job may have: each one's type and range, the same as its command-line option's.

A value must have the key's type; text (every CSV cell, or a JSON string) is read as that type first,
so `"seed": "7"` works and `"frames": "nine"` is an error. Batch-wide options (the model and how it
runs) are refused with a hint, as the model loads once per batch.
"""

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any

from vidgen.core.choices import FORMATS
from vidgen.core.errors import VidgenError
from vidgen.validate.limits import FLOW_SHIFT_RANGE, MAX_FRAMES, MAX_GUIDANCE, MAX_SIDE

MODES = ("t2v", "i2v", "v2v")


@dataclass(frozen=True)
class Key:
    """What one job key takes: its type, and the range or choices the command line's option allows."""

    type: type  # str, int, float or bool
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()


KEYS: dict[str, Key] = {
    "name": Key(str),
    "mode": Key(str, choices=MODES),
    "prompt": Key(str),
    "negative_prompt": Key(str),
    "seed": Key(int, 0, 2**64 - 1),
    "steps": Key(int, 1, 1000),
    "guidance": Key(float, 0.0, MAX_GUIDANCE),
    "guidance_2": Key(float, 0.0, MAX_GUIDANCE),
    "flow_shift": Key(float, *FLOW_SHIFT_RANGE),
    "dynamic_cfg": Key(bool),
    "height": Key(int, 16, MAX_SIDE),
    "width": Key(int, 16, MAX_SIDE),
    "frames": Key(int, 1, MAX_FRAMES),
    "fps": Key(int, 1, 240),
    "image": Key(str),
    "last_image": Key(str),
    "video": Key(str),
    "strength": Key(float, 0.0, 1.0),
    "format": Key(str, choices=FORMATS),
}

# The job's LoRAs: one PATH_OR_REPO[:SCALE] or a list of them; "" or [] for none (over --lora).
LORA_KEY = "lora"
# Options that hold for the whole batch, because the model loads once: a job cannot change them.
BATCH_WIDE = (
    "model",
    "device",
    "dtype",
    "offload",
    "quantize",
    "vae_tiling",
    "attention",
    "compile",
    "cache",
)

# Keys that only a job of one mode uses.
MODE_KEYS = {"image": "i2v", "last_image": "i2v", "video": "v2v", "strength": "v2v"}


def normalize_key(key: str) -> str:
    """`negative-prompt` and `negative_prompt` are one key."""
    return key.strip().replace("-", "_")


def read_loras(value: Any) -> tuple[str, ...]:
    """A job's `lora`: a string or a list of strings, each PATH_OR_REPO[:SCALE]."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(item, str) for item in values):
        raise VidgenError(
            f"lora must be text or a list of texts, got {_shown(value)}", "e.g. style.safetensors:0.8"
        )
    return tuple(item.strip() for item in values if item.strip())


def key_problem(key: str) -> str | None:
    """Why `key` cannot be a job key, or None."""
    if key in KEYS or key == LORA_KEY:
        return None
    if key in BATCH_WIDE:
        return (
            f"'{key}' cannot change per job: the batch loads one model and runs it one way "
            f"(pass --{key.replace('_', '-')} on the command line; run another batch for another)"
        )
    if key == "output":
        return "'output' is not a job key: outputs go to OUTDIR/<name>.<ext> (set 'name')"
    close = difflib.get_close_matches(key, KEYS, n=1)
    return f"'{key}' is not a job key" + (f" (did you mean {close[0]}?)" if close else "")


def read_value(key: str, value: Any) -> Any:
    """`value` as the key's type (CSV cells arrive as text), within its range; raises VidgenError."""
    problem = key_problem(key)
    if problem:
        raise VidgenError(problem)
    if key == LORA_KEY:
        return read_loras(value)
    spec = KEYS[key]
    value = _from_text(value, spec.type) if isinstance(value, str) and spec.type is not str else value
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not spec.type:
        raise VidgenError(f"{key} must be {_type_name(spec.type)}, got {_shown(value)}")
    if spec.type is float and not math.isfinite(value):
        raise VidgenError(f"{key} must be a finite number, got {value}")
    if spec.choices and value not in spec.choices:
        raise VidgenError(f"{key} must be one of {', '.join(spec.choices)}, got '{value}'")
    if spec.low is not None and value < spec.low:
        raise VidgenError(f"{key} {value} is too small (at least {spec.low})")
    if spec.high is not None and value > spec.high:
        raise VidgenError(f"{key} {value} is too large (at most {spec.high})")
    return value


def _from_text(text: str, kind: type) -> Any:
    """A CSV cell (or a JSON string) as a number or a boolean; unparseable text is left for the type error."""
    text = text.strip()
    if kind is bool:
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
            text.lower(), text
        )
    try:
        return kind(text)
    except ValueError:
        return text


def _shown(value: Any) -> str:
    """The value as the job file wrote it; JSON has no NaN or Infinity, so those are shown as Python's."""
    return json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)


def _type_name(kind: type) -> str:
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false"}[kind]
