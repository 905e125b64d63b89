"""--quantize int8 on the CPU for real: torchao (the test extra) quantizes the tiny models' block layers to
int8 weights, the sidecar counts their bytes, and the frames stay close to the unquantized frames."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from parity import read_png_folder

from vidgen.families import registry
from vidgen.models import CogVideoXTransformer3DModel, HeliosTransformer3DModel
from vidgen.runtime.memory import quantize

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# torchao's int8 weight-only keeps, per output row of a weight, a float32 scale and an int8 zero point.
ROW_BYTES = 5
# (preset, its tiny folder, dtype, mean, 99th percentile, max): bounds on the uint8 difference to the
# same run unquantized, 2 steps, measured over seeds 1-4 (tiny-cogvideox 9x64x96, tiny-helios 33x32x48):
# - fp32: mean 0.017-0.022, max 1 on both models. The weights move by at most half a step of 1/127 of
#   their row's largest value; a wrong scale or zero point moves most pixels by far more.
# - bf16: mean 1.16-1.29, 99th percentile 7-8, max 44-82 on tiny-cogvideox. bf16's own rounding of
#   the activations turns any change of the weights into this much (fp8-storage: mean 1.34-1.45).
CASES = [
    ("tiny-cogvideox", ("cogvideox", "t2v"), "bf16", 2.0, 12, 128),
    ("tiny-cogvideox", ("cogvideox", "t2v"), "fp32", 0.05, 1, 2),
    ("tiny-helios", ("helios", "base"), "fp32", 0.05, 1, 2),
]
MODELS = {"cogvideox": CogVideoXTransformer3DModel, "helios": HeliosTransformer3DModel}


def generate(vidgen, output, model, *options):
    run = vidgen("t2v", "--model", model, "a cat walks", "--seed", "3", "--steps", "2", "--format", "png",
                 "-o", output, *options)  # fmt: skip
    assert run.exit_code == 0, (run.stderr, run.exception)
    return json.loads(output.with_suffix(".json").read_text()), read_png_folder(output)


def int8_saving(family: str, variant: str, dtype: torch.dtype) -> int:
    """Bytes int8 saves on a tiny transformer: every weight of the layers `quantize` picks goes from the
    dtype's size to one byte, and each of their output rows gains a scale and a zero point."""
    folder = registry.ensure_tiny(family, variant)
    model = MODELS[family].from_pretrained(folder, subfolder="transformer", dtype=dtype)
    layers = [layer for name, layer in model.named_modules() if quantize._quantizable(layer, name)]
    assert layers
    size = torch.tensor([], dtype=dtype).element_size()
    return sum(layer.weight.numel() * (size - 1) - ROW_BYTES * layer.out_features for layer in layers)


@pytest.mark.parametrize("model, tiny_folder, dtype, mean, p99, most", CASES)
def test_int8_runs_on_the_cpu_with_one_byte_weights_and_frames_close_to_unquantized(
    vidgen, workdir, model, tiny_folder, dtype, mean, p99, most
):
    plain, frames = generate(vidgen, workdir / "none", model, "--dtype", dtype)
    int8, int8_frames = generate(vidgen, workdir / "int8", model, "--dtype", dtype, "--quantize", "int8")
    assert (plain["runtime"]["quantize"], int8["runtime"]["quantize"]) == ("none", "int8")
    saved = plain["runtime"]["transformer_bytes"] - int8["runtime"]["transformer_bytes"]
    assert saved == int8_saving(*tiny_folder, DTYPES[dtype])
    difference = np.abs(frames.astype(int) - int8_frames.astype(int))
    assert 0 < difference.mean() <= mean  # above 0: a quantize that did nothing fails here
    assert np.percentile(difference, 99) <= p99 and difference.max() <= most


def test_int8_in_a_process_of_its_own_leaves_stderr_empty_when_quiet(workdir):
    # torchao's wheels log, on import, each CUDA kernel library of theirs that the CPU build of torch
    # cannot load; transformers and diffusers import torchao whenever it is installed.
    command = [sys.executable, "-m", "vidgen", "t2v", "--model", "tiny-cogvideox", "a cat walks",
               "--steps", "1", "--quantize", "int8", "--format", "png", "-o", "int8", "-q"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads((workdir / "int8.json").read_text())["runtime"]["quantize"] == "int8"
