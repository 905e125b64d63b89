"""Prompt files for `vidgen stream --prompt-file`: three formats, one-line errors that name the line,
and the per-chunk text with and without interpolation."""

import pytest

from vidgen.core.errors import VidgenError
from vidgen.core.prompt_schedule import Cue, read_prompt_file, text_at, unused_cues


def cues_of(tmp_path, name: str, text: str) -> list[tuple[int, str]]:
    path = tmp_path / name
    path.write_text(text)
    return [(cue.chunk, cue.prompt) for cue in read_prompt_file(path)]


def test_text_file_gives_one_chunk_per_prompt_line(tmp_path):
    text = "# a story\na cat wakes up\n\n  the cat walks outside  \na dog appears\n"
    assert cues_of(tmp_path, "story.txt", text) == [
        (0, "a cat wakes up"),
        (1, "the cat walks outside"),
        (2, "a dog appears"),
    ]


def test_csv_and_json_files_say_where_each_prompt_starts(tmp_path):
    csv = 'chunk,prompt\n0,a cat wakes up\n4,"a dog runs, fast"\n'
    json = '[{"chunk": 0, "prompt": "a cat wakes up"}, {"chunk": 4, "prompt": "a dog runs, fast"}]'
    expected = [(0, "a cat wakes up"), (4, "a dog runs, fast")]
    assert cues_of(tmp_path, "story.csv", "\ufeff" + csv) == expected  # a spreadsheet's BOM is fine
    assert cues_of(tmp_path, "story.json", json) == expected


@pytest.mark.parametrize(
    ("name", "text", "where", "problem"),
    [
        ("s.csv", "time,prompt\n0,a cat\n", "line 1", "not chunk,prompt"),
        ("s.csv", "chunk,prompt\n0,a cat\nthree,a dog\n", "line 3", "'three' is not a whole number"),
        ("s.csv", "chunk,prompt\n0,a cat\n2,a dog, fast\n", "line 3", "3 columns"),
        ("s.csv", "chunk,prompt\n0,a cat\n2,  \n", "line 3", "the prompt is empty"),
        (
            "s.csv",
            "chunk,prompt\n0,a cat\n3,a dog\n2,a bird\n",
            "line 4",
            "chunk 2 does not come after chunk 3",
        ),
        ("s.csv", "chunk,prompt\n1,a cat\n", "line 2", "chunk 0 needs one"),
        ("s.json", '[{"chunk": 0, "prompt": "a cat"},\n {"chunk": 1 "prompt": "x"}]', "line 2", "not JSON"),
        ("s.json", '[{"chunk": 0, "prompt": "a cat"}, {"chunk": -1, "prompt": "x"}]', "entry 2", "chunk -1"),
        ("s.json", '[{"chunk": 0, "text": "a cat"}]', "entry 1", '"chunk" and "prompt"'),
    ],
)
def test_a_bad_prompt_file_is_one_error_naming_the_line(tmp_path, name, text, where, problem):
    (tmp_path / name).write_text(text)
    with pytest.raises(VidgenError) as raised:
        read_prompt_file(tmp_path / name)
    message = str(raised.value)
    assert f"{name}', {where}: " in message and problem in message and "\n" not in message


def test_missing_or_empty_prompt_file_is_refused(tmp_path):
    with pytest.raises(VidgenError, match="does not exist"):
        read_prompt_file(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n# only a comment\n")
    with pytest.raises(VidgenError, match="holds no prompt"):
        read_prompt_file(tmp_path / "empty.txt")


CUES = (Cue(0, "cat"), Cue(3, "dog"))


def test_a_switch_is_immediate_without_interpolation_and_the_last_prompt_holds():
    assert [text_at(CUES, chunk) for chunk in range(6)] == ["cat"] * 3 + ["dog"] * 3


def test_interpolation_blends_linearly_over_the_chunks_after_a_switch():
    texts = [text_at(CUES, chunk, interpolate_chunks=3) for chunk in range(8)]
    assert texts[:3] == ["cat"] * 3
    assert texts[3:6] == [
        (("cat", 0.75), ("dog", 0.25)),
        (("cat", 0.5), ("dog", 0.5)),
        (("cat", 0.25), ("dog", 0.75)),
    ]
    assert texts[6:] == ["dog", "dog"]


def test_prompts_past_the_last_chunk_are_found():
    assert unused_cues(CUES, chunks=3) == [CUES[1]]
    assert unused_cues(CUES, chunks=4) == []
