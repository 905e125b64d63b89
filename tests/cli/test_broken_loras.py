"""LoRA files that cannot make a video: NaN or infinite numbers, numbers past the run's dtype, matrices
whose ranks disagree, a `null` safetensors header, and fused weights that overflow. Each is one line
and exit 2, never a black video recorded as done; a decode full of NaN is an error too.

The LoRAs are written by hand (two rank-4 projections of the tiny CogVideoX, inner width 32), so each
test shows exactly which numbers are wrong.
"""

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vidgen.stages import vae as vae_stage

LAYER = "transformer.transformer_blocks.0.attn1.to_q"
WIDTH = 32  # the tiny CogVideoX's inner dimension


def write_lora(path, a: torch.Tensor, b: torch.Tensor):
    save_file({f"{LAYER}.lora_A.weight": a, f"{LAYER}.lora_B.weight": b}, path)
    return path


def small(value: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((4, WIDTH), value), torch.full((WIDTH, 4), value)


def broken_loras(workdir) -> dict[str, tuple[str, ...]]:
    """Case -> the file's --lora text and any other options."""
    a, b = small()
    nan, inf, large = a.clone(), b.clone(), a.clone()
    nan[1, 2], inf[3, 0], large[0, 0] = float("nan"), float("inf"), 1e5
    (workdir / "null.safetensors").write_bytes(struct.pack("<Q", 4) + b"null")
    return {
        "nan": (str(write_lora(workdir / "nan.safetensors", nan, b)),),
        "inf": (str(write_lora(workdir / "inf.safetensors", a, inf)),),
        "past fp16": (str(write_lora(workdir / "large.safetensors", large, b)), "--dtype", "fp16"),
        "ranks": (str(write_lora(workdir / "ranks.safetensors", a, torch.full((WIDTH, 3), 0.01))),),
        "no B": (str(write_lora(workdir / "a-only.safetensors", a, b)),),
        "null header": (str(workdir / "null.safetensors"),),
    }


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("nan", "holds NaN or infinite numbers (transformer_blocks.0.attn1.to_q.lora_A.weight)"),
        ("inf", "holds NaN or infinite numbers (transformer_blocks.0.attn1.to_q.lora_B.weight)"),
        ("past fp16", "holds numbers too large for fp16"),
        ("ranks", "lora_A has rank 4, its lora_B rank 3"),
        ("no B", "has a lora_A matrix but no lora_B"),
        ("null header", "its header is a JSON null, not an object"),
    ],
)
def test_a_broken_lora_is_one_line_and_exit_2_before_the_model_loads(
    vidgen, workdir, stand_in_pipeline, case, words
):
    lora, *options = broken_loras(workdir)[case]
    if case == "no B":
        save_file({f"{LAYER}.lora_A.weight": small()[0]}, lora)
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "--lora", lora, *options, "-o", "out.mp4")
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and words in run.stderr, run.stderr
    assert stand_in_pipeline.calls == []  # nothing loaded
    assert not (workdir / "out.mp4").exists()


def test_a_batch_job_with_a_nan_lora_is_invalid_in_a_dry_run(vidgen, workdir):
    nan = broken_loras(workdir)["nan"][0]
    jobs = [{"prompt": "a cat"}, {"prompt": "a dog", "lora": nan}]
    (workdir / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    run = vidgen("batch", "jobs.jsonl", "-o", "out", "--model", "tiny-cogvideox", "--dry-run", "--json")
    assert run.exit_code == 2, run.stderr
    (failure,) = json.loads(run.stdout)["failures"]
    assert failure["line"] == 2 and "NaN or infinite" in failure["error"]


def test_a_lora_whose_fused_weights_overflow_fp16_is_one_line_and_exit_2(vidgen, workdir):
    # Every number fits fp16, but B @ A is 4 * 200 * 200 = 160,000 per weight: past fp16's 65,504.
    lora = write_lora(workdir / "strong.safetensors", *small(200.0))
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "--steps", "1", "--dtype", "fp16",
                 "--lora", str(lora), "-o", "out.mp4", "--quiet")  # fmt: skip
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1, run.stderr
    assert "strong.safetensors' at scale 1 fused into the transformer gives weights past fp16" in run.stderr
    assert not (workdir / "out.mp4").exists()


@pytest.fixture
def nan_decode(monkeypatch):
    """The VAE decodes every frame to NaN, as it does when the transformer's numbers overflowed."""
    decode = vae_stage.decode
    monkeypatch.setattr(vae_stage, "decode", lambda *args: np.full_like(decode(*args), np.nan))


def test_a_decode_full_of_nan_is_an_error_not_a_black_video(vidgen, workdir, nan_decode):
    run = vidgen("t2v", "--model", "tiny-cogvideox", "a cat", "--steps", "1", "-o", "out.mp4", "--quiet")
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and "the decoded video is NaN" in run.stderr, run.stderr
    assert not (workdir / "out.mp4").exists()


def test_a_batch_job_decoded_to_nan_is_recorded_failed_not_ok(vidgen, workdir, nan_decode):
    (workdir / "jobs.jsonl").write_text(json.dumps({"prompt": "a cat"}) + "\n")
    run = vidgen("batch", "jobs.jsonl", "-o", "out", "--model", "tiny-cogvideox", "--steps", "1",
                 "--height", "32", "--width", "32", "--frames", "1", "--quiet")  # fmt: skip
    assert run.exit_code == 1, run.stderr
    (*_, record) = [json.loads(line) for line in (workdir / "out" / "manifest.jsonl").open()]
    assert record["status"] == "failed" and "the decoded video is NaN" in record["error"]
    assert not (workdir / "out" / "00001.mp4").exists()


def test_a_batch_job_whose_lora_fails_to_fuse_fails_alone_and_the_next_set_still_runs(vidgen, workdir):
    # Each number fits fp32, but B @ A is 4e38 per weight: past fp32's 3.4e38. Jobs run grouped by LoRA
    # set: none, then strong (fails as it fuses), then weak (loads a fresh transformer).
    strong = write_lora(workdir / "strong.safetensors", *small(1e19))
    weak = write_lora(workdir / "weak.safetensors", *small(0.01))
    jobs = [
        {"prompt": "a cat", "name": "weak", "lora": str(weak)},
        {"prompt": "a cat", "name": "strong", "lora": str(strong)},
        {"prompt": "a cat", "name": "plain"},
    ]
    (workdir / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    run = vidgen("batch", "jobs.jsonl", "-o", "out", "--model", "tiny-cogvideox", "--steps", "1",
                 "--height", "32", "--width", "32", "--frames", "1", "--quiet")  # fmt: skip
    assert run.exit_code == 1, (run.stderr, run.exception)
    records = [json.loads(line) for line in (workdir / "out" / "manifest.jsonl").open()]
    done = {record["name"]: record for record in records if record["status"] != "started"}
    assert {name: record["status"] for name, record in done.items()} == {
        "plain": "ok",
        "strong": "failed",
        "weak": "ok",
    }
    assert "fused into the transformer gives weights past fp32's range" in done["strong"]["error"]
