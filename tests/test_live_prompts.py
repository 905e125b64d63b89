"""`vidgen stream --live`'s input: lines read off a pipe without blocking, and the schedule they make,
taken chunk by chunk just before each chunk starts."""

import io
import os
import time

import pytest

from vidgen.core.prompt_schedule import Cue, prompt_csv, read_prompt_file, text_at
from vidgen.ui.live_prompts import LineReader, LiveEnded, LiveSchedule


def lines_until_end(reader: LineReader, seconds: float = 10) -> list[str | None]:
    lines, deadline = [], time.monotonic() + seconds
    while None not in lines and time.monotonic() < deadline:
        lines += reader.take()
        time.sleep(0.01)
    return lines


def test_the_reader_gives_lines_as_they_arrive_and_marks_the_end():
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as source:
        reader = LineReader(source)
        assert reader.take() == []  # nothing typed yet, and taking does not wait
        os.write(write_end, "  a robot dances \n\na caf\u00e9 at ni".encode())
        os.write(write_end, b"ght\n/quit")  # a line split across writes; the last one has no newline
        os.close(write_end)
        assert lines_until_end(reader) == ["a robot dances", "", "a caf\u00e9 at night", "/quit", None]


def test_the_reader_takes_an_in_memory_stream_too():
    assert lines_until_end(LineReader(io.StringIO("one\ntwo\n"))) == ["one", "two", None]


class Typed:
    """What was typed before each chunk started (a LineReader's `take`, scripted)."""

    def __init__(self, *batches: list[str | None]) -> None:
        self.batches = list(batches)

    def take(self) -> list[str | None]:
        return self.batches.pop(0) if self.batches else []


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def prompt_taken(self, chunk: int, chunks: int, prompt: str) -> None:
        self.lines.append(f"taken {chunk}/{chunks} {prompt}")

    def live_warning(self, message: str) -> None:
        self.lines.append(f"warning {message}")


def test_a_typed_prompt_starts_at_the_next_chunk_and_the_last_of_a_chunk_wins():
    typed = Typed(["a dog", "", "a robot"], [], ["a red car"])
    report = Report()
    live = LiveSchedule((Cue(0, "a cat"),), 1, 8, typed, report)
    texts = [live(0), live(0), live(1), live(1), live(2), live(3)]  # chunk 0 keeps the starting prompt
    assert texts[:2] == ["a cat", "a cat"] and texts[2] == texts[3] == (("a cat", 0.5), ("a robot", 0.5))
    assert texts[4] == "a robot" and texts[5] == (("a robot", 0.5), ("a red car", 0.5))
    assert [(cue.chunk, cue.prompt) for cue in live.cues] == [(0, "a cat"), (1, "a robot"), (3, "a red car")]
    assert report.lines == [
        "warning 'a dog' not used: a later line came before chunk 2",
        "taken 1/8 a robot",
        "taken 3/8 a red car",
    ]
    # The schedule as it happened is a prompt file that gives the same text for every chunk.
    assert [text_at(live.cues, chunk, 1) for chunk in range(4)] == [texts[0], texts[2], texts[4], texts[5]]


def test_typing_replaces_the_rest_of_a_prompt_file(tmp_path):
    live = LiveSchedule(
        (Cue(0, "a cat"), Cue(2, "a dog"), Cue(5, "a bird")), 0, 8, Typed([], [], ["a car"]), Report()
    )
    assert [live(chunk) for chunk in range(7)] == [
        "a cat",
        "a cat",
        "a dog",
        "a car",
        "a car",
        "a car",
        "a car",
    ]
    path = tmp_path / "out.mp4.prompts.csv"
    path.write_text(prompt_csv(live.cues))
    assert read_prompt_file(path) == tuple(
        Cue(c.chunk, c.prompt, line) for line, c in enumerate(live.cues, 2)
    )


@pytest.mark.parametrize("end", ["/quit", None])
def test_quit_or_the_end_of_input_stops_before_the_next_chunk(end):
    report = Report()
    live = LiveSchedule((Cue(0, "a cat"),), 0, 8, Typed([], ["a dog", end, "a bird"]), report)
    assert live(1) == "a cat"
    with pytest.raises(LiveEnded) as ended:
        live(2)
    assert ended.value.chunk == 2 and [(c.chunk, c.prompt) for c in live.cues] == [(0, "a cat")]
    assert report.lines == ["warning 'a dog' not used: the stream ends before chunk 3"]


def test_a_prompt_too_long_for_the_text_encoder_is_a_warning_and_is_still_taken():
    report = Report()
    too_long = lambda prompt: "too long" if len(prompt) > 5 else None  # noqa: E731
    live = LiveSchedule((Cue(0, "a cat"),), 0, 8, Typed(["a long prompt"]), report, too_long)
    assert live(1) == "a long prompt" and report.lines == ["taken 1/8 a long prompt", "warning too long"]
