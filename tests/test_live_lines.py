"""`--live` input that is not a well-behaved terminal: a line that never ends is read up to
MAX_LINE_BYTES (one warning, the rest dropped as it arrives), and a closed stdin is the end of input."""

import os
import threading
import time

from vidgen.core.prompt_schedule import Cue
from vidgen.ui.live_prompts import CUT, MAX_LINE_BYTES, LineReader, LiveEnded, LiveSchedule


def lines_until_end(reader: LineReader, seconds: float = 30) -> list:
    lines, deadline = [], time.monotonic() + seconds
    while None not in lines and time.monotonic() < deadline:
        lines += reader.take()
        time.sleep(0.01)
    return lines


def test_a_line_past_the_limit_is_cut_as_it_arrives_and_the_next_line_is_whole():
    read_end, write_end = os.pipe()

    def write() -> None:
        for _ in range(64):  # 4 MiB without a newline, in pieces as a pipe delivers them
            os.write(write_end, b"a" * 65536)
        os.write(write_end, b"a\na robot dances\n")
        os.close(write_end)

    with open(read_end, "rb") as source:
        writer = threading.Thread(target=write)
        writer.start()
        lines = lines_until_end(LineReader(source))
        writer.join()
    assert lines == [CUT, "a" * MAX_LINE_BYTES, "a robot dances", None]


def test_a_closed_stdin_is_the_end_of_input():
    assert lines_until_end(LineReader(None)) == [None]


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def prompt_taken(self, chunk: int, chunks: int, prompt: str) -> None:
        self.lines.append(f"taken {chunk}")

    def live_warning(self, message: str) -> None:
        self.lines.append(message)


class Typed:
    def __init__(self, *batches: list) -> None:
        self.batches = list(batches)

    def take(self) -> list:
        return self.batches.pop(0) if self.batches else []


def test_a_cut_line_is_one_warning_and_its_first_bytes_are_the_prompt():
    report = Report()
    schedule = LiveSchedule((Cue(0, "a cat"),), 0, 9, Typed([CUT], ["b" * MAX_LINE_BYTES], [None]), report)
    schedule(0)
    schedule(1)
    assert report.lines == [
        f"a line over {MAX_LINE_BYTES} bytes: its first {MAX_LINE_BYTES} are read, the rest dropped"
    ]
    assert schedule(2) == "b" * MAX_LINE_BYTES and report.lines[1:] == ["taken 2"]
    try:
        schedule(3)
    except LiveEnded as ended:
        assert ended.chunk == 3
    else:
        raise AssertionError("the end of input did not end the stream")
