"""`vidgen stream --prompt-file` with a JSON file that Python's reader takes but no file can hold (a
lone surrogate), or cannot read (brackets nested 50,000 deep): one line and exit 2 before loading."""

import pytest


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[{"chunk": 0, "prompt": "a \\ud800 cat"}]', "entry 1: the prompt is not valid UTF-8 text (a lone"),
        ("[" * 50_000, "line 1: the JSON is nested too deeply"),
    ],
    ids=["surrogate", "nested"],
)
def test_a_hostile_json_prompt_file_is_one_line_and_exit_2(vidgen, workdir, text, words):
    (workdir / "story.json").write_text(text)
    run = vidgen("stream", "--model", "tiny-helios", "--prompt-file", "story.json", "-o", "out.mp4")
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and words in run.stderr, run.stderr
    assert not (workdir / "out.mp4").exists()
