"""`--parallel` on Wan 2.1 under torchrun (two CPU ranks, gloo): Ulysses splits the video tokens, the
frames equal the one-process run's, and rank 0 alone writes them; for text-to-video and for image-to-video
(the CLIP image states in each block's extra cross-attention)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from parity import read_png_folder
from PIL import Image

LAUNCHER = Path(__file__).parents[2] / "parallel" / "counting_launcher.py"
COMMON = ("a cat", "--seed", "3", "--format", "png", "--device", "cpu")
T2V = ("t2v", "-m", "tiny-wan", *COMMON)
I2V = ("i2v", "-m", "tiny-wan-i2v", "--image", "first.png", *COMMON)


@pytest.mark.parametrize("command", [T2V, I2V], ids=["t2v", "i2v"])
def test_two_ranks_split_the_attention_and_make_the_one_process_frames(vidgen, offline_workdir, command):
    gradient = np.linspace(0, 255, 32 * 48 * 3).reshape(32, 48, 3).astype(np.uint8)
    Image.fromarray(gradient).save("first.png")
    # In-process first: it builds the tiny model into the cache, so the ranks do not race to build it.
    one = vidgen(*command, "-o", "one", "--quiet")
    assert one.exit_code == 0, one.stderr
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "VIDGEN_COUNT_DIR": "counts"}
    run = subprocess.run(
        [*launch, str(LAUNCHER), *command, "-o", "two"], capture_output=True, text=True, timeout=300, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote two") == 1
    assert np.array_equal(read_png_folder(Path("two")), read_png_folder(Path("one")))
    sidecar = json.loads(Path("two.json").read_text())
    assert sidecar["runtime"]["parallel"]["plan"] == "2-way ulysses"
    for rank in (0, 1):  # both ranks exchanged attention heads: the split really ran
        assert json.loads(Path(f"counts/rank{rank}.json").read_text())["all_to_all_single.calls"] > 0
