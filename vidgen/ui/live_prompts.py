"""`vidgen stream --live`: prompts typed while the video generates steer the chunks not started yet.

A `LineReader` reads standard input (a terminal, a pipe, a FIFO) on a daemon thread into a queue, so
generation never waits for a line. A `LiveSchedule` is the stream's prompt schedule: asked for chunk k's
text just before chunk k starts, it first takes the lines that arrived meanwhile; a prompt becomes a cue
at k (the last one wins when several arrived during one chunk), blended in over `interpolate_chunks` as
a prompt file's cues are. A line `/quit`, or the end of input, ends the stream before chunk k instead:
`LiveEnded` is raised, and the chunks already made are the video. Chunk 0 is always the starting prompt.

`cues` is the schedule as it happened, the one a replay needs.
"""

import io
import os
import queue
import threading
from collections.abc import Callable
from typing import IO, Protocol

from vidgen.core.prompt_schedule import ChunkText, Cue, text_at

QUIT = "/quit"
_END = None  # queued once input ends
# A line is read up to this many bytes (far past the 512 tokens the text encoder reads); the rest is
# dropped as it arrives, so an endless line (`tr '\0' a </dev/zero`) costs neither time nor memory.
MAX_LINE_BYTES = 65536


class _Cut:
    """Queued (once per line) as soon as a line grows past MAX_LINE_BYTES."""


CUT = _Cut()


class LiveEnded(Exception):
    """`/quit` or the end of input arrived: the stream stops before chunk `chunk`."""

    def __init__(self, chunk: int) -> None:
        super().__init__(f"live input ended before chunk {chunk}")
        self.chunk = chunk


class LineReader:
    """The lines of `source` as they arrive, read on a daemon thread (which never blocks the stream and
    never keeps the process alive). A real file is read through its descriptor, not Python's buffered
    object, so interpreter shutdown never waits on the buffer's lock held by a read in progress."""

    def __init__(self, source: IO | None) -> None:
        self._lines: queue.Queue[str | _Cut | None] = queue.Queue()
        self._line, self._cut = bytearray(), False  # the line arriving, and whether it was cut
        self._thread = threading.Thread(target=self._read, args=(source,), name="live-prompts", daemon=True)
        self._thread.start()

    def take(self) -> list[str | _Cut | None]:
        """Every line that arrived since the last call, oldest first; None marks the end of input, CUT
        a line cut at MAX_LINE_BYTES (its first bytes come as a line once it ends)."""
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                return lines

    def _read(self, source: IO | None) -> None:
        if source is None:  # stdin closed when the process started (`<&-`): no input at all
            self._lines.put(_END)
            return
        try:
            descriptor = source.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # a test's in-memory stdin
            for line in source:
                self._add(line.encode("utf-8") if isinstance(line, str) else line, ends=True)
        else:
            self._read_descriptor(descriptor)
        self._lines.put(_END)

    def _read_descriptor(self, descriptor: int) -> None:
        while True:
            try:
                data = os.read(descriptor, 65536)
            except OSError:  # the terminal went away: the same as the end of input
                data = b""
            if not data:
                if self._line or self._cut:
                    self._add(b"", ends=True)
                return
            *lines, rest = data.split(b"\n")
            for line in lines:
                self._add(line, ends=True)
            self._add(rest, ends=False)

    def _add(self, piece: bytes, ends: bool) -> None:
        """Add `piece` to the line arriving (up to MAX_LINE_BYTES); queue the line if `ends`."""
        room = MAX_LINE_BYTES - len(self._line)
        if len(piece) > room:
            if not self._cut:
                self._cut = True
                self._lines.put(CUT)
            piece = piece[:room]
        self._line += piece
        if ends:
            self._lines.put(_text(bytes(self._line)))
            self._line, self._cut = bytearray(), False


def _text(line: str | bytes) -> str:
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    return line.strip()


class LiveReport(Protocol):
    """Where a live stream says what it did with each line (stderr, through the progress display)."""

    def prompt_taken(self, chunk: int, chunks: int, prompt: str) -> None: ...

    def live_warning(self, message: str) -> None: ...


class LiveSchedule:
    """chunk index -> ChunkText, like `prompt_schedule.schedule`, taking typed prompts as it goes."""

    def __init__(
        self,
        cues: tuple[Cue, ...],
        interpolate_chunks: int,
        chunks: int,
        reader: LineReader,
        report: LiveReport,
        too_long: Callable[[str], str | None] = lambda prompt: None,
    ) -> None:
        self.cues, self.interpolate_chunks, self.chunks = cues, interpolate_chunks, chunks
        self.reader, self.report, self.too_long = reader, report, too_long
        self._taken_for = 0  # the last chunk whose lines were taken; chunk 0 keeps the starting prompt

    def __call__(self, chunk: int) -> ChunkText:
        if chunk > self._taken_for:
            self._taken_for = chunk
            self._take(chunk)
        return text_at(self.cues, chunk, self.interpolate_chunks)

    def _take(self, chunk: int) -> None:
        """The lines that arrived before `chunk` starts: the last prompt starts at it, or the stream ends."""
        prompts = []
        for line in self.reader.take():
            if isinstance(line, _Cut):
                limit = MAX_LINE_BYTES
                self.report.live_warning(
                    f"a line over {limit} bytes: its first {limit} are read, the rest dropped"
                )
                continue
            if line is _END or line == QUIT:
                for prompt in prompts:
                    self.report.live_warning(f"'{prompt}' not used: the stream ends before chunk {chunk + 1}")
                raise LiveEnded(chunk)
            if line:
                prompts.append(line)
        if not prompts:
            return
        for prompt in prompts[:-1]:
            self.report.live_warning(f"'{prompt}' not used: a later line came before chunk {chunk + 1}")
        prompt = prompts[-1]
        # What typing replaces is the rest of the schedule (a prompt file's later cues too).
        self.cues = (*(cue for cue in self.cues if cue.chunk < chunk), Cue(chunk, prompt))
        self.report.prompt_taken(chunk, self.chunks, prompt)
        if (problem := self.too_long(prompt)) is not None:
            self.report.live_warning(problem)
