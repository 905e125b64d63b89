"""The `vidgen` command: parse options, call one function, print. Nothing else lives here."""

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Column, Table
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from vidgen import __version__
from vidgen.cli import options
from vidgen.core.errors import INTERRUPTED, RANK_LOST, VidgenError
from vidgen.core.progress import Silent
from vidgen.ui import console
from vidgen.ui.signals import exit_code, stop_signals_as_interrupts
from vidgen.weights.presets import close_names, find_preset, load_presets

if TYPE_CHECKING:  # torch loads only when a command runs
    from vidgen.app.prepare_stream import StreamPlan
    from vidgen.app.stream import StreamOutcome
    from vidgen.weights.presets import Preset

EXIT_CODES = (
    "Exit codes: 0 done; 1 the output could not be written (a full disk, a file-size limit, a failed "
    "encoder; the line says which); 2 a mistake in the options or inputs (nothing was generated); "
    "3 out of device memory; 130 interrupted (Ctrl-C), 143 by SIGTERM, 129 by SIGHUP (128 + the signal's "
    "number; each stops as Ctrl-C does); 141 the program reading `vidgen stream -o -` closed the pipe. "
    "Partial outputs are never left under the output's name (`vidgen stream` keeps every finished chunk); "
    "hidden partial files that a killed run (SIGKILL) left are removed the next time the same output is "
    "written."
)


def _flags_take_no_value(params: list) -> None:
    """Typer's help shows a <bool> type beside a flag (--version <bool>), as if it took a value."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # the type column stays empty


class Group(TyperGroup):
    """A command group whose help shows its flags as flags."""

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)  # --help is made here
        _flags_take_no_value(params)
        return params


class Command(TyperCommand):
    """A command whose help shows its flags as flags and its usage line as command lines read:
    `vidgen batch [OPTIONS] JOBS`, not Typer's `{JOBS}`."""

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)
        _flags_take_no_value(params)
        return params

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        arguments = [param for param in self.get_params(ctx) if isinstance(param, TyperArgument)]
        return [self.options_metavar or "", *(_usage_name(argument) for argument in arguments)]


def _usage_name(argument: TyperArgument) -> str:
    """JOBS when required, [PROMPT] when not, as click and most command lines write them."""
    name = argument.metavar or (argument.name or "").upper()
    name = name if argument.required else f"[{name}]"
    return name + ("..." if argument.nargs != 1 else "")


