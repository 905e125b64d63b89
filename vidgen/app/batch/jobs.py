"""Job files: JSONL or CSV lines -> jobs, each checked on its own so one bad line never hides another.

A job's keys are the long option names (`negative_prompt` or `negative-prompt`); the command line's
options are the defaults that a job's keys override. Reading a file only looks at the text; `plan_job`
then checks a job against the model (sizes, frame counts, input files) exactly as `vidgen t2v` would.
"""

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vidgen.app.batch.keys import MODE_KEYS, key_problem, normalize_key, read_value
from vidgen.app.prepare import INPUTS, build_request
from vidgen.core.errors import VidgenError
from vidgen.core.request import Runtime
from vidgen.io.writer import sidecar_path
from vidgen.validate.common import (
    InputReader,
    Model,
    Options,
    Output,
    Plan,
    check_mode,
    check_text,
    resolve_seed,
)
from vidgen.validate.memory import check_fits
from vidgen.validate.runtime import with_loras
from vidgen.weights.presets import Preset

NAME_DIGITS = 5  # "00007": wide enough that a growing file keeps its names up to 99,999 lines
MAX_NAME_BYTES = 200  # the output, its sidecar and the writer's hidden partial name stay under 255

# What decides a job's video: the same values on a later run mean its finished output still holds.
SPEC_KEYS = (
    *("model", "mode", "prompt", "negative_prompt", "seed", "steps", "guidance", "dynamic_cfg"),
    *("height", "width", "frames", "fps", "image", "video", "strength", "format", "dtype", "vae_tiling"),
)


@dataclass(frozen=True)
class Job:
    """One line of the job file; `error` says why it cannot run (then `options` may be None)."""

    line: int  # in the file, counting from 1 (a CSV's header is line 1)
    name: str
    format: str
    options: Options | None = None
    error: str | None = None
    given: dict[str, Any] = field(default_factory=dict)  # the line's keys, as read
    # The settings that decide the video once defaults are filled in (see `resolved_settings`); None
    # until the job is checked against the model.
    resolved: dict[str, Any] | None = None

    @property
    def output(self) -> str:
        """The output's name in OUTDIR: `cat.mp4`, `cat.gif`, or the folder `cat` for PNG frames."""
        return self.name if self.format == "png" else f"{self.name}.{self.format}"

    @property
    def spec(self) -> dict[str, Any] | None:
        """The settings that decide the video, as asked for (None: the model's default)."""
        if self.options is None:
            return None
        spec = {key: getattr(self.options, key) for key in SPEC_KEYS if key != "format"}
        for key, mode in MODE_KEYS.items():
            if self.options.mode != mode:
                spec.pop(key, None)
        if self.options.mode == "i2v" and self.options.last_image:  # only when given, as lora below
            spec["last_image"] = self.options.last_image
        if self.options.lora:  # only when given: the specs of earlier manifests stay the same
            spec["lora"] = list(self.options.lora)
        if self.options.guidance_2 is not None:  # the same: only when given
            spec["guidance_2"] = self.options.guidance_2
        return {**spec, "format": self.format}

    def failed(self, error: str) -> "Job":
        return replace(self, error=error)


@dataclass(frozen=True)
class JobFile:
    text: str
    label: str  # how messages name the file: its path as given, or <stdin>
    folder: Path  # relative image and video paths in the file are relative to this folder


