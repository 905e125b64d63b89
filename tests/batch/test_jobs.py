"""Reading job files: JSONL and CSV, every bad line found with its reason, names confined to OUTDIR."""

from pathlib import Path

import pytest

from vidgen.app.batch.jobs import JobFile, parse_jobs
from vidgen.core.errors import VidgenError

DEFAULTS = {"model": "tiny-cogvideox", "steps": 1, "negative_prompt": ""}


def jobs_from(text: str, label: str = "jobs.jsonl", defaults: dict | None = None, folder=None):
    file = JobFile(text, label, folder or Path("/data"))
    return parse_jobs(file, DEFAULTS if defaults is None else defaults, mode="t2v")


def test_jsonl_keys_override_the_command_line_and_names_default_to_the_line_number():
    jobs = jobs_from('{"prompt": " a cat ", "steps": 3}\n\n# a comment\n{"prompt": "a dog", "name": "dog"}\n')
    assert [(job.line, job.name, job.output, job.error) for job in jobs] == [
        (1, "00001", "00001.mp4", None),
        (4, "dog", "dog.mp4", None),
    ]
    first, second = (job.options for job in jobs)
    assert (first.prompt, first.steps, first.model, first.mode) == ("a cat", 3, "tiny-cogvideox", "t2v")
    assert second.steps == 1  # the command line's default


def test_csv_with_a_header_gives_typed_values_and_empty_cells_keep_the_defaults():
    text = 'prompt,seed,guidance,dynamic-cfg,name\n"a cat, walking",7,5,yes,cat\na dog,,,,\n'
    cat, dog = jobs_from(text, label="jobs.csv")
    assert (cat.line, cat.name, cat.error) == (2, "cat", None)
    assert (cat.options.prompt, cat.options.seed, cat.options.guidance, cat.options.dynamic_cfg) == (
        "a cat, walking",
        7,
        5.0,
        True,
    )
    assert (dog.name, dog.options.seed, dog.options.steps) == ("00003", None, 1)


def test_stdin_is_told_apart_by_its_first_character():
    (job,) = jobs_from("prompt\na cat\n", label="<stdin>")
    assert job.options.prompt == "a cat" and job.line == 2
    (job,) = jobs_from('{"prompt": "a dog"}\n', label="<stdin>")
    assert job.options.prompt == "a dog"


@pytest.mark.parametrize(
    "line, words",
    [
        ("not json", ["not valid JSON"]),
        ("[1, 2]", ["expected a JSON object"]),
        ('{"prompt": "a cat", "frame": 9}', ["'frame' is not a job key", "did you mean frames?"]),
        ('{"prompt": "a cat", "model": "cogvideox-5b"}', ["'model' cannot change per job", "--model"]),
        ('{"prompt": "a cat", "dtype": "bf16"}', ["'dtype' cannot change per job", "--dtype"]),
        ('{"prompt": "a cat", "output": "x.mp4"}', ["set 'name'"]),
        ('{"prompt": "a cat", "frames": "nine"}', ['frames must be a whole number, got "nine"']),
        ('{"prompt": "a cat", "frames": 9.5}', ["frames must be a whole number"]),
        ('{"prompt": "a cat", "dynamic_cfg": 1}', ["dynamic_cfg must be true or false"]),
        ('{"prompt": "a cat", "steps": 0}', ["steps 0 is too small"]),
        ('{"prompt": "a cat", "strength": 1.5}', ["strength 1.5 is too large"]),
        ('{"prompt": "a cat", "mode": "x2v"}', ["mode must be one of t2v, i2v, v2v"]),
        ('{"prompt": "a cat", "image": "cat.png"}', ["image is for i2v jobs; this job is t2v"]),
        ('{"prompt": "  "}', ["the prompt is missing"]),
        ('{"seed": 3}', ["the prompt is missing"]),
    ],
)
def test_a_bad_line_is_reported_with_its_reason_and_the_others_stay_good(line, words):
    good, bad, last = jobs_from('{"prompt": "a cat"}\n' + line + '\n{"prompt": "a dog"}\n')
    assert good.error is None and last.error is None
    assert bad.line == 2 and bad.options is None
    for word in words:
        assert word in bad.error


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", "a\\b", "..", ".hidden", "", "tab\there"])
def test_names_that_could_leave_outdir_or_hide_are_refused(name):
    (job,) = jobs_from(f'{{"prompt": "a cat", "name": "{name}"}}'.replace("\t", "\\t"))
    assert job.error is not None and "name" in job.error


