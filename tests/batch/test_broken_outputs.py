"""A resumed batch trusts a manifest's "ok" only while the output it names is there and whole."""

import json


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
