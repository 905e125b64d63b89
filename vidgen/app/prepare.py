"""Turn the command line's options into a checked plan, before any weights load.

The checks themselves live in `vidgen.validate` (what every command checks, how it runs) and in each
family's rules, which the registry picks; `vidgen.app.prepare_stream` plans `vidgen stream`. The Plan
that comes out is trusted by everything downstream.
"""

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from vidgen.core.errors import VidgenError
from vidgen.core.model_info import ModelInfo
from vidgen.core.request import Request
from vidgen.families import registry
from vidgen.runtime.ranks import Rank
from vidgen.validate.common import (
    NO_PRESET,
    InputReader,
    Model,
    Options,
    Plan,
    check_last_image,
    check_mode,
    check_text,
    chosen_preset,
    describe_settings,
    own_defaults,
    plan_output,
    released_preset,
    resolve_prompt,
    resolve_seed,
    with_flow_shift,
)
from vidgen.validate.limits import check_frame_count, check_numbers
from vidgen.validate.memory import check_fits
from vidgen.validate.runtime import (
    build_runtime,
    check_split,
    join_ranks,
    parallel_runtime,
    resolve_device,
    with_loras,
)
from vidgen.weights.presets import Preset, closest_preset, load_presets
from vidgen.weights.sources import ModelSource, fetch_configs, parse_model

# The input files a request may take, as Options names them (the sidecar records them).
INPUTS = ("image", "last_image", "video")


def resolve_model(
    source: ModelSource,
    presets: Mapping[str, Preset],
    cache_dir: Path | None = None,
    preset_name: str | None = None,
) -> Model:
    """What the model can do and its defaults, from its JSON configs (a hub repo's are kilobytes).

    A folder or repo takes a released preset's settings only when its transformer config is that
    preset's released one; anything else (a fine-tune of another shape, a copied tiny model) runs on
    its own scheduler and sample size. `preset_name` (--preset) chooses whose settings apply; "none"
    keeps the folder's own scheduler.
    """
    configs = fetch_configs(source, registry.WEIGHTS, cache_dir)
    family = registry.detect(configs)
    info = family.read_info(configs)
    notes = [source.note] if source.note else []
    if source.preset is not None and preset_name is None:
        return Model(source, family, info, source.preset, configs, tuple(notes))
    closest = closest_preset(info.architecture, info.modes, presets, family.name)
    if closest is None:  # no preset of its family runs these modes: its defaults come from a preset file
        raise VidgenError(
            f"'{source.spec}' is a {family.title} {info.architecture} model with modes "
            f"{', '.join(info.modes)}, and no preset of that kind gives its defaults",
            "add a preset file for it to a folder named by VIDGEN_PRESETS (see README)",
        )
    matched = released_preset(configs, family, info, presets)
    if preset_name is not None and preset_name.casefold() != NO_PRESET:
        preset = chosen_preset(preset_name, matched or closest, info, presets)
    elif matched is None:
        preset = own_defaults(closest, info)
        notes.append(
            f"'{source.spec}' matches no released model's transformer config: running on its own defaults: "
            f"its scheduler and sample size ({preset.height}x{preset.width}, {preset.frames} frames), "
            f"{preset.steps} steps, guidance {preset.guidance:g}; --steps, --height, --width, --frames or "
            "--preset NAME choose otherwise"
        )
    elif preset_name is not None:
        preset = replace(matched, name=NO_PRESET, scheduler=(), dynamic_cfg=False, amplify_first_chunk=False)
    else:
        preset = matched
        settings = describe_settings(matched)
        notes.append(
            f"'{source.spec}' is shaped like {matched.name}: using its settings ({settings}); "
            f"--preset NAME or --preset {NO_PRESET} chooses otherwise"
        )
    return Model(source, family, info, preset, configs, tuple(notes))


def prepare(
    options: Options,
    stdin: TextIO | None = None,
    presets: Mapping[str, Preset] | None = None,
    cache_dir: Path | None = None,
) -> Plan:
    """Check the options against the model's configs and build the plan; raises VidgenError."""
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
    runtime = replace(runtime, parallel=check_split(runtime.parallel, request, model.info, model.family))
    check_fits(request, model.info, model.configs, runtime)
    inputs = {name: path for name in INPUTS if (path := getattr(options, name))}
    return Plan(request, runtime, source, model.preset, output, inputs, tuple(notes))


def check_guidance_2(guidance_2: float | None, info: ModelInfo, model: str) -> None:
    """Only a model of two experts takes `--guidance-2` (a batch's, once for every job)."""
    if guidance_2 is not None and info.experts < 2:
        raise VidgenError(
            f"--guidance-2 is for a model of two experts (Wan 2.2 A14B); '{model}' has one transformer",
            "drop --guidance-2; --guidance sets the one transformer's guidance",
        )


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
    check_last_image(options, info)
    check_text(prompt, "the prompt")  # a batch job's, or --prompt's for every job
    check_text(options.negative_prompt, "--negative-prompt")
    check_guidance_2(options.guidance_2, info, options.model)
    family = registry.family(info.family)
    request = family.build_request(options, prompt, seed, preset, info, notes, reader)
    check_frame_count(request.frames)
    return with_flow_shift(request, options.flow_shift, family)