def read_job_file(path: str, stdin: io.TextIOBase | None) -> JobFile:
    """The job file's text; `-` reads standard input."""
    if path == "-":
        if stdin is None:
            raise VidgenError("no standard input to read jobs from", "pass a job file")
        try:
            return JobFile(stdin.read(), "<stdin>", Path.cwd())
        except UnicodeDecodeError as error:
            raise VidgenError(
                f"the jobs on stdin are not valid UTF-8 text (byte 0x{error.object[error.start]:02x})",
                "pipe in a UTF-8 JSONL or CSV file",
            ) from None
    try:
        # utf-8-sig: spreadsheets put a byte-order mark before a CSV's header.
        text = Path(path).expanduser().read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise VidgenError(
            f"no job file '{path}'", "check the path, or pass - to read jobs from stdin"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise VidgenError(
            f"cannot read job file '{path}': {error}", "pass a UTF-8 JSONL or CSV file"
        ) from None
    return JobFile(text, path, Path(path).expanduser().resolve().parent)


def parse_jobs(file: JobFile, defaults: Mapping[str, Any], mode: str) -> list[Job]:
    """Every line of the file as a job, merged over `defaults`; duplicate names and outputs marked."""
    rows = _csv_rows(file) if _is_csv(file) else _jsonl_rows(file)
    jobs = [_job(line, values, file, defaults, mode) for line, values in rows]
    if not jobs:
        raise VidgenError(
            f"no jobs in {file.label}", "write one JSON object per line, or a CSV with a header"
        )
    return _mark_collisions(jobs)


def _is_csv(file: JobFile) -> bool:
    """CSV by the `.csv` extension; standard input and other names by whether the text starts with `{`."""
    if file.label.lower().endswith(".csv"):
        return True
    if file.label.lower().endswith((".jsonl", ".ndjson", ".json")):
        return False
    first = next((line.strip() for line in records(file.text) if _is_content(line)), "")
    return not first.startswith("{")


def _is_content(line: str) -> bool:
    """Blank lines and `#` comments are skipped in both formats."""
    return bool(line.strip()) and not line.lstrip().startswith("#")


def records(text: str) -> list[str]:
    """The text's lines, each with its end: split at `\n` (so `\r\n` too) and nowhere else.

    JSON Lines and CSV end a record only there; `str.splitlines` also breaks at U+2028, U+0085 and
    other characters a prompt may hold, which made one job several bad ones.
    """
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


Row = tuple[int, dict[str, Any] | str]  # line number, and the values or why the line cannot be read


def _jsonl_rows(file: JobFile) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(records(file.text), start=1):
        if not _is_content(line):
            continue
        try:
            values = json.loads(line, parse_constant=_refuse_constant, parse_float=_finite_float)
        except json.JSONDecodeError as error:
            rows.append((number, f"not valid JSON: {error.msg} (column {error.colno})"))
            continue
        except ValueError as error:  # NaN, Infinity, 1e400, or an integer of thousands of digits
            rows.append((number, f"not valid JSON: {error}"))
            continue
        except RecursionError:  # thousands of nested brackets: deeper than Python's parser goes
            rows.append((number, "not valid JSON: nested too deeply (a job is one flat object)"))
            continue
        rows.append((number, values if isinstance(values, dict) else "expected a JSON object {...}"))
    return rows


def _refuse_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON does not have: they would reach the manifest."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large")
    return value


