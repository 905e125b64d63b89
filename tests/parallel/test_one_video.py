"""One video on two CPU ranks (torchrun, gloo): the frames equal the one-process run's.

Every mode runs on the CPU: Ulysses and cfg through the dispatcher's SDPA, ring through PyTorch's CPU flash
kernel (vidgen.runtime.parallel.cpu_ring_attention), since diffusers merges ring partial results by the
log-sum-exp that only that kernel returns on the CPU.
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

from vidgen.families import registry

LAUNCHER = Path(__file__).with_name("counting_launcher.py")
BENCH = Path(__file__).parents[2] / "bench" / "cp_scaling.py"
COGVIDEOX = ("-m", "tiny-cogvideox", "a cat", "--seed", "3", "--steps", "2")
HELIOS = ("-m", "tiny-helios-distilled", "a cat", "--seed", "3", "--frames", "99")


@pytest.fixture(autouse=True)
def workdir(offline_workdir):
    return offline_workdir


def torchrun(*argv: str, ranks: int = 2, rank_args: str = "", die: str = "") -> subprocess.CompletedProcess:
    """`vidgen *argv` on `ranks` CPU processes, collectives counted into ./counts/rankN.json."""
    env = {**os.environ, "VIDGEN_COUNT_DIR": "counts", "RANK_ARGS": rank_args, "DIE_RANK": die}
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
    registry.ensure_tiny("cogvideox", "t2v")  # built once here, not raced by the ranks
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
    registry.ensure_tiny("cogvideox", "t2v")
    reference = one_process(vidgen, "t2v", *COGVIDEOX)
    run = torchrun("t2v", *COGVIDEOX, "--parallel", "cfg", "--format", "png", "-o", "two")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_uint8_matches(read_png_folder(Path("two")), reference)
    assert json.loads(Path("two.json").read_text())["runtime"]["parallel"]["plan"] == "2-way cfg"
    # One gather per step (2 steps) of the [1, F, C, H, W] fp32 prediction (3 latent frames, 4 channels,
    # 8 x 12), and no attention traffic.
    assert counts(0)["all_gather"] == 2 * 3 * 4 * 8 * 12 * 4
    assert "all_to_all_single" not in counts(0)


def test_four_ranks_run_two_way_cfg_times_two_way_ulysses_equal_to_one_process(vidgen):
    registry.ensure_tiny("cogvideox", "t2v")
    reference = one_process(vidgen, "t2v", *COGVIDEOX)
    run = torchrun("t2v", *COGVIDEOX, "--parallel", "cfg", "--format", "png", "-o", "four", ranks=4)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_uint8_matches(read_png_folder(Path("four")), reference)
    parallel = json.loads(Path("four.json").read_text())["runtime"]["parallel"]
    assert parallel["plan"] == "2-way cfg x 2-way ulysses"
    assert counts(3)["all_to_all_single"] > 0 and counts(3)["all_gather"] > 0


@pytest.mark.parametrize("mode", ["ulysses", "ring", "cfg"])
def test_i2v_equals_one_process(vidgen, mode):
    registry.ensure_tiny("cogvideox", "i2v")
    pixels = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save("photo.png")
    argv = ("i2v", "-m", "tiny-cogvideox-i2v", "--image", "photo.png", "a cat", "--seed", "3", "--steps", "2")
    reference = one_process(vidgen, *argv)
    run = torchrun(*argv, "--parallel", mode, "--format", "png", "-o", "two")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_uint8_matches(read_png_folder(Path("two")), reference)
    assert json.loads(Path("two.json").read_text())["runtime"]["parallel"]["plan"] == f"2-way {mode}"


@pytest.mark.parametrize(
    ("mode", "collective"), [("ulysses", "all_to_all_single"), ("ring", "all_gather_tensor")]
)
def test_helios_stream_of_three_chunks_equals_one_process(vidgen, mode, collective):
    registry.ensure_tiny("helios", "distilled")
    run = vidgen("stream", *HELIOS, "--format", "png", "-o", "one", "--quiet")
    assert run.exit_code == 0, run.stderr
    run = torchrun("stream", *HELIOS, "--parallel", mode, "--format", "png", "-o", "two")
    assert run.returncode == 0, run.stderr[-3000:]
    frames = read_png_folder(Path("two"))
    assert len(frames) == 97  # three chunks, written by rank 0 alone
    assert_uint8_matches(frames, read_png_folder(Path("one")))
    assert run.stdout.count("wrote two") == 1
    assert json.loads(Path("two.json").read_text())["runtime"]["parallel"]["plan"] == f"2-way {mode}"
    # The history chunks' attention went through the exchange too: 12 calls x 2 self-attention layers.
    assert counts(1)[f"{collective}.calls"] >= 12 * 2


def test_ranks_started_with_different_options_stop_before_loading():
    registry.ensure_tiny("cogvideox", "t2v")
    run = torchrun("t2v", *COGVIDEOX, "-o", "x.mp4", rank_args="1:--overwrite")
    assert run.returncode != 0
    assert "error: rank 1 was started with different options than rank 0" in run.stderr
    assert "Traceback" not in run.stderr.split("failed (exitcode")[0]  # torchrun's own report follows
    assert not Path("x.mp4").exists()


def test_live_prompts_are_refused_under_torchrun_before_loading():
    registry.ensure_tiny("helios", "distilled")
    run = torchrun("stream", *HELIOS, "--live", "-o", "x.mp4")
    assert run.returncode != 0
    assert (
        "error: --live cannot run under torchrun: every rank would read its own standard input" in run.stderr
    )
    assert not Path("x.mp4").exists()


def test_a_world_size_that_fits_no_plan_says_which_would():
    registry.ensure_tiny("cogvideox", "t2v")
    run = torchrun("t2v", *COGVIDEOX, "--parallel", "ulysses", "-o", "x.mp4", ranks=3)
    assert run.returncode != 0
    assert (
        "error: --parallel ulysses cannot split the model's 2 attention heads over 3 ranks (use 2 ranks"
        in (run.stderr)
    )


def test_t2v_ring_equals_one_process_and_moves_the_bytes_the_scaling_model_counts(vidgen):
    registry.ensure_tiny("cogvideox", "t2v")
    reference = one_process(vidgen, "t2v", *COGVIDEOX)
    run = torchrun("t2v", *COGVIDEOX, "--parallel", "ring", "--format", "png", "-o", "two")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_uint8_matches(read_png_folder(Path("two")), reference)
    parallel = json.loads(Path("two.json").read_text())["runtime"]["parallel"]
    assert parallel["plan"] == "2-way ring"
    # Per step (2 steps): every layer all-gathers the rank's keys and values, [2, 298 / 2, 32] each, in
    # fp32 (on 2 ranks what a rank puts in is what it receives), then the video is gathered once.
    model = scaling()
    ring = model.ring_bytes_per_rank(batch=2, tokens=226 + 72, width=32, layers=2, ranks=2, element=4)
    gather = model.gather_bytes_per_rank(batch=2, tokens=72, width=16, ranks=2, element=4)
    assert counts(1)["all_gather_tensor"] == 2 * (ring + gather)
    assert "all_to_all_single" not in counts(1)
    assert counts(0)["group_left_open"] == counts(1)["group_left_open"] == 0  # both ranks left the group


def test_a_rank_that_dies_ends_the_run_with_an_error_and_no_video():
    registry.ensure_tiny("cogvideox", "t2v")
    run = torchrun("t2v", *COGVIDEOX, "-o", "x.mp4", die="1")  # timeout=300 in `torchrun`: no hang
    assert run.returncode != 0
    assert "exitcode  : 1" in run.stderr  # torchrun names the dead rank
    assert not Path("x.mp4").exists()


@pytest.mark.parametrize(
    ("mode", "ranks", "heads", "guidance", "expected"),
    [
        (None, 2, 2, True, (2, 1, 2, 1)),
        ("auto", 3, 2, True, (3, 1, 1, 3)),  # the heads do not divide: ring
        ("auto", 4, 48, True, (4, 1, 4, 1)),
        ("cfg", 4, 48, True, (4, 2, 2, 1)),  # 2-way cfg x 2-way ulysses
        ("cfg", 6, 4, True, (6, 2, 1, 3)),  # the 3 ranks of a branch cannot split 4 heads: ring
        ("cfg", 2, 2, True, (2, 2, 1, 1)),
        ("ring", 2, 2, True, (2, 1, 1, 2)),
    ],
)
def test_plans_for_world_sizes(mode, ranks, heads, guidance, expected):
    from vidgen.runtime.parallel import choose_plan
    from vidgen.runtime.ranks import Rank

    plan = choose_plan(mode, Rank(0, ranks), heads, guidance)
    assert (plan.world_size, plan.cfg, plan.ulysses, plan.ring) == expected


@pytest.mark.parametrize(
    ("mode", "ranks", "guidance", "message"),
    [
        ("ulysses", 1, True, "--parallel ulysses needs several ranks"),
        ("ulysses", 4, True, "--parallel ulysses cannot split the model's 6 attention heads over 4 ranks"),
        ("cfg", 3, True, "--parallel cfg cannot use 3 ranks here"),
        ("cfg", 2, False, "--parallel cfg cannot use 2 ranks here"),
    ],
)
def test_plans_that_do_not_fit_say_why(mode, ranks, guidance, message):
    from vidgen.core.errors import VidgenError
    from vidgen.runtime.parallel import choose_plan
    from vidgen.runtime.ranks import Rank

    with pytest.raises(VidgenError, match=message):
        choose_plan(mode, Rank(0, ranks), 6, guidance)


def test_parallel_without_torchrun_is_a_usage_error_before_loading(vidgen, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    run = vidgen("t2v", *COGVIDEOX, "--parallel", "cfg", "-o", "x.mp4")
    assert run.exit_code == 2
    assert run.stderr.startswith("error: --parallel cfg needs several ranks (start with `torchrun")
    assert not Path("x.mp4").exists()


def test_token_counts_that_do_not_divide_split_unevenly_with_the_same_output():
    registry.ensure_tiny("cogvideox", "t2v")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run = subprocess.run(
        [*command, str(Path(__file__).with_name("uneven_tokens.py"))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    difference = float(run.stdout.split("max difference ")[1])
    assert difference < 1e-5


def test_plans_know_when_tokens_split_unevenly_and_when_they_cannot_split():
    from vidgen.core.errors import VidgenError
    from vidgen.runtime.parallel import ParallelPlan, split_tokens

    four = ParallelPlan(4, ulysses=4)
    assert not split_tokens(four, {"text": 224, "video": 17552}).uneven
    assert split_tokens(four, {"text": 226, "video": 17550}).uneven  # CogVideoX-5b at 49x480x720
    with pytest.raises(VidgenError, match="cannot split 3 video tokens over 4 ranks"):
        split_tokens(four, {"text": 226, "video": 3})
