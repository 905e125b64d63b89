"""One video on two CPU ranks (torchrun, gloo): the frames equal the one-process run's.

Ulysses and cfg run on the CPU; ring attention does not (diffusers merges ring partial results by their
log-sum-exp, which only its CUDA kernels return), so ring is checked for its one-line error here.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from parity import assert_uint8_matches, read_png_folder
from PIL import Image

from vidgen import tiny

LAUNCHER = Path(__file__).with_name("counting_launcher.py")
BENCH = Path(__file__).parents[2] / "bench" / "cp_scaling.py"
COGVIDEOX = ("-m", "tiny-cogvideox", "a cat", "--seed", "3", "--steps", "2")
HELIOS = ("-m", "tiny-helios-distilled", "a cat", "--seed", "3", "--frames", "99")


@pytest.fixture(autouse=True)
def workdir(offline_workdir):
    return offline_workdir


@pytest.fixture
def vidgen(invoke_cli):
    return invoke_cli


def torchrun(*argv: str, ranks: int = 2, rank_args: str = "") -> subprocess.CompletedProcess:
    """`vidgen *argv` on `ranks` CPU processes, collectives counted into ./counts/rankN.json."""
    env = {**os.environ, "VIDGEN_COUNT_DIR": "counts", "RANK_ARGS": rank_args}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    command += [str(LAUNCHER), *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def one_process(vidgen, *argv: str) -> np.ndarray:
    run = vidgen(*argv, "--format", "png", "-o", "one", "--quiet")
    assert run.exit_code == 0, run.stderr
    return read_png_folder(Path("one"))


def counts(rank: int) -> dict[str, int]:
    return json.loads(Path(f"counts/rank{rank}.json").read_text())


def scaling():
    spec = importlib.util.spec_from_file_location("cp_scaling", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_t2v_ulysses_equals_one_process_and_moves_the_bytes_the_scaling_model_counts(vidgen):
    tiny.ensure_tiny("cogvideox", "t2v")  # built once here, not raced by the ranks
    reference = one_process(vidgen, "t2v", *COGVIDEOX)
    run = torchrun("t2v", *COGVIDEOX, "--format", "png", "-o", "two")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_uint8_matches(read_png_folder(Path("two")), reference)
    # Rank 0 alone reports and writes; the sidecar names the plan.
    assert run.stdout.count("wrote two") == 1
    parallel = json.loads(Path("two.json").read_text())["runtime"]["parallel"]
    assert parallel == {"world_size": 2, "cfg": 1, "ulysses": 2, "ring": 1, "plan": "2-way ulysses"}
    # Per rank and step (2 steps): 4 all-to-alls (q, k, v, out) per layer over [2 branches, (226 + 72) / 2
    # tokens, 2 heads x 16] in fp32, and the video gathered once, [2, 72 / 2, 2 x 2 x 4]: 9 frames at
    # 64x96 are 3 latent frames of 4 x 6 patches, 72 video tokens.
    model = scaling()
    for rank in (0, 1):
        tally = counts(rank)
        assert tally["all_to_all_single"] == 2 * model.ulysses_bytes_per_rank(
            batch=2, tokens=226 + 72, width=32, layers=2, ranks=2, element=4
        )
        assert tally["all_gather_tensor"] == 2 * model.gather_bytes_per_rank(
            batch=2, tokens=72, width=16, ranks=2, element=4
        )


def test_t2v_cfg_parallel_equals_one_process(vidgen):
    tiny.ensure_tiny("cogvideox", "t2v")
    reference = one_process(vidgen, "t2v", *COGVIDEOX)
    run = torchrun("t2v", *COGVIDEOX, "--parallel", "cfg", "--format", "png", "-o", "two")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_uint8_matches(read_png_folder(Path("two")), reference)
    assert json.loads(Path("two.json").read_text())["runtime"]["parallel"]["plan"] == "2-way cfg"
    # One gather per step (2 steps) of the [1, F, C, H, W] fp32 prediction (3 latent frames, 4 channels,
    # 8 x 12), and no attention traffic.
    assert counts(0)["all_gather"] == 2 * 3 * 4 * 8 * 12 * 4
    assert "all_to_all_single" not in counts(0)


def test_i2v_ulysses_equals_one_process(vidgen):
    tiny.ensure_tiny("cogvideox", "i2v")
    pixels = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save("photo.png")
    argv = ("i2v", "-m", "tiny-cogvideox-i2v", "--image", "photo.png", "a cat", "--seed", "3", "--steps", "2")
    reference = one_process(vidgen, *argv)
    run = torchrun(*argv, "--parallel", "ulysses", "--format", "png", "-o", "two")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_uint8_matches(read_png_folder(Path("two")), reference)


def test_helios_stream_of_three_chunks_equals_one_process(vidgen):
    tiny.ensure_tiny("helios", "distilled")
    run = vidgen("stream", *HELIOS, "--format", "png", "-o", "one", "--quiet")
    assert run.exit_code == 0, run.stderr
    run = torchrun("stream", *HELIOS, "--format", "png", "-o", "two")
    assert run.returncode == 0, run.stderr[-3000:]
    frames = read_png_folder(Path("two"))
    assert len(frames) == 97  # three chunks, written by rank 0 alone
    assert_uint8_matches(frames, read_png_folder(Path("one")))
    assert run.stdout.count("wrote two") == 1
    assert counts(1)["all_to_all_single"] > 0  # the history chunks went through Ulysses too


def test_ranks_started_with_different_options_stop_before_loading():
    tiny.ensure_tiny("cogvideox", "t2v")
    run = torchrun("t2v", *COGVIDEOX, "-o", "x.mp4", rank_args="1:--overwrite")
    assert run.returncode != 0
    assert "error: rank 1 was started with different options than rank 0" in run.stderr
    assert "Traceback" not in run.stderr.split("torch.distributed.elastic")[0]
    assert not Path("x.mp4").exists()


def test_a_world_size_that_fits_no_plan_says_which_would():
    tiny.ensure_tiny("cogvideox", "t2v")
    run = torchrun("t2v", *COGVIDEOX, "--parallel", "ulysses", "-o", "x.mp4", ranks=3)
    assert run.returncode != 0
    assert (
        "error: --parallel ulysses cannot split the model's 2 attention heads over 3 ranks (use 2 ranks"
        in (run.stderr)
    )


def test_ring_says_it_needs_cuda_attention_on_the_cpu():
    tiny.ensure_tiny("cogvideox", "t2v")
    run = torchrun("t2v", *COGVIDEOX, "--parallel", "ring", "-o", "x.mp4")
    assert run.returncode != 0
    assert "error: 2-way ring attention needs --attention flash or cudnn or sage" in run.stderr