def _csv_rows(file: JobFile) -> list[Row]:
    """A header row of keys, then one job per row; an empty cell leaves the default."""
    reader = csv.reader(records(file.text))
    header: list[str] | None = None
    rows: list[Row] = []
    end = 0  # the line the previous row ended on: a quoted cell may span lines
    for cells in reader:
        start, end = end + 1, reader.line_num
        if not any(cell.strip() for cell in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = _csv_header(cells, file.label, start)
        elif len(cells) > len(header):
            rows.append((start, f"has {len(cells)} cells, the header {len(header)}"))
        else:
            rows.append(
                (start, {key: cell.strip() for key, cell in zip(header, cells, strict=False) if cell.strip()})
            )
    return rows


def _csv_header(cells: list[str], label: str, line: int) -> list[str]:
    """A bad column would fail every row alike, so it fails the whole file, once."""
    header = [normalize_key(cell) for cell in cells]
    for key in header:
        problem = key_problem(key)
        if problem:
            raise VidgenError(f"{label}:{line}: column {problem}", "fix the header row")
    return header


def _job(
    line: int, values: dict[str, Any] | str, file: JobFile, defaults: Mapping[str, Any], mode: str
) -> Job:
    default_name = f"{line:0{NAME_DIGITS}d}"
    if isinstance(values, str):
        return Job(line, default_name, defaults.get("format") or "mp4", error=values)
    problem = _text_problem(values)
    if problem:  # before the name is taken from the line: the error names the job by its line
        return Job(line, default_name, defaults.get("format") or "mp4", error=problem)
    given = {normalize_key(key): value for key, value in values.items() if value is not None}
    job = Job(line, str(given.get("name", default_name)), defaults.get("format") or "mp4", given=given)
    try:
        typed = {key: read_value(key, value) for key, value in given.items()}
        merged = {key: value for key, value in {**defaults, **typed}.items() if value is not None}
        job = replace(job, format=merged.get("format") or "mp4")
        _check_name(job)
        return replace(job, options=_options(merged, typed, mode, file.folder))
    except VidgenError as error:
        return job.failed(str(error))


def _text_problem(values: dict[str, Any]) -> str | None:
    """Why the line's keys or texts are not Unicode text (a JSON escape of half a character, such as
    "\\ud800", or bytes read from a non-UTF-8 stdin), or None: no file can hold them, so the job's
    output, sidecar and manifest record would fail to be written. A loop, not recursion: a line may
    nest lists as deep as the JSON reader goes."""
    pending: list[tuple[Any, str]] = [(values, "the line")]
    while pending:
        value, what = pending.pop()
        if isinstance(value, dict):
            pending += [(key, "a key") for key in value]
            pending += [(item, normalize_key(str(key))) for key, item in value.items()]
        elif isinstance(value, list):
            pending += [(item, what) for item in value]
        elif isinstance(value, str):
            try:
                check_text(value, what)
            except VidgenError as error:
                return str(error)
    return None


def _check_name(job: Job) -> None:
    """A name is one plain file name: it can never place an output outside OUTDIR or hide it."""
    name, hint = job.name, "a name is one file name inside OUTDIR, such as cat-01"
    if not name.strip():
        raise VidgenError("name is empty", hint)
    if "/" in name or "\\" in name:
        raise VidgenError(f"name '{name}' has a path separator; outputs stay inside OUTDIR", hint)
    if name.startswith("."):
        # Also rules out "." and "..", and the writer's hidden partial files, which start with a dot.
        raise VidgenError(f"name '{name}' starts with a dot", hint)
    if any(ord(char) < 32 for char in name):
        raise VidgenError(f"name {json.dumps(name)} has a control character", hint)
    if len(name.encode()) > MAX_NAME_BYTES:
        raise VidgenError(f"name is longer than {MAX_NAME_BYTES} bytes", hint)
    if any(is_manifest(file) for file in job_files(job)):
        raise VidgenError(f"name '{name}' would write over the batch's manifest", "choose another name")


def _beside(folder: Path, text: str) -> str:
    """`text` relative to the job file's folder when a file or folder is there; else as written."""
    from vidgen.runtime.lora import parse_lora, split_expert

    expert, rest = split_expert(text)
    source, scale = parse_lora(rest)
    path = folder / Path(source).expanduser()
    return f"{expert + '=' if expert else ''}{path}:{scale!r}" if path.exists() else text


def _options(merged: dict[str, Any], typed: dict[str, Any], mode: str, folder: Path) -> Options:
    """The job's Options: command-line defaults, then the job's keys; input paths relative to the file."""
    job_mode = merged.get("mode") or mode
    for key, needed in MODE_KEYS.items():
        if key in typed and job_mode != needed:
            raise VidgenError(f"{key} is for {needed} jobs; this job is {job_mode}", f"set mode {needed}")
    for key in INPUTS:
        if key in typed:
            merged[key] = str(folder / Path(typed[key]).expanduser())
    if "lora" in typed:  # a job's LoRA file, like its inputs, may be written relative to the job file
        merged["lora"] = tuple(_beside(folder, text) for text in typed["lora"])
    prompt = (merged.get("prompt") or "").strip()
    if not prompt:
        raise VidgenError("the prompt is missing", "give the job a prompt, or every job one with --prompt")
    values = {key: value for key, value in merged.items() if key not in ("name", "mode", "prompt")}
    return Options(mode=job_mode, prompt=prompt, **values)


def _mark_collisions(jobs: list[Job]) -> list[Job]:
    """A later job that reuses a name, or writes a file an earlier one writes, fails; the first keeps it.

    Names are compared ignoring case, as macOS and Windows file systems compare them.
    """
    names: dict[str, int] = {}
    files: dict[str, int] = {}
    marked = []
    for job in jobs:
        earlier = names.get(job.name.casefold())
        writes = [name.casefold() for name in job_files(job)]
        clash = next((files[name] for name in writes if name in files), None)
        if job.error is None and earlier is not None:
            job = job.failed(f"name '{job.name}' is already used by line {earlier}")
        elif job.error is None and clash is not None:
            job = job.failed(f"'{job.output}' is written by line {clash} too; choose another name")
        names.setdefault(job.name.casefold(), job.line)
        for name in writes:
            files.setdefault(name, job.line)
        marked.append(job)
    return marked


def job_files(job: Job) -> tuple[str, str]:
    """The names a job writes in OUTDIR: the output and its sidecar."""
    return job.output, sidecar_path(Path(job.output)).name


def plan_job(
    job: Job,
    model: Model,
    runtime: Runtime,
    outdir: Path,
    presets: Mapping[str, Preset],
    notes: list[str] | None = None,
    reader: InputReader | None = None,
) -> Plan:
    """The job's plan, checked as `vidgen t2v` checks one (reading its input files, through `reader`
    when given: once per distinct file); raises VidgenError."""
    options = job.options
    if options is None:
        raise ValueError(f"line {job.line} has no options: {job.error}")
    check_mode(options.mode, model.info, options.model, presets)
    # A job without a seed gets a random one, which its manifest record and sidecar keep: no note per job.
    seed = resolve_seed(options.seed, [])
    request = build_request(
        options, options.prompt, seed, model.preset, model.info, [] if notes is None else notes, reader
    )
    runtime = with_loras(runtime, options.lora, model, [] if notes is None else notes, reader)
    check_fits(request, model.info, model.configs, runtime)
    inputs = {
        key: path for key in INPUTS if MODE_KEYS[key] == options.mode and (path := getattr(options, key))
    }
    return Plan(request, runtime, model.source, model.preset, Output(outdir / job.output, job.format), inputs)


def prompts(jobs: Iterable[Job]) -> list[str]:
    """The prompts and negative prompts the jobs encode, once per use (for the text cache's eviction)."""
    return [text for job in jobs if job.options for text in (job.options.prompt, job.options.negative_prompt)]


def is_manifest(name: str) -> bool:
    """Whether `name` is one of the manifest's files in OUTDIR, which no job output may take."""
    return re.fullmatch(r"manifest(\.rank\d+)?\.jsonl", name) is not None