def test_a_name_may_not_take_the_manifests_file():
    (job,) = jobs_from('{"prompt": "a cat", "name": "manifest.jsonl", "format": "png"}')
    assert "manifest" in job.error


def test_a_reused_name_fails_the_later_line_ignoring_case():
    first, second, third = jobs_from(
        '{"prompt": "a", "name": "cat"}\n{"prompt": "b", "name": "Cat"}\n{"prompt": "c", "name": "00001"}\n'
    )
    assert first.error is None
    assert second.error == "name 'Cat' is already used by line 1"
    assert third.error is None  # "00001" is only line 1's default name when line 1 has none


def test_outputs_that_collide_across_formats_fail_the_later_line():
    _, second = jobs_from('{"prompt": "a", "name": "x.mp4", "format": "png"}\n{"prompt": "b", "name": "x"}\n')
    assert "'x.mp4' is written by line 1 too" in second.error


def test_a_bad_csv_header_fails_the_whole_file_once():
    with pytest.raises(VidgenError, match=r"jobs.csv:1: column 'model' cannot change per job"):
        jobs_from("prompt,model\na cat,x\n", label="jobs.csv")


def test_an_empty_file_is_a_mistake():
    with pytest.raises(VidgenError, match="no jobs in jobs.jsonl"):
        jobs_from("\n# nothing\n")


def test_input_paths_are_relative_to_the_job_file(tmp_path):
    (job,) = jobs_from('{"prompt": "a cat", "mode": "i2v", "image": "in/cat.png"}', folder=tmp_path)
    assert job.options.image == str(tmp_path / "in" / "cat.png")


def test_the_spec_holds_what_decides_the_video_and_only_the_modes_inputs():
    t2v, v2v = jobs_from(
        '{"prompt": "a cat", "seed": 1}\n{"prompt": "b", "mode": "v2v", "video": "/c.mp4", "strength": 0.5}\n'
    )
    assert t2v.spec["seed"] == 1 and t2v.spec["steps"] == 1 and "image" not in t2v.spec
    assert t2v.spec["format"] == "mp4" and t2v.spec["model"] == "tiny-cogvideox"
    assert (v2v.spec["video"], v2v.spec["strength"]) == ("/c.mp4", 0.5)


# U+2028/U+2029, U+0085 and friends: str.splitlines breaks lines there, JSON Lines and CSV do not.
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"]


@pytest.mark.parametrize("separator", SEPARATORS[:3])  # JSON strings cannot hold raw control characters
def test_a_jsonl_prompt_holding_a_unicode_line_separator_stays_one_job(separator):
    line = '{"prompt": "a cat' + separator + 'on the beach", "seed": 1}'
    jobs = jobs_from(line + "\r\n" + '{"prompt": "a dog"}\n')
    assert [(job.line, job.error, job.options.prompt) for job in jobs] == [
        (1, None, f"a cat{separator}on the beach"),
        (2, None, "a dog"),
    ]


@pytest.mark.parametrize("separator", SEPARATORS)
def test_an_unquoted_csv_cell_holding_a_unicode_line_separator_stays_one_job(separator):
    jobs = jobs_from(f"prompt,seed\r\na cat{separator}on the beach,1\r\na dog,2\r\n", label="jobs.csv")
    assert [(job.line, job.error, job.options.prompt) for job in jobs] == [
        (2, None, f"a cat{separator}on the beach"),
        (3, None, "a dog"),
    ]
