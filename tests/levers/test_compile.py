"""`--compile`: one compiled graph for every repeated block, no graph breaks inside a block, no
recompiles once the shapes settle, frames within one uint8 level of eager, and a failing compiler
is one line naming `--compile`.

Compiles are slow on a small CPU: recompile counting uses the `aot_eager` backend (traces like
inductor, generates no code); one test runs inductor for real.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from vidgen.core.request import Request, Runtime
from vidgen.families.cogvideox import pipeline as cogvideox
from vidgen.families.cogvideox import tiny as cogvideox_tiny
from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel
from vidgen.families.helios import pipeline as helios
from vidgen.families.helios import tiny as helios_tiny
from vidgen.families.helios.model import HeliosTransformer3DModel
from vidgen.runtime import levers


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Compiled code is cached per code object across models: every test starts from nothing."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def counter(monkeypatch):
    """`--compile` through a counting aot_eager backend, with graph breaks made errors."""
    counting = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(levers, "COMPILE_OPTIONS", {"backend": counting, "fullgraph": True})
    return counting


def cogvideox_inputs() -> tuple:
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, 2, 4, 8, 8, generator=generator),
        torch.randn(1, 6, 16, generator=generator),
        torch.tensor([400]),
    )


def test_cogvideox_blocks_share_one_graph_without_breaks_and_match_eager(counter):
    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=8,
        text_embed_dim=16, num_layers=3, sample_width=8, sample_height=8, sample_frames=5,
        max_text_seq_length=6, use_rotary_positional_embeddings=True,
    ).eval()  # fmt: skip
    inputs = cogvideox_inputs()
    with torch.no_grad():
        eager = model(*inputs).sample
        levers.apply_runtime(model, Runtime(compile=True))
        compiled = model(*inputs).sample
        model(*inputs)
    assert counter.frame_count == 1  # three blocks, one graph; the second call compiles nothing
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_helios_blocks_share_one_graph_without_breaks_and_match_eager(counter):
    torch.manual_seed(0)
    model = HeliosTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, text_dim=16,
        freq_dim=16, ffn_dim=32, num_layers=3, rope_dim=(4, 6, 6),
    ).eval()  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        hidden_states=torch.randn(1, 4, 2, 8, 8, generator=generator),
        timestep=torch.tensor([700]),
        encoder_hidden_states=torch.randn(1, 5, 16, generator=generator),
        indices_hidden_states=torch.arange(3, 5)[None],
        latents_history_short=torch.randn(1, 4, 1, 8, 8, generator=generator),
        indices_latents_history_short=torch.tensor([[2]]),
    )
    with torch.no_grad():
        eager = model(**inputs).sample
        levers.apply_runtime(model, Runtime(compile=True))
        compiled = model(**inputs).sample
    assert counter.frame_count == 1
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_helios_chunks_compile_nothing_once_the_history_window_is_full(counter, tmp_path):
    folder = helios_tiny.build_tiny_helios(tmp_path / "helios", variant="base")
    runtime = Runtime(compile=True)
    model = helios.load(folder, runtime)
    request = Request(
        mode="t2v", prompt="a cat", seed=1, steps=1, guidance=5.0, height=32, width=48, frames=132
    )
    settings = helios.HeliosSettings(history_sizes=(2, 1, 1))  # full after the first chunk
    counts = [counter.frame_count for _ in helios.generate_chunks(model, request, settings, runtime)]
    assert len(counts) == 4 and counts[0] >= 1
    assert counts[1] == counts[2] == counts[3], counts


def test_batch_jobs_of_one_size_compile_once(counter, invoke_cli, offline_workdir, monkeypatch):
    jobs = offline_workdir / "jobs.jsonl"
    jobs.write_text(
        "".join(json.dumps({"prompt": p, "seed": s}) + "\n" for p, s in (("a cat", 1), ("a dog", 2)))
    )
    counts = []
    generate = cogvideox.generate

    def counting_generate(*args, **kwargs):
        result = generate(*args, **kwargs)
        counts.append(counter.frame_count)
        return result

    monkeypatch.setattr(cogvideox, "generate", counting_generate)
    run = invoke_cli(
        "batch", str(jobs), "--model", "tiny-cogvideox", "-o", "out", "--steps", "2", "--compile",
        "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert len(counts) == 2 and counts[0] >= 1 and counts[1] == counts[0], counts
    record = json.loads((offline_workdir / "out" / "00001.mp4.json").read_text())
    assert record["runtime"]["compile"] is True and record["timings"]["compile"] > 0


def frames_of(invoke_cli, command: tuple, output: str, *extra: str) -> np.ndarray:
    from parity import read_png_folder

    run = invoke_cli(*command, "--format", "png", "-o", output, "--quiet", "--device", "cpu", *extra)
    assert run.exit_code == 0, run.stderr
    return read_png_folder(Path(output))


INDUCTOR_CASES = {
    "t2v": ("t2v", "--model", "tiny-cogvideox", "a cat", "--seed", "2", "--steps", "2"),
    "i2v": (
        "i2v",
        "--model",
        "tiny-cogvideox-i2v",
        "--image",
        "photo.png",
        "a cat",
        "--seed",
        "2",
        "--steps",
        "2",
    ),
    "v2v": (
        "v2v",
        "--model",
        "tiny-cogvideox",
        "--video",
        "clip.mp4",
        "a cat",
        "--seed",
        "2",
        "--steps",
        "3",
        "--strength",
        "0.7",
    ),
    "stream": ("stream", "--model", "tiny-helios", "a cat", "--seed", "2", "--steps", "1", "--frames", "66"),
}


def write_inputs(folder: Path) -> None:
    """The i2v image and the v2v clip, at the tiny CogVideoX size (64x96, 9 frames)."""
    import imageio.v3 as iio
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (9, 64, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels[0]).save(folder / "photo.png")
    iio.imwrite(folder / "clip.mp4", pixels, fps=8)


@pytest.mark.parametrize("case", INDUCTOR_CASES)
def test_inductor_frames_are_within_one_level_of_eager(invoke_cli, offline_workdir, case):
    write_inputs(offline_workdir)
    eager = frames_of(invoke_cli, INDUCTOR_CASES[case], "eager")
    compiled = frames_of(invoke_cli, INDUCTOR_CASES[case], "compiled", "--compile")
    assert compiled.shape == eager.shape
    assert np.abs(compiled.astype(int) - eager.astype(int)).max() <= 1
    sidecar = json.loads((offline_workdir / "compiled.json").read_text())
    assert sidecar["runtime"]["compile"] is True and sidecar["timings"]["compile"] > 0
    assert "--attention=sdpa --compile" in sidecar["command"]  # the command repeats the levers


def test_a_failing_compiler_is_one_line_naming_compile(invoke_cli, offline_workdir, monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("no-such-compiler",))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    run = invoke_cli(
        "t2v", "--model", "tiny-cogvideox", "a cat", "--steps", "1", "--compile", "--device", "cpu",
        "--seed", "1", "-o", "out.mp4", "--quiet",
    )  # fmt: skip
    assert run.exit_code == 2, (run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and "Traceback" not in run.stderr
    assert run.stderr_lines[0].startswith("error: --compile failed: ") and "C++ compiler" in run.stderr
    assert not (offline_workdir / "out.mp4").exists()


def test_the_first_step_after_compiling_is_its_own_progress_stage(counter, tmp_path):
    from parity import Recorder

    folder = cogvideox_tiny.build_tiny_cogvideox(tmp_path / "cogvideox", variant="t2v")
    runtime = Runtime(compile=True)
    model = cogvideox.load(folder, runtime)
    request = Request(
        mode="t2v", prompt="a cat", seed=1, steps=3, guidance=6.0, height=64, width=96, frames=9
    )
    first, second = Recorder(), Recorder()
    cogvideox.generate(model, request, runtime, first)
    stages = [event[1:] for event in first.events if event[0] == "start"]
    assert stages == [("text", None), ("compile", None), ("denoise", 2), ("decode", None)]
    assert counter.frame_count >= 1
    cogvideox.generate(model, request, runtime, second)  # compiled already: no compile stage
    assert [event[1:] for event in second.events if event[0] == "start"][1] == ("denoise", 3)
