"""`vidgen batch` against hostile job files and hostile conditions (issue 15): one bad job never stops
the others, the manifest stays strict JSON whatever happens, resume repairs what a crash tore.
"""

import json
import os

import numpy as np
import pytest

from vidgen.io.writer import VideoWriter


def strict_records(outdir) -> list[dict]:
    """Every manifest line, parsed as strict JSON: NaN, Infinity and torn lines fail the test."""

    def refuse(name):
        raise AssertionError(f"manifest holds the non-JSON token {name}")

    return [
        json.loads(line, parse_constant=refuse)
        for path in sorted(outdir.glob("manifest*.jsonl"))
        for line in path.read_text(encoding="utf-8").split("\n")
        if line
    ]


def write_clip(path, frames: int = 9) -> None:
    with VideoWriter.open(path, 8, "mp4") as writer:
        writer.write(np.full((frames, 32, 32, 3), 128, dtype=np.uint8))


def test_non_finite_numbers_fail_their_own_line_and_the_manifest_stays_strict_json(
    batch, generated, workdir, write_jobs
):
    write_clip(workdir / "clip.mp4")
    write_jobs(
        workdir / "jobs.jsonl",
        '{"prompt": "a cat", "mode": "v2v", "video": "clip.mp4", "frames": 9, "strength": NaN}',
        {"prompt": "a dog", "seed": 1},
        '{"prompt": "a fox", "guidance": Infinity}',
        '{"prompt": "an owl", "guidance": 1e400}',
        {"prompt": "a bee", "guidance": "nan"},
        {"prompt": "a cow", "guidance": "-inf"},
    )
    run = batch("jobs.jsonl", "-o", "out", "--json")
    assert run.exit_code == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert generated == ["a dog"]
    summary = json.loads(run.stdout)
    assert [failure["line"] for failure in summary["failures"]] == [1, 3, 4, 5, 6]
    records = {record["line"]: record for record in strict_records(workdir / "out")}
    assert records[2]["status"] == "ok"
    assert {line: records[line]["status"] for line in (1, 3, 4, 5, 6)} == dict.fromkeys(
        (1, 3, 4, 5, 6), "failed"
    )
    assert "NaN is not a JSON number" in records[1]["error"]
    assert "finite" in records[5]["error"]
    for line in (1, 3, 4, 5, 6):
        assert f"jobs.jsonl:{line}:" in run.stderr


def test_a_csv_cell_of_nan_or_inf_fails_its_line(batch, generated, workdir):
    write_clip(workdir / "clip.mp4")
    (workdir / "jobs.csv").write_text(
        "prompt,guidance,mode,video,frames,strength\n"
        "a cat,nan,,,,\n"
        "a dog,inf,,,,\n"
        "a fox,6,,,,\n"
        "an owl,,v2v,clip.mp4,9,nan\n"
    )
    run = batch("jobs.csv", "-o", "out")
    assert run.exit_code == 1 and generated == ["a fox"] and "Traceback" not in run.stderr
    statuses = {record["line"]: record["status"] for record in strict_records(workdir / "out")}
    assert statuses == {2: "failed", 3: "failed", 4: "ok", 5: "failed"}


def test_a_record_holding_a_non_finite_number_is_still_one_strict_json_line():
    from vidgen.app.batch.manifest import Record, record_line

    line = record_line(Record("a", 1, "failed", job={"guidance": float("nan"), "sizes": [float("-inf")]}))
    assert line.endswith("\n") and line.count("\n") == 1
    values = json.loads(line, parse_constant=lambda name: pytest.fail(name))
    assert values["job"] == {"guidance": "nan", "sizes": ["-inf"]}


def test_resume_compares_resolved_settings_not_how_they_were_spelled(batch, generated, workdir, write_jobs):
    jobs = write_jobs(workdir / "jobs.jsonl", {"prompt": "a cat", "seed": 1}, {"prompt": "a dog", "seed": 2})
    assert batch("jobs.jsonl", "-o", "out").exit_code == 0
    generated.clear()
    # 6.0 and 8 fps are tiny-cogvideox's own guidance and frame rate; "mode": "t2v" is the default mode.
    assert batch("jobs.jsonl", "-o", "out", "--guidance", "6.0").exit_code == 0
    write_jobs(jobs, {"prompt": "a cat", "seed": 1, "fps": 8, "mode": "t2v"}, {"prompt": "a dog", "seed": 2})
    assert batch("jobs.jsonl", "-o", "out", "--guidance", "6").exit_code == 0
    assert generated == []
    assert batch("jobs.jsonl", "-o", "out", "--guidance", "7").exit_code == 0
    assert generated == ["a cat", "a dog"]  # a real change still runs again


