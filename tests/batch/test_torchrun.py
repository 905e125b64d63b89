"""`vidgen batch` under torchrun: two CPU ranks (gloo) share the jobs, each job runs exactly once."""

import collections
import subprocess
import sys

from vidgen.families import registry


def test_two_ranks_run_every_job_exactly_once_and_rank_0_reports_for_both(
    workdir, small, write_jobs, manifest
):
    registry.ensure_tiny("cogvideox", "t2v")  # built once here, not raced by the two ranks
    write_jobs(
        workdir / "jobs.jsonl",
        *({"prompt": f"a cat {n % 2}", "seed": n} for n in range(1, 4)),
        {"prompt": "a dog", "frames": 10},  # line 4, index 3: rank 1's, and invalid
        {"prompt": "a dog", "seed": 5},
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "vidgen", "batch", "jobs.jsonl", "-o", "out", "--quiet", *small]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)

    records = manifest(workdir / "out")
    ok = collections.Counter(record["name"] for record in records if record["status"] == "ok")
    assert ok == {name: 1 for name in ("00001", "00002", "00003", "00005")}, run.stderr
    by_rank = {record["name"]: record["rank"] for record in records}
    assert by_rank == {"00001": 0, "00002": 1, "00003": 0, "00004": 1, "00005": 0}
    assert sorted(path.name for path in (workdir / "out").glob("manifest*")) == [
        "manifest.rank0.jsonl",
        "manifest.rank1.jsonl",
    ]
    assert all((workdir / "out" / f"{name}.mp4").is_file() for name in ok)
    assert not (workdir / "out" / ".vidgen-batch.lock").exists()  # shared by the ranks, then released
    # Rank 0 speaks for both: one summary, and the failure on rank 1 makes the whole run fail.
    assert run.returncode != 0
    assert run.stdout.count("batch: 5 jobs: 4 ok, 1 failed, 0 skipped") == 1, run.stdout
    assert "jobs.jsonl:4: --frames 10" in run.stderr
