"""`vidgen batch` end to end on the tiny model: failures stay per job, the manifest is complete, re-runs
resume without regenerating, names stay inside OUTDIR, --dry-run only checks, stdin works, Ctrl-C keeps
what finished.

The pipeline is the real one, counted (see `generated` in conftest.py): a job whose prompt contains
"explode" or "ctrl-c" fails that way instead of generating.
"""

import json
import os

import pytest


@pytest.fixture
def statuses(manifest):
    """`statuses(outdir)` -> name -> status of its latest record."""
    return lambda outdir: {record["name"]: record["status"] for record in manifest(outdir)}


def test_a_mixed_file_runs_every_good_job_records_every_line_and_exits_1(
    batch, generated, workdir, write_jobs, statuses, manifest
):
    write_jobs(
        workdir / "jobs.jsonl",
        {"prompt": "a cat", "seed": 1},
        {"prompt": "a cat", "frames": 10},  # not 4k+1
        {"prompt": "a dog", "seed": 2, "name": "dog"},
        {"prompt": "explode", "seed": 3},  # fails while generating
        "not json",
        {"prompt": "a cat", "seed": 4, "format": "gif"},  # the same prompt: its embedding is cached
    )
    run = batch("jobs.jsonl", "-o", "out", "--json")
    assert run.exit_code == 1, run.stderr
    assert generated == ["a cat", "a dog", "explode", "a cat"]
    summary = json.loads(run.stdout)
    assert (summary["jobs"], summary["ok"], summary["failed"], summary["skipped"]) == (6, 3, 3, 0)
    assert [failure["line"] for failure in summary["failures"]] == [2, 4, 5]
    assert summary["text_cache"]["hits"] >= 3  # "a cat" twice, the empty negative prompt thrice
    assert statuses(workdir / "out") == {
        "00001": "ok",
        "00002": "failed",
        "dog": "ok",
        "00004": "failed",
        "00005": "failed",
        "00006": "ok",
    }
    assert sorted(os.listdir(workdir / "out")) == [
        "00001.mp4",
        "00001.mp4.json",
        "00006.gif",
        "00006.gif.json",
        "dog.mp4",
        "dog.mp4.json",
        "manifest.jsonl",
    ]
    records = {record["name"]: record for record in manifest(workdir / "out")}
    assert records["00001"]["settings"]["seed"] == 1 and records["00001"]["output"] == "00001.mp4"
    assert "4k+1" in records["00002"]["error"] and "exploded" in records["00004"]["error"]
    assert "not valid JSON" in records["00005"]["error"]
    sidecar = json.loads((workdir / "out" / "dog.mp4.json").read_text())
    assert sidecar["prompt"] == "a dog" and sidecar["seed"] == 2
    assert "jobs.jsonl:2: --frames 10" in run.stderr and "Traceback" in run.stderr  # the bug's traceback
    assert "3 of 6 jobs failed (lines 2,4-5)" in run.stderr


def test_running_again_skips_finished_jobs_and_runs_failed_missing_and_changed_ones(
    batch, generated, workdir, write_jobs, statuses
):
    jobs = write_jobs(
        workdir / "jobs.jsonl",
        {"prompt": "a cat", "seed": 1},
        {"prompt": "explode", "seed": 2},
        {"prompt": "a dog", "seed": 3},
        {"prompt": "a fox", "seed": 4},
    )
    assert batch("jobs.jsonl", "-o", "out").exit_code == 1
    finished = (workdir / "out" / "00001.mp4").stat().st_mtime_ns
    write_jobs(
        jobs,
        {"prompt": "a cat", "seed": 1},
        {"prompt": "a bird", "seed": 2},  # the failed job, fixed
        {"prompt": "a dog", "seed": 3},
        {"prompt": "a fox", "seed": 5},  # changed: its old output no longer answers it
    )
    (workdir / "out" / "00003.mp4").unlink()  # missing
    generated.clear()

    again = batch("jobs.jsonl", "-o", "out")
    assert again.exit_code == 0, again.stderr
    assert generated == ["a bird", "a dog", "a fox"]
    assert (workdir / "out" / "00001.mp4").stat().st_mtime_ns == finished
    assert statuses(workdir / "out") == {"00001": "skipped", "00002": "ok", "00003": "ok", "00004": "ok"}
    generated.clear()

    third = batch("jobs.jsonl", "-o", "out", "--json")
    assert third.exit_code == 0 and generated == []
    assert json.loads(third.stdout)["skipped"] == 4