def test_checking_a_batch_decodes_each_distinct_input_file_once(invoke_cli, workdir, write_jobs, monkeypatch):
    from PIL import Image

    Image.new("RGB", (96, 64), (200, 30, 30)).save(workdir / "photo.png")
    Image.new("RGB", (96, 64), (30, 200, 30)).save(workdir / "other.png")
    write_jobs(
        workdir / "jobs.jsonl",
        *({"prompt": f"a cat {n}", "image": "photo.png"} for n in range(5)),
        {"prompt": "a dog", "image": "other.png"},
        {"prompt": "a fox", "image": "./photo.png"},  # the same file by another name
    )
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *args: opened.append(path) or real_open(path, *args))
    run = invoke_cli("batch", "jobs.jsonl", "-o", "out", "--model", "tiny-cogvideox-i2v", "--dry-run")
    assert run.exit_code == 0, run.stderr
    assert sorted(os.path.basename(path) for path in opened) == ["other.png", "photo.png"]


def test_an_input_file_that_changes_is_read_again(tmp_path):
    from PIL import Image

    from vidgen.validate.common import InputReader

    reader = InputReader()
    Image.new("RGB", (8, 8), (0, 0, 0)).save(tmp_path / "a.png")
    assert reader.image(str(tmp_path / "a.png"))[0, 0, 0] == 0
    assert reader.image(str(tmp_path / "a.png")) is reader.image(str(tmp_path / "a.png"))
    Image.new("RGB", (8, 9), (255, 0, 0)).save(tmp_path / "a.png")
    assert reader.image(str(tmp_path / "a.png"))[0, 0, 0] == 255


def test_a_torn_manifest_line_is_repaired_on_resume_and_its_job_runs_again(
    batch, generated, workdir, write_jobs
):
    write_jobs(workdir / "jobs.jsonl", {"prompt": "a cat"}, {"prompt": "a dog"}, {"prompt": "a fox"})
    assert batch("jobs.jsonl", "-o", "out").exit_code == 0
    manifest = workdir / "out" / "manifest.jsonl"
    whole = manifest.read_bytes()
    manifest.write_bytes(whole[: whole.rindex(b'"status"') + 12])  # killed while writing the last record
    generated.clear()

    resumed = batch("jobs.jsonl", "-o", "out")
    assert resumed.exit_code == 0, resumed.stderr
    assert "already exists" not in resumed.stderr
    assert generated == ["a fox"]
    records = [(record["name"], record["status"]) for record in strict_records(workdir / "out")]
    assert [record for record in records if record[1] != "started"] == [
        ("00001", "ok"),
        ("00002", "ok"),
        ("00001", "skipped"),
        ("00002", "skipped"),
        ("00003", "ok"),
    ]
    generated.clear()

    again = batch("jobs.jsonl", "-o", "out")
    assert again.exit_code == 0 and generated == []
    assert "not a manifest record" not in again.stderr  # the warning does not repeat


def test_repair_drops_only_torn_lines_and_leaves_a_whole_manifest_alone(tmp_path):
    from vidgen.app.batch.manifest import Record, record_line, repair, torn_names

    path = tmp_path / "manifest.jsonl"
    good = record_line(Record("a", 1, "ok", output="a.mp4"))
    path.write_text(good + '{"name": "b\\"x", "line": 2, "sta' + "\n" + good + '{"name": "c", "li')
    assert torn_names(tmp_path) == {'b"x', "c"}
    assert repair(path) is True
    assert path.read_text() == good + good
    before = path.stat().st_mtime_ns
    assert repair(path) is False and path.stat().st_mtime_ns == before
    assert sorted(os.listdir(tmp_path)) == ["manifest.jsonl"]


