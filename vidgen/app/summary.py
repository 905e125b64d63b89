"""The record of one generated video: every setting needed to make it again, and what it cost.

The same dictionary goes into the JSON sidecar, the MP4's comment metadata and `--json`'s output.
"""

import shlex
from pathlib import Path
from typing import Any

from vidgen import __version__
from vidgen.core.request import Runtime
from vidgen.families import registry
from vidgen.validate.common import Plan
from vidgen.validate.runtime import dtype_name
from vidgen.weights.sources import FetchedModel


def summarize(
    plan: Plan, model: FetchedModel, frames: int, timings: dict[str, float], warnings: list[str]
) -> dict[str, Any]:
    """The record of one video; `frames` is how many the output holds."""
    request, runtime = plan.request, plan.runtime
    return {
        "vidgen": __version__,
        "mode": request.mode,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "model": {
            "name": plan.source.spec,
            "kind": plan.source.kind,  # "preset" | "folder" | "hub"
            "preset": plan.preset.name,  # named, or the one whose defaults the model got
            "source": plan.source.location,
            "folder": str(model.folder),
            "revision": model.revision,
        },
        "settings": settings(plan),
        "runtime": {
            "device": runtime.device,
            "dtype": dtype_name(runtime.dtype),
            "offload": runtime.offload,
            "plan": runtime.plan,
            "quantize": runtime.quantize,
            "transformer_bytes": runtime.transformer_bytes,
            "vae_tiling": runtime.vae_tiling,
            **levers(runtime),
        },
        "output": {"path": str(plan.output.path), "format": plan.output.format, "frames": frames},
        "sidecar": str(plan.output.sidecar),
        "timings": {stage: round(seconds, 3) for stage, seconds in timings.items()},
        "warnings": list(warnings),
        "command": command(plan),
    }


def lever_flags(runtime: Runtime) -> list[tuple[str, object]]:
    """The speed levers as command-line flags (name, value; True for a bare flag)."""
    flags: list[tuple[str, object]] = [("attention", runtime.attention)]
    if runtime.compile:
        flags.append(("compile", True))
    if runtime.cache != "none":
        flags.append(("cache", runtime.cache))
    if runtime.cache == "mag" and runtime.mag_source:
        flags.append(("mag-ratios", runtime.mag_source))
    for lora in runtime.loras:  # the file it resolved to, unless it came from the hub by name
        where = lora.path if Path(lora.source).expanduser().exists() else lora.source
        expert = f"{lora.expert}=" if lora.expert else ""  # --lora high=PATH: the expert it went into
        flags.append(("lora", f"{expert}{where}:{lora.scale:g}"))
    return flags


def levers(runtime: Runtime) -> dict[str, Any]:
    """The speed levers a video was made with (the step cache's skipped calls go into `timings`)."""
    cache: dict[str, Any] = {"mode": runtime.cache}
    if runtime.cache != "none":
        cache["threshold"] = runtime.cache_threshold
    values: dict[str, Any] = {"attention": runtime.attention, "compile": runtime.compile, "cache": cache}
    if runtime.loras:
        values["loras"] = [
            {"source": lora.source, "path": lora.path, "scale": lora.scale, "sha256": lora.sha256}
            | ({"expert": lora.expert} if lora.expert else {})
            for lora in runtime.loras
        ]
    if runtime.parallel.world_size > 1:
        values["parallel"] = {**runtime.parallel.as_json(), "plan": runtime.parallel.describe()}
    return values


def settings(plan: Plan) -> dict[str, Any]:
    request = plan.request
    values: dict[str, Any] = {
        "steps": request.steps,
        "guidance": request.guidance,
        **({} if request.guidance_2 is None else {"guidance_2": request.guidance_2}),
        "dynamic_cfg": request.dynamic_cfg,
        "height": request.height,
        "width": request.width,
        "frames": request.frames,
        "fps": request.fps,
        "max_sequence_length": request.max_sequence_length,
        "scheduler": dict(request.scheduler),
    }
    if request.mode == "v2v" and registry.family(plan.preset.family).v2v_strength:
        values["strength"] = request.strength
    values.update(request.settings)  # a family's own settings: Helios' pyramid steps
    values.update(plan.inputs)  # "image" / "last_image" / "video": the input files as given
    return values


def command(plan: Plan) -> str:
    """A `vidgen` command line that makes the same video (given the same model files and inputs)."""
    request = plan.request
    words = [
        "vidgen",
        request.mode,
        "--model",
        plan.source.spec,
        "--prompt",
        request.prompt,
        *(["--negative-prompt", request.negative_prompt] if request.negative_prompt else []),
        *[f"--{name}" if value is True else f"--{name}={value}" for name, value in _flags(plan)],
        "-o",
        str(plan.output.path),
    ]
    return shlex.join(words)


def _flags(plan: Plan) -> list[tuple[str, object]]:
    request, runtime = plan.request, plan.runtime
    flags: list[tuple[str, object]] = [
        ("seed", request.seed),
        ("steps", request.steps),
        ("guidance", request.guidance),
        *([] if request.guidance_2 is None else [("guidance-2", request.guidance_2)]),
        ("dynamic-cfg" if request.dynamic_cfg else "no-dynamic-cfg", True),
        ("height", request.height),
        ("width", request.width),
        ("frames", request.frames),
        ("fps", request.fps),
        ("dtype", dtype_name(runtime.dtype)),
        ("offload", runtime.offload),
        ("quantize", runtime.quantize),
        ("vae-tiling" if runtime.vae_tiling else "no-vae-tiling", True),
        ("format", plan.output.format),
    ]
    shift = dict(request.scheduler).get("flow_shift")
    if shift is not None and registry.family(plan.preset.family).flow_shift:
        flags.append(("flow-shift", shift))  # the preset's or --flow-shift's: the same either way
    flags += lever_flags(runtime)
    flags += [(name.replace("_", "-"), path) for name, path in plan.inputs.items()]
    if plan.source.kind != "preset":  # the settings a folder or repo took, chosen again
        flags.append(("preset", plan.preset.name))
    if request.mode == "v2v" and registry.family(plan.preset.family).v2v_strength:
        flags.append(("strength", request.strength))
    return flags