def test_names_never_place_a_file_outside_outdir(batch, generated, workdir, write_jobs):
    (workdir / "out").mkdir()
    write_jobs(
        workdir / "jobs.jsonl",
        {"prompt": "a", "name": "../evil"},
        {"prompt": "b", "name": "/abs"},
        {"prompt": "c", "name": "a/b"},
        {"prompt": "d", "name": "fine"},
    )
    run = batch("jobs.jsonl", "-o", "out")
    assert run.exit_code == 1 and generated == ["d"]
    assert sorted(os.listdir(workdir)) == ["jobs.jsonl", "out"]
    assert sorted(os.listdir(workdir / "out")) == ["fine.mp4", "fine.mp4.json", "manifest.jsonl"]
    for line in (1, 2, 3):
        assert f"jobs.jsonl:{line}: name" in run.stderr and "path separator" in run.stderr


def test_dry_run_reports_every_bad_line_and_writes_nothing(batch, generated, workdir, write_jobs):
    write_jobs(
        workdir / "jobs.jsonl",
        {"prompt": "a cat"},
        {"prompt": "a cat", "frames": 10},
        {"prompt": "a cat", "model": "tiny-cogvideox-i2v"},
        {"prompt": "a cat", "mode": "v2v", "video": "missing.mp4"},
        {"prompt": "a cat", "mode": "i2v"},  # tiny-cogvideox has no image input
    )
    run = batch("jobs.jsonl", "-o", "out", "--dry-run")
    assert run.exit_code == 2 and generated == []
    assert run.stdout == "dry run: 5 jobs: 4 invalid, 0 done before, 1 to run; nothing was generated\n"
    assert [line.split(": ")[1] for line in run.stderr_lines] == [f"jobs.jsonl:{n}" for n in (2, 3, 4, 5)]
    assert "missing.mp4' does not exist" in run.stderr_lines[2]
    assert "cannot do image-to-video" in run.stderr_lines[3]
    assert sorted(os.listdir(workdir)) == ["jobs.jsonl"]


def test_dry_run_of_a_good_file_exits_0(batch, workdir, write_jobs):
    write_jobs(workdir / "jobs.jsonl", {"prompt": "a cat"})
    assert batch("jobs.jsonl", "-o", "out", "--dry-run").exit_code == 0


def test_jobs_can_come_from_stdin_as_csv(batch, generated, workdir, statuses):
    run = batch("-", "-o", "out", "--quiet", input="prompt,seed\na cat,1\na dog,2\n")
    assert run.exit_code == 0, run.stderr
    assert generated == ["a cat", "a dog"] and run.stderr == ""
    assert statuses(workdir / "out") == {"00002": "ok", "00003": "ok"}  # line 1 is the header


def test_ctrl_c_keeps_finished_jobs_exits_130_and_the_next_run_finishes(
    batch, generated, workdir, write_jobs, statuses
):
    jobs = write_jobs(workdir / "jobs.jsonl", {"prompt": "a cat"}, {"prompt": "ctrl-c"}, {"prompt": "a dog"})
    run = batch("jobs.jsonl", "-o", "out", "--quiet")
    assert run.exit_code == 130
    assert len(run.stderr_lines) == 1 and run.stderr_lines[0].startswith("error: interrupted")
    assert "run the same command again to resume" in run.stderr
    assert statuses(workdir / "out") == {"00001": "ok", "00002": "started"}  # interrupted while running
    assert sorted(os.listdir(workdir / "out")) == ["00001.mp4", "00001.mp4.json", "manifest.jsonl"]
    write_jobs(jobs, {"prompt": "a cat"}, {"prompt": "a bird"}, {"prompt": "a dog"})
    generated.clear()
    assert batch("jobs.jsonl", "-o", "out", "--quiet").exit_code == 0
    assert generated == ["a bird", "a dog"]


def test_a_file_the_batch_did_not_make_is_replaced_only_with_overwrite(batch, generated, workdir, write_jobs):
    (workdir / "out").mkdir()
    (workdir / "out" / "00001.mp4").write_bytes(b"someone else's")
    write_jobs(workdir / "jobs.jsonl", {"prompt": "a cat"})
    run = batch("jobs.jsonl", "-o", "out")
    assert run.exit_code == 1 and generated == [] and "already exists" in run.stderr
    assert (workdir / "out" / "00001.mp4").read_bytes() == b"someone else's"
    assert batch("jobs.jsonl", "-o", "out", "--overwrite").exit_code == 0
    assert (workdir / "out" / "00001.mp4").read_bytes() != b"someone else's"


def test_a_mistake_in_the_command_is_one_line_before_any_job(batch, generated, workdir, write_jobs):
    write_jobs(workdir / "jobs.jsonl", {"prompt": "a cat"})
    (workdir / "a-file").write_text("")
    for args, words in (
        (["missing.jsonl", "-o", "out"], "no job file 'missing.jsonl'"),
        (["jobs.jsonl", "-o", "a-file"], "'a-file' is a file"),
    ):
        run = batch(*args)
        assert run.exit_code == 2 and len(run.stderr_lines) == 1 and words in run.stderr
    assert generated == []
