"""A resumed batch trusts a manifest's "ok" only while the output it names is there and whole; SIGTERM
stops a batch as Ctrl-C does."""

import json
import os
import signal
import time

import vidgen.families.cogvideox.pipeline as cogvideox


def test_resume_reruns_a_done_job_whose_output_was_cut_short_or_removed(batch, generated, workdir):
    (workdir / "jobs.jsonl").write_text(
        json.dumps({"prompt": "a cat", "seed": 1}) + "\n" + json.dumps({"prompt": "a dog", "seed": 2}) + "\n"
    )
    assert batch("jobs.jsonl", "-o", "out").exit_code == 0
    video = (workdir / "out" / "00001.mp4").read_bytes()
    (workdir / "out" / "00001.mp4").write_bytes(video[: len(video) // 2])  # a copy cut short
    (workdir / "out" / "00002.mp4").unlink()
    run = batch("jobs.jsonl", "-o", "out", "--json")
    assert run.exit_code == 0, run.stderr
    assert generated == ["a cat", "a dog", "a cat", "a dog"]
    summary = json.loads(run.stdout)
    assert (summary["ok"], summary["skipped"]) == (2, 0)
    assert (workdir / "out" / "00001.mp4").read_bytes() != video[: len(video) // 2]


def test_sigterm_stops_a_batch_as_ctrl_c_does_with_exit_143(batch, workdir, monkeypatch, manifest):
    real = cogvideox.generate

    def terminated_on_the_second_job(model, request, runtime, progress, text_cache=None):
        if request.prompt == "a dog":
            os.kill(os.getpid(), signal.SIGTERM)  # handled before kill returns
            time.sleep(30)
        return real(model, request, runtime, progress, text_cache=text_cache)

    monkeypatch.setattr(cogvideox, "generate", terminated_on_the_second_job)
    (workdir / "jobs.jsonl").write_text(
        json.dumps({"prompt": "a cat", "seed": 1}) + "\n" + json.dumps({"prompt": "a dog", "seed": 2}) + "\n"
    )
    run = batch("jobs.jsonl", "-o", "out", "--quiet")
    assert run.exit_code == 143, run.stderr
    assert len(run.stderr_lines) == 1 and run.stderr_lines[0].startswith("error: interrupted")
    latest = {record["name"]: record["status"] for record in manifest(workdir / "out")}
    assert latest["00001"] == "ok" and latest.get("00002") != "ok"
    outputs = sorted(name for name in os.listdir(workdir / "out") if name.startswith("0000"))
    assert outputs == ["00001.mp4", "00001.mp4.json"]
