"""A JSON prompt file that json cannot take (50,000 nested brackets, a 5,000-digit number) is a one-line
error, exit 2, like any other bad prompt file; not a RecursionError's traceback. (A CSV or text prompt
file is never parsed as JSON.)"""

import pytest

FILES = {
    "nested": ("[" * 50_000 + "]" * 50_000, "the JSON is nested too deeply"),
    "long-number": ('[{"chunk": ' + "9" * 5000 + ', "prompt": "a cat"}]', "a number is too long to read"),
}


@pytest.mark.parametrize("name", FILES)
def test_a_json_prompt_file_json_cannot_read_is_a_one_line_error(vidgen, workdir, name):
    text, problem = FILES[name]
    (workdir / "story.json").write_text(text)
    run = vidgen("stream", "--model", "tiny-helios", "--prompt-file", "story.json", "-o", "out.mp4")
    assert run.exit_code == 2, run.stderr
    assert run.stderr.startswith(f"error: prompt file 'story.json', line 1: {problem}")
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (workdir / "out.mp4").exists()
