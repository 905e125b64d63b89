"""A prompt schedule for long Helios videos: which prompt conditions each chunk, read from a file.

`vidgen stream --prompt-file story.txt` changes the text at chunk boundaries, as the Helios authors'
interactive mode does. Three file formats:

- plain text: one prompt per line, one chunk each (blank lines and lines starting with # are skipped);
- CSV with the header `chunk,prompt`: each prompt starts at its chunk (0-based);
- JSON: a list of {"chunk": k, "prompt": "..."}.

The last prompt holds to the end. With `interpolate_chunks` N > 0 the N chunks from a switch on are
conditioned on a blend of the old and new prompts' embeddings, moving linearly towards the new one:
weights 1/(N+1), ..., N/(N+1), then the new prompt alone. (The authors' `interpolation_steps` 3 gives
weights 0, 1/2, 1 from the switch chunk: our N = 1 with the switch one chunk later.)
"""

import csv
import io
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from vidgen.core.errors import VidgenError
from vidgen.core.text import check_text

# What a schedule gives for a chunk: one prompt, or (prompt, weight) pairs whose embeddings are blended.
ChunkText = str | tuple[tuple[str, float], ...]

FORMAT_HINT = "one prompt per line, a CSV with header chunk,prompt, or a JSON list of {chunk, prompt}"


@dataclass(frozen=True)
class Cue:
    """A prompt and the first chunk it conditions."""

    chunk: int
    prompt: str
    line: int = 0  # where it is in the file, for error messages (JSON: the entry's number)


def read_prompt_file(path: str | Path) -> tuple[Cue, ...]:
    """The cues of a prompt file, checked: chunk 0 first, chunks increasing, no empty prompt."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets save CSV with a BOM
    except FileNotFoundError:
        raise VidgenError(f"prompt file '{path}' does not exist", "check the path to --prompt-file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise VidgenError(f"cannot read prompt file '{path}': {error}", "save it as UTF-8 text") from None
    readers = {".json": _json_cues, ".csv": _csv_cues}
    cues = readers.get(path.suffix.lower(), _text_cues)(text, path)
    _check_order(cues, path)
    return cues


def schedule(cues: tuple[Cue, ...], interpolate_chunks: int = 0):
    """chunk index -> ChunkText, for `vidgen.families.helios.pipeline.generate_chunks(prompts=...)`."""
    return partial(text_at, cues, interpolate_chunks=interpolate_chunks)


def text_at(cues: tuple[Cue, ...], chunk: int, interpolate_chunks: int = 0) -> ChunkText:
    """The prompt (or blend) that conditions `chunk`."""
    current = max(i for i, cue in enumerate(cues) if cue.chunk <= chunk)
    into = chunk - cues[current].chunk  # chunks since the switch to the current prompt
    if current == 0 or into >= interpolate_chunks:
        return cues[current].prompt
    weight = (into + 1) / (interpolate_chunks + 1)
    return ((cues[current - 1].prompt, 1.0 - weight), (cues[current].prompt, weight))


def prompt_csv(cues: tuple[Cue, ...]) -> str:
    """The cues as a CSV prompt file (header chunk,prompt), as `read_prompt_file` reads them back."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["chunk", "prompt"])
    writer.writerows((cue.chunk, cue.prompt) for cue in cues)
    return text.getvalue()


def unused_cues(cues: tuple[Cue, ...], chunks: int) -> list[Cue]:
    """Cues that start after the video's last chunk."""
    return [cue for cue in cues if cue.chunk >= chunks]


def _text_cues(text: str, path: Path) -> tuple[Cue, ...]:
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    prompts = [(number, line) for number, line in lines if line and not line.startswith("#")]
    return tuple(Cue(chunk, prompt, number) for chunk, (number, prompt) in enumerate(prompts))


def _csv_cues(text: str, path: Path) -> tuple[Cue, ...]:
    reader = csv.reader(text.splitlines())
    header = [name.strip().lower() for name in next(reader, [])]
    if header != ["chunk", "prompt"]:
        raise _bad(path, 1, f"the header is {','.join(header) or 'missing'}, not chunk,prompt")
    cues = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise _bad(path, reader.line_num, f"{len(row)} columns, not 2 (quote prompts with commas)")
        line = reader.line_num
        cues.append(Cue(_chunk(row[0], path, line), _prompt(row[1], path, line), line))
    return tuple(cues)


def _json_cues(text: str, path: Path) -> tuple[Cue, ...]:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise _bad(path, error.lineno, f"not JSON: {error.msg}") from None
    except ValueError:  # an integer of more than 4,300 digits
        raise _bad(path, 1, "a number is too long to read") from None
    except RecursionError:  # thousands of nested brackets
        raise _bad(path, 1, "the JSON is nested too deeply") from None
    if not isinstance(entries, list):
        raise _bad(path, 1, "the JSON is not a list")
    cues = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or set(entry) != {"chunk", "prompt"}:
            raise _bad(path, number, 'not an object with exactly "chunk" and "prompt"', what="entry")
        chunk = entry["chunk"]
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 0:
            raise _bad(path, number, f"chunk {chunk!r} is not a whole number from 0", what="entry")
        if not isinstance(entry["prompt"], str):
            raise _bad(path, number, "the prompt is not a string", what="entry")
        cues.append(Cue(chunk, _prompt(entry["prompt"], path, number, what="entry"), number))
    return tuple(cues)


def _chunk(value: str, path: Path, line: int) -> int:
    try:
        chunk = int(value.strip())
    except ValueError:
        raise _bad(path, line, f"chunk {value.strip()!r} is not a whole number") from None
    if chunk < 0:
        raise _bad(path, line, f"chunk {chunk} is negative; chunks count from 0")
    return chunk


def _prompt(value: str, path: Path, line: int, what: str = "line") -> str:
    if not value.strip():
        raise _bad(path, line, "the prompt is empty", what=what)
    try:
        return check_text(value.strip(), "the prompt")  # a JSON escape may write half a character
    except VidgenError as error:
        raise _bad(path, line, error.message, what=what) from None


def _check_order(cues: tuple[Cue, ...], path: Path) -> None:
    what = "entry" if path.suffix.lower() == ".json" else "line"
    if not cues:
        raise VidgenError(f"prompt file '{path}' holds no prompt", f"write {FORMAT_HINT}")
    first = cues[0]
    if first.chunk != 0:
        raise _bad(path, first.line, f"the first prompt is for chunk {first.chunk}; chunk 0 needs one", what)
    for before, cue in zip(cues, cues[1:], strict=False):
        if cue.chunk <= before.chunk:
            raise _bad(path, cue.line, f"chunk {cue.chunk} does not come after chunk {before.chunk}", what)


def _bad(path: Path, line: int, problem: str, what: str = "line") -> VidgenError:
    return VidgenError(f"prompt file '{path}', {what} {line}: {problem}", f"write {FORMAT_HINT}")
