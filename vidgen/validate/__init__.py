"""Turn the command line's options into a checked plan, before any weights load.

`common` holds what every command checks (prompt, seed, output, model, mode, size), `runtime` how it
runs (device, precision, offload), and each family its own request rules (`cogvideox`, `helios`);
`stream` plans `vidgen stream`. The modules import only `common` and `runtime`, never each other's
families, so there is no import circle. The Plan that comes out is trusted by everything downstream.
"""

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from vidgen.model_info import ModelInfo
from vidgen.presets import Preset, load_presets
from vidgen.request import Request
from vidgen.sources import parse_model
from vidgen.validate.cogvideox import cogvideox_request
from vidgen.validate.common import (
    InputReader,
    Model,
    Options,
    Output,
    Plan,
    check_mode,
    check_path_text,
    default_output_name,
    plan_output,
    resolve_model,
    resolve_prompt,
    resolve_seed,
)
from vidgen.validate.helios import helios_request
from vidgen.validate.limits import check_frame_count, check_numbers
from vidgen.validate.memory import check_fits
from vidgen.validate.runtime import (
    DTYPES,
    build_runtime,
    check_split,
    dtype_name,
    join_ranks,
    parallel_runtime,
    resolve_device,
    with_loras,
)
from vidgen.validate.stream import StreamOptions, StreamPlan, prepare_stream, stream_mode

__all__ = [
    "DTYPES",
    "InputReader",
    "Model",
    "Options",
    "Output",
    "Plan",
    "StreamOptions",
    "StreamPlan",
    "build_request",
    "build_runtime",
    "with_loras",
    "check_numbers",
    "check_fits",
    "check_mode",
    "check_path_text",
    "default_output_name",
    "dtype_name",
    "prepare",
    "prepare_stream",
    "resolve_device",
    "resolve_model",
    "resolve_seed",
    "stream_mode",
]


def prepare(
    options: Options,
    stdin: TextIO | None = None,
    presets: Mapping[str, Preset] | None = None,
    cache_dir: Path | None = None,
) -> Plan:
    """Check the options against the model's configs and build the plan; raises VidgenError."""
    from vidgen.batch.ranks import Rank  # vidgen.batch imports this package: imported when called

    presets = load_presets() if presets is None else presets
    notes: list[str] = []
    prompt = resolve_prompt(options.prompt_argument, options.prompt, stdin)
    source = parse_model(options.model, presets)
    seed = resolve_seed(options.seed, notes)
    output = plan_output(options.output, options.format, options.overwrite, prompt, seed)
    rank = Rank.from_env()
    device = rank.device(resolve_device(options.device))
    join_ranks(rank, device, (options, prompt))  # the prompt too: stdin may reach one rank only
    model = resolve_model(source, presets, cache_dir, options.preset)
    notes.extend(model.notes)
    check_mode(options.mode, model.info, options.model, presets)
    request = build_request(options, prompt, seed, model.preset, model.info, notes)
    runtime = build_runtime(options, model.preset, device, notes)
    runtime = with_loras(runtime, options.lora, model, notes)
    runtime = parallel_runtime(options, runtime, model.info.attention_heads, request.guidance > 1, rank)
    runtime = replace(runtime, parallel=check_split(runtime.parallel, request, model.info))
    check_fits(request, model.info, model.configs, runtime)
    inputs = {name: path for name in ("image", "video") if (path := getattr(options, name))}
    return Plan(request, runtime, source, model.preset, output, inputs, tuple(notes))


def build_request(
    options: Options,
    prompt: str,
    seed: int,
    preset: Preset,
    info: ModelInfo,
    notes: list[str],
    reader: InputReader | None = None,
) -> Request:
    """The checked Request, by the family's rules (Helios: whole chunks, pyramid stages); `reader`
    reads each input file once across many requests (a batch's jobs)."""
    check_numbers(options)
    family_request = helios_request if info.family == "helios" else cogvideox_request
    request = family_request(options, prompt, seed, preset, info, notes, reader)
    check_frame_count(request.frames)
    return request