app = typer.Typer(
    name="vidgen",
    help="Generate videos with CogVideoX and Helios on your own GPU.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)
models_app = typer.Typer(help="List the model presets, or show one's settings.", cls=Group)
app.add_typer(models_app, name="models")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vidgen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Generate videos with CogVideoX and Helios on your own GPU."""


OUTPUT_HELP = "Writes the video and, beside it, OUTPUT.json with every setting (the .mp4 carries it too)."


@app.command(epilog=OUTPUT_HELP, cls=Command)
@options.signature(options.T2V)
def t2v(**values: Any) -> None:
    """Text to video."""
    _generate("t2v", values)


@app.command(epilog=OUTPUT_HELP, cls=Command)
@options.signature(options.I2V)
def i2v(**values: Any) -> None:
    """Image to video: animate --image as the prompt describes."""
    _generate("i2v", values)


@app.command(epilog=OUTPUT_HELP, cls=Command)
@options.signature(options.V2V)
def v2v(**values: Any) -> None:
    """Video to video: redo --video as the prompt describes (its first frames, resized); Helios
    continues --video instead."""
    _generate("v2v", values)


STREAM_HELP = (
    "Writes OUTPUT while it grows: a fragmented MP4 that plays after every chunk (try `mpv OUTPUT`), or "
    "a folder of PNG frames (--format png); with -o - the MP4 goes to stdout, e.g. `vidgen stream ... -o "
    "- | mpv -`. OUTPUT.json beside it records every setting and how the stream ended. Ctrl-C stops at "
    "once and keeps every finished chunk (exit code 130); when the program reading -o - closes the pipe, "
    "the stream stops with one line (exit code 141). A prompt file holds one prompt per line (one "
    "chunk each), a CSV with header chunk,prompt, or a JSON list of {chunk, prompt}; the last prompt "
    "holds to the end. With --live, each line typed on stdin is the prompt from the next chunk on "
    "(blended over --interpolate-chunks); /quit or the end of input ends the stream after the chunk being "
    "made, e.g. `vidgen stream --live ... -o - | mpv -`. OUTPUT.prompts.csv keeps the prompts as they "
    "came, and the sidecar's command replays them."
)


@app.command(epilog=STREAM_HELP, cls=Command)
@options.signature(options.STREAM)
def stream(**values: Any) -> None:
    """A long Helios video, each 33-frame chunk written as soon as it is generated."""
    values = options.plain_values(values)
    console.quiet_libraries(values.pop("verbose"))  # before the imports below: they log on import
    from vidgen.app.prepare_stream import StreamOptions, prepare_stream, stream_mode
    from vidgen.app.stream import stream_video  # torch and the pipelines load only when a command runs
    from vidgen.runtime.parallel import leave, outcome_speaker
    from vidgen.ui.live_prompts import LineReader
    from vidgen.ui.stream_progress import SilentStream, StreamProgress

    quiet = values.pop("quiet")
    with _reported_errors():
        stream_options = StreamOptions(mode=stream_mode(values["image"], values["video"]), **values)
        plan = prepare_stream(stream_options, stdin=sys.stdin)
        quiet = quiet or not outcome_speaker()  # under torchrun rank 0 alone reports
        for line in () if quiet else plan.plan.notes:
            console.note(line)
        reader = LineReader(sys.stdin) if plan.live else None
        with nullcontext(SilentStream()) if quiet else StreamProgress(plan.chunks) as progress:
            outcome = stream_video(plan, progress, live=reader)
    speaker = outcome_speaker()
    leave()
    if not speaker:
        return
    if values["json_output"]:
        typer.echo(json.dumps(outcome.summary))
    else:
        typer.echo(_streamed(plan, outcome), err=plan.to_stdout)  # stdout may have carried the video


def _streamed(plan: "StreamPlan", outcome: "StreamOutcome") -> str:
    """The line that ends a stream: where it went, how long, how fast."""
    request, where = plan.plan.request, "stdout" if plan.to_stdout else plan.plan.output.path
    chunks = f"{outcome.chunks} chunk{'s' * (outcome.chunks != 1)}"
    size = f"{request.width}x{request.height}, {request.fps} fps, seed {request.seed}"
    rate = outcome.throughput.describe()
    settings = "" if outcome.sidecar is None else f"; settings in {outcome.sidecar}"
    return f"wrote {where} ({outcome.frames} frames in {chunks}, {size}; {rate}){settings}"


def _generate(mode: str, values: dict[str, Any]) -> None:
    """Check, generate, write, then print the result."""
    console.quiet_libraries(values.pop("verbose"))  # before the imports below: they log on import
    from vidgen.app.prepare import prepare
    from vidgen.app.run import run  # torch and the pipelines load only when a command runs
    from vidgen.runtime.parallel import leave, outcome_speaker
    from vidgen.validate.common import Options

    values = options.plain_values(values)
    quiet, json_output = values.pop("quiet"), values.pop("json_output")
    with _reported_errors():
        plan = prepare(Options(mode=mode, **values), stdin=sys.stdin)
        quiet = quiet or not outcome_speaker()
        for line in () if quiet else plan.notes:
            console.note(line)
        with nullcontext(Silent()) if quiet else console.ConsoleProgress() as progress:
            outcome = run(plan, progress)
    speaker = outcome_speaker()
    leave()
    if not speaker:  # another torchrun rank: rank 0 wrote the video and speaks for it
        return
    for line in outcome.warnings:
        console.warning(line)
    if json_output:
        typer.echo(json.dumps(outcome.summary))
        return
    request, frames = plan.request, outcome.summary["output"]["frames"]
    typer.echo(
        f"wrote {outcome.output} ({frames} frames, {request.width}x{request.height}, {request.fps} fps, "
        f"seed {request.seed}); settings in {outcome.sidecar}"
    )


BATCH_HELP = (
    "JOBS holds one JSON object per line, or CSV under a header row. Its keys are the long option names "
    "(prompt, negative_prompt, seed, steps, guidance, guidance_2, flow_shift, dynamic_cfg, height, width, "
    "frames, fps, image, last_image, video, strength, format, mode, lora) and name; they override the "
    "options given here (lora: what --lora takes, or a list of them). Relative image, video and lora paths "
    "are relative to the job file. Each video goes to OUTDIR/NAME.mp4 (NAME: the job's line number, 00007, "
    "unless set) with "
    "NAME.mp4.json beside it, and OUTDIR/manifest.jsonl "
    "records every job. The same command again skips finished jobs and runs the rest. Under torchrun "
    "each rank runs its share and writes manifest.rankN.jsonl. Exit codes: 0 every job done; 1 some "
    "jobs failed (the manifest says why); 2 a mistake in the options, or with --dry-run in JOBS, or "
    "OUTDIR in use by another batch; "
    "3 out of memory loading the model; 130 interrupted."
)


@app.command(epilog=BATCH_HELP, cls=Command)
@options.signature(options.BATCH)
def batch(**values: Any) -> None:
    """Run many jobs from a JSONL or CSV file with the model loaded once; running it again resumes."""
    values = options.plain_values(values)
    from vidgen.app.batch import BatchOptions, run_batch  # torch loads only when a command runs

    console.route_library_warnings(values.pop("verbose"))  # the libraries load only if a job runs

    flags = {name: values.pop(name) for name in ("jobs", "outdir", "mode", "dry_run", "overwrite", "quiet")}
    json_output = values.pop("json_output")
    with _reported_errors():
        report = run_batch(BatchOptions(defaults=values, **flags), stdin=sys.stdin)
    if not report.speaks:  # another rank; rank 0 reports for the whole batch
        return
    typer.echo(json.dumps(report.as_json()) if json_output else report.describe())
    if report.failed and not report.dry_run:
        console.error(report.failure_hint())
    raise typer.Exit(report.exit_code)


@contextmanager
def _reported_errors() -> Iterator[None]:
    """A user mistake or Ctrl-C (or SIGTERM, SIGHUP) ends in one line on stderr and its exit code, not a
    traceback."""
    with stop_signals_as_interrupts() as received:  # SIGTERM and SIGHUP end the command as Ctrl-C does
        try:
            yield
        except VidgenError as error:
            from vidgen.runtime.ranks import left_to_rank_zero

            if not left_to_rank_zero():  # under torchrun, rank 0 prints what every rank found
                console.error(str(error))
            raise typer.Exit(exit_code(error.exit_code, received)) from None
        except KeyboardInterrupt:
            console.error("interrupted; no output was written")
            raise typer.Exit(exit_code(INTERRUPTED, received)) from None
        except Exception as error:
            from vidgen.runtime.ranks import lost_peer

            line = lost_peer(error)
            if line is None:  # a bug: its traceback
                raise
            # torchrun stops this rank too: a SIGTERM now must not cut the line short (until the block ends)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            console.error(line)
            raise typer.Exit(RANK_LOST) from None


SERVE_HELP = (
    "An HTTP API in the shape of OpenAI's Videos API, with the model loaded once: POST /v1/videos "
    "(prompt, seconds, size, input_reference, and vidgen's seed, steps, guidance, negative_prompt, frames, "
    "stream), GET /v1/videos/ID, GET /v1/videos/ID/content (a stream's MP4 while it grows), GET "
    "/v1/videos, DELETE /v1/videos/ID, POST /v1/videos/ID/prompts (steers a running stream), GET /health. "
    "Jobs live in DIR/jobs.sqlite beside the videos: a server started again on the same --dir runs what "
    "was queued. SIGTERM or Ctrl-C drain: no new jobs, the running one finishes (a stream at its chunk "
    "boundary), exit 0 (130 after Ctrl-C). The generation options are every job's defaults. Under "
    "`torchrun --nproc_per_node N -m vidgen serve ...` each rank runs jobs on its own GPU; rank 0 serves "
    "HTTP."
)


@app.command(epilog=SERVE_HELP, cls=Command)
@options.signature(options.SERVE)
def serve(**values: Any) -> None:
    """Serve the model over HTTP: an OpenAI-shaped video API that also streams and steers Helios."""
    values = options.plain_values(values)
    console.quiet_libraries(values.pop("verbose"))
    from vidgen.serve.server import ServeOptions, serve_forever

    flags = ("model", "host", "port", "api_key", "dir", "max_queue", "max_upload_mb", "quiet")
    given = {name: values.pop(name) for name in flags}
    defaults = {name: value for name, value in values.items() if value is not None}
    with _reported_errors():
        code = serve_forever(ServeOptions(defaults=defaults, **given))
    raise typer.Exit(code)


@app.command(cls=Command)
def download(
    model: str = typer.Argument(
        ..., metavar="MODEL", help="A preset (see `vidgen models`) or a hub repo id."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the files and sizes; download nothing."),
) -> None:
    """Download a model's weights into the Hugging Face cache (HF_HUB_CACHE or HF_HOME), then verify them.

    Only the files vidgen reads (safetensors, configs, tokenizer). Files already cached are kept; an
    interrupted download resumes; a damaged file is fetched again."""
    from vidgen.families import registry
    from vidgen.weights import download as downloads  # huggingface_hub loads only when a command runs
    from vidgen.weights.download_progress import DownloadProgress
    from vidgen.weights.sources import hub_repo

    command = f"vidgen download {model}"
    with _reported_errors():
        repo_id = hub_repo(model)
        if repo_id is None:
            typer.echo(
                f"{model} is a tiny model, built offline on first use (in seconds): nothing to download. "
                f"Run it directly: vidgen t2v --model {model} ..."
            )
            return
        if dry_run:
            typer.echo("\n".join(downloads.dry_run(repo_id, command, registry.WEIGHTS.classes_for)))
            return
        with DownloadProgress() as progress:
            snapshot = downloads.download(repo_id, command, progress, registry.WEIGHTS.classes_for)
    typer.echo(f"{repo_id}: complete and verified in {snapshot}")


@models_app.callback(invoke_without_command=True)
def models(context: typer.Context) -> None:
    """List the model presets, and how much of each the Hugging Face cache holds."""
    if context.invoked_subcommand is not None:
        return
    # Names and sources are what users copy from this table: never cut them. Modes wrap ("t2v i2v" over
    # "v2v" for Helios) to leave the sources room on an 80-column terminal; the family is in the name
    # (and in `vidgen models show`), which leaves room for what is in the Hugging Face cache. There the
    # longest size ("1280x704, 121") wraps after its comma too; Rich would cut the table's edge instead.
    out = Console()
    table = Table(
        Column("name", no_wrap=True),
        Column("modes", max_width=7),
        Column("size, frames", max_width=12 if out.width <= 80 else None),
        Column("source", overflow="fold", min_width=15),
        Column("cached", max_width=9),
    )
    for preset in load_presets().values():
        size = f"{preset.width}x{preset.height}, {preset.frames}"
        table.add_row(preset.name, " ".join(preset.modes), size, preset.source, _on_disk(preset))
    out.print(table)


def _on_disk(preset: "Preset") -> str:
    """The `cached` column: how much of a released model the hub cache holds ("damaged" for a cache
    folder that cannot be read) and, for one not cached, the size `vidgen download` fetches; or whether
    a tiny model is built yet."""
    from vidgen.families import registry  # torch and huggingface_hub load only when a command runs
    from vidgen.weights import tiny
    from vidgen.weights.download import cached_status
    from vidgen.weights.hub import describe_size

    if preset.is_tiny:
        return "built" if tiny.is_built(*preset.tiny_variant) else "built on first use"
    try:
        status = cached_status(preset.source, registry.WEIGHTS.classes_for)
    except VidgenError:
        return "damaged"
    # What a download would fetch, under the answer (one short line each in the narrow column).
    return (
        f"{status}\n{describe_size(preset.download_bytes)}\nto fetch"
        if status == "no" and preset.download_bytes
        else status
    )


@models_app.command("show", cls=Command)
def show(name: str = typer.Argument(..., metavar="NAME", help="A preset name from `vidgen models`.")) -> None:
    """Print one preset's settings."""
    presets = load_presets()
    preset = find_preset(name, presets)
    with _reported_errors():
        if preset is None:
            close = close_names(name, presets)
            hint = f"did you mean {', '.join(close)}?" if close else "`vidgen models` lists the presets"
            raise VidgenError(f"unknown preset '{name}'", hint)
    table = Table("setting", "value", show_header=False)
    for setting, value in vars(preset).items():
        shown = dict(value) if setting in ("scheduler", "transformer") and value is not None else value
        table.add_row(setting, " ".join(shown) if setting == "modes" else str(shown))
    Console().print(table)