def test_a_full_disk_stops_the_batch_with_one_line_and_every_manifest_line_whole(
    batch, workdir, write_jobs, small
):
    import resource
    import subprocess
    import sys

    assert batch("-", "-o", "warm", input='{"prompt": "warm the tiny model cache"}\n').exit_code == 0
    write_jobs(workdir / "jobs.jsonl", *({"prompt": f"a cat {n}", "seed": n} for n in range(8)))
    limit = 4000  # a video (~3 kB) and its sidecar fit; the manifest outgrows it after about 5 records

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    command = [sys.executable, "-m", "vidgen", "batch", "jobs.jsonl", "-o", "out", "--quiet", *small]
    run = subprocess.run(command, capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: cannot record job"), run.stderr
    manifest = (workdir / "out" / "manifest.jsonl").read_bytes()
    assert manifest.endswith(b"\n") and len(manifest) <= limit
    recorded = strict_records(workdir / "out")
    finished = [record["name"] for record in recorded if record["status"] == "ok"]
    assert 2 <= len(finished) < 8 and {record["status"] for record in recorded} == {"started", "ok"}

    resumed = batch("jobs.jsonl", "-o", "out")
    assert resumed.exit_code == 0, resumed.stderr
    latest = {record["name"]: record["status"] for record in strict_records(workdir / "out")}
    assert len(latest) == 8 and set(latest.values()) <= {"ok", "skipped"}


def dead_pid() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_batch_on_an_outdir_another_live_batch_holds_exits_2_with_one_line(batch, generated, workdir):
    import socket
    import subprocess

    (workdir / "out").mkdir()
    with subprocess.Popen(["sleep", "60"]) as holder:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "group": None}
        (workdir / "out" / ".vidgen-batch.lock").write_text(json.dumps(lock))
        run = batch("-", "-o", "out", input='{"prompt": "a cat"}\n')
        holder.kill()
    assert run.exit_code == 2 and generated == []
    assert len(run.stderr_lines) == 1 and "in use by another vidgen batch" in run.stderr
    assert f"process {holder.pid}" in run.stderr
    assert sorted(os.listdir(workdir / "out")) == [".vidgen-batch.lock"]  # the holder's, untouched


def test_a_stale_lock_from_a_dead_process_on_this_host_is_taken_over(batch, generated, workdir):
    import socket

    (workdir / "out").mkdir()
    lock = {"pid": dead_pid(), "host": socket.gethostname(), "group": None}
    (workdir / "out" / ".vidgen-batch.lock").write_text(json.dumps(lock))
    run = batch("-", "-o", "out", input='{"prompt": "a cat"}\n')
    assert run.exit_code == 0, run.stderr
    assert generated == ["a cat"] and not (workdir / "out" / ".vidgen-batch.lock").exists()


def test_two_batches_started_together_on_one_outdir_never_both_generate(batch, workdir, write_jobs, small):
    import subprocess
    import sys

    assert batch("-", "-o", "warm", input='{"prompt": "warm the tiny model cache"}\n').exit_code == 0
    write_jobs(workdir / "jobs.jsonl", *({"prompt": f"a cat {n}", "seed": n} for n in range(4)))
    command = [sys.executable, "-m", "vidgen", "batch", "jobs.jsonl", "-o", "out", "--quiet", *small]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((run.wait(timeout=300), run.stderr.read()) for run in runs)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    assert "in use by another vidgen batch" in outcomes[1][1] and "Traceback" not in outcomes[1][1]
    made = [record["name"] for record in strict_records(workdir / "out") if record["status"] == "ok"]
    assert sorted(made) == ["00001", "00002", "00003", "00004"]  # each job generated once
    assert not (workdir / "out" / ".vidgen-batch.lock").exists()


def test_the_ranks_of_one_torchrun_run_share_the_lock_and_other_runs_are_refused(tmp_path):
    from vidgen.app.batch.lock import group_id, outdir_lock
    from vidgen.core.errors import VidgenError
    from vidgen.runtime.ranks import Rank

    env = {"TORCHELASTIC_RUN_ID": "run-1", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    ours, theirs = group_id(Rank(0, 2), env), group_id(Rank(0, 2), {**env, "TORCHELASTIC_RUN_ID": "run-2"})
    with outdir_lock(tmp_path / "out", ours):  # rank 0 creates it
        with outdir_lock(tmp_path / "out", group_id(Rank(1, 2), env)):  # rank 1 joins
            pass
        assert (tmp_path / "out" / ".vidgen-batch.lock").exists()  # the joiner leaves it to its creator
        with (
            pytest.raises(VidgenError, match="in use by another vidgen batch"),
            outdir_lock(tmp_path / "out", theirs),
        ):
            pass
    assert not (tmp_path / "out").exists()  # nothing else went into it


def test_a_check_that_raises_unexpectedly_fails_only_its_own_line(batch, generated, workdir, monkeypatch):
    import vidgen.app.batch.runner as runner

    real = runner.plan_job

    def plan_job(job, *args, **kwargs):
        if job.options.prompt == "a strange job":
            raise ValueError("cannot convert float NaN to integer")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(runner, "plan_job", plan_job)
    run = batch("-", "-o", "out", input='{"prompt": "a strange job"}\n{"prompt": "a dog"}\n')
    assert run.exit_code == 1, run.stderr
    assert generated == ["a dog"] and "Traceback" not in run.stderr
    assert "<stdin>:1: cannot check this job: ValueError: cannot convert float NaN to integer" in run.stderr
