"""Job lines that Python's JSON reader accepts but no file can hold (a lone surrogate), or that it cannot
read at all (brackets nested 50,000 deep), fail their own job; the other jobs run, and the batch can be
checked, run and resumed."""

import json

import pytest

GOOD = json.dumps({"prompt": "a cat", "seed": 1})


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (
            '{"prompt": "a \\ud800 cat"}',
            "prompt is not valid UTF-8 text (a lone surrogate \\ud800 at character 3)",
        ),
        (
            '{"prompt": "a cat", "name": "x\\udcff"}',
            "name is not valid UTF-8 text (byte 0xff at character 2)",
        ),
        ('{"prompt": "a cat", "lora": ["\\udfff"]}', "lora is not valid UTF-8 text"),
        ('{"prompt\\ud800": "a cat"}', "a key is not valid UTF-8 text"),
    ],
)
def test_a_lone_surrogate_fails_its_job_in_a_dry_run(batch, workdir, line, words):
    (workdir / "jobs.jsonl").write_text(f"{line}\n{GOOD}\n")
    run = batch("jobs.jsonl", "-o", "out", "--dry-run", "--json")
    assert run.exit_code == 2, (run.stderr, run.exception)
    summary = json.loads(run.stdout)
    assert (summary["invalid"], summary["to_run"]) == (1, 1)
    (failure,) = summary["failures"]
    assert failure["line"] == 1 and words in failure["error"], failure


def test_a_lone_surrogate_fails_its_job_and_the_batch_runs_and_resumes(batch, generated, workdir, manifest):
    (workdir / "jobs.jsonl").write_text(f'{{"prompt": "a \\ud800 cat", "name": "bad"}}\n{GOOD}\n')
    for _ in range(2):  # the second run resumes: the good job is done, the bad one fails again
        run = batch("jobs.jsonl", "-o", "out", "--quiet")
        assert run.exit_code == 1, (run.stderr, run.exception)
    assert generated == ["a cat"]
    records = manifest(workdir / "out")
    assert [(record["name"], record["status"]) for record in records if record["status"] != "started"] == [
        ("00001", "failed"),
        ("00002", "ok"),
        ("00001", "failed"),
        ("00002", "skipped"),
    ]
    assert "not valid UTF-8 text" in records[0]["error"]


def test_brackets_nested_50000_deep_fail_their_line(batch, workdir):
    (workdir / "jobs.jsonl").write_text(
        "[" * 50_000 + "\n" + GOOD + "\n" + '{"prompt": ' + "[" * 900 + "]" * 900 + "}\n"
    )
    run = batch("jobs.jsonl", "-o", "out", "--dry-run", "--json")
    assert run.exit_code == 2, (run.stderr, run.exception)
    first, third = json.loads(run.stdout)["failures"]
    assert first["line"] == 1 and "nested too deeply" in first["error"]
    assert third["line"] == 3 and "prompt must be text" in third["error"]


def test_jobs_piped_in_that_are_not_utf8_are_one_line_and_exit_2(batch, workdir):
    run = batch("-", "-o", "out", input=b'{"prompt": "a \xff cat"}\n')
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert run.stderr_lines == [
        "error: the jobs on stdin are not valid UTF-8 text (byte 0xff) (pipe in a UTF-8 JSONL or CSV file)"
    ]
