"""N jobs as one `vidgen batch` against a shell-style loop of N `vidgen t2v` runs, on the same model.

Each `vidgen t2v` starts Python, imports torch and diffusers and loads the model before it generates;
`vidgen batch` does that once. The jobs are the same in both (prompt and seed per job, every other
setting the preset's), and the bench checks that both ways wrote the same frames. Every command runs as
its own process, as a user would run it; the tiny model is built before timing starts.

    python bench/batch_vs_loop.py                                # 8 jobs on tiny-cogvideox
    python bench/batch_vs_loop.py --jobs 16 --clock cpu          # a busy shared CPU machine
    python bench/batch_vs_loop.py --model cogvideox-2b --device cuda --jobs 4 --steps 50

`--clock cpu` counts the CPU seconds of the child processes (user + system), steadier than wall time
when other work shares the machine; on a GPU use the wall clock.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np

VIDGEN = [sys.executable, "-m", "vidgen"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-cogvideox")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--shared-prompts",
        action="store_true",
        help="two prompts across all jobs (the batch then reuses their embeddings); default: all distinct",
    )
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    return parser.parse_args()


def common_options(args: argparse.Namespace) -> list[str]:
    options = ["--model", args.model, "--quiet"]
    options += ["--steps", str(args.steps)] if args.steps else []
    return options + (["--device", args.device] if args.device else [])


def jobs(args: argparse.Namespace) -> list[dict]:
    subjects = ["a cat walks on the beach", "a red fox runs through snow"]
    prompts = [
        subjects[n % 2] if args.shared_prompts else f"{subjects[n % 2]}, take {n}" for n in range(args.jobs)
    ]
    return [{"name": f"job{n}", "prompt": prompt, "seed": n} for n, prompt in enumerate(prompts)]


def timed(run: Callable[[], None], clock: str) -> float:
    """Seconds that `run` took: wall time, or the CPU time of the processes it started."""
    before_wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if clock == "cpu":
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - before_wall


def run_loop(job_list: list[dict], folder: Path, options: list[str]) -> None:
    for job in job_list:
        output = folder / f"{job['name']}.mp4"
        command = [*VIDGEN, "t2v", job["prompt"], "--seed", str(job["seed"]), "-o", str(output), *options]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def run_batch(job_list: list[dict], folder: Path, options: list[str]) -> None:
    jobs_file = folder.parent / "jobs.jsonl"
    jobs_file.write_text("".join(json.dumps(job) + "\n" for job in job_list))
    subprocess.run(
        [*VIDGEN, "batch", str(jobs_file), "-o", str(folder), *options], check=True, stdout=subprocess.DEVNULL
    )


def same_frames(job_list: list[dict], loop: Path, batch: Path) -> bool:
    return all(
        np.array_equal(iio.imread(loop / f"{job['name']}.mp4"), iio.imread(batch / f"{job['name']}.mp4"))
        for job in job_list
    )


def main() -> None:
    args = parse_args()
    options, job_list = common_options(args), jobs(args)
    with tempfile.TemporaryDirectory() as scratch:
        loop, batch = Path(scratch) / "loop", Path(scratch) / "batch"
        loop.mkdir()
        # Build the tiny model (or download a hub one) before timing: neither way should pay for it.
        warm_up = [*VIDGEN, "t2v", "warm up", "--seed", "0", "-o", f"{scratch}/warm-up.mp4", *options]
        subprocess.run(warm_up, check=True, stdout=subprocess.DEVNULL)
        loop_seconds = timed(lambda: run_loop(job_list, loop, options), args.clock)
        batch_seconds = timed(lambda: run_batch(job_list, batch, options), args.clock)
        identical = same_frames(job_list, loop, batch)
    prompts = "2 shared prompts" if args.shared_prompts else "distinct prompts"
    print(f"{args.model}, {args.jobs} jobs, {prompts}, {args.clock} clock, device {args.device or 'default'}")
    print(
        f"  loop of {args.jobs} `vidgen t2v`: {loop_seconds:8.1f} s  ({loop_seconds / args.jobs:.2f} s a job)"
    )
    print(f"  one `vidgen batch`:      {batch_seconds:8.1f} s  ({batch_seconds / args.jobs:.2f} s a job)")
    same = "yes" if identical else "NO"
    print(f"  ratio loop/batch: {loop_seconds / batch_seconds:.2f}x   (same frames: {same})")


if __name__ == "__main__":
    main()
