"""Running out of memory (issue 15, item 9): the estimate that refuses sizes before loading (a pure
function), the refusal itself on every command, and the CPU allocator's failure as exit 3."""

import pytest
from model_infos import COGVIDEOX, HELIOS

import vidgen.validate.memory as memory
from vidgen.runtime.memory.work import Footprint, least_bytes, read_footprint

FIVE_B = Footprint(inner_dim=48 * 64, decoder_channels=128)


def test_the_estimate_of_a_small_case_counted_by_hand():
    tiny = Footprint(inner_dim=32, decoder_channels=8, latent_channels=4)
    # 32x32, 1 frame: 1 latent frame of 4x4 cells, 2x2 tokens, plus 226 text tokens; guided: batch 2.
    transformer = 2 * (4 + 226) * 32 * 4 * 6  # fp32, six live copies
    latents = 2 * 4 * 1 * 4 * 4 * 4
    decode = 1 * 32 * 32 * 8 * 4 * 3  # smaller than the transformer's here
    video = 1 * 32 * 32 * 3 * 4
    assert decode < transformer
    assert least_bytes(32, 32, 1, COGVIDEOX, tiny, 4, False) == transformer + latents + video


def test_the_estimate_grows_with_every_dimension_and_shrinks_with_tiling_and_without_guidance():
    base = least_bytes(480, 720, 49, COGVIDEOX, FIVE_B, 2, False)
    assert 3 * 2**30 < base < 40 * 2**30  # CogVideoX-5b's floor at its own size, weights aside
    assert least_bytes(960, 720, 49, COGVIDEOX, FIVE_B, 2, False) > base
    assert least_bytes(480, 1440, 49, COGVIDEOX, FIVE_B, 2, False) > base
    assert least_bytes(480, 720, 97, COGVIDEOX, FIVE_B, 2, False) > base
    big = least_bytes(4096, 4096, 9, COGVIDEOX, FIVE_B, 2, False)
    assert least_bytes(4096, 4096, 9, COGVIDEOX, FIVE_B, 2, True) < big
    assert least_bytes(480, 720, 49, COGVIDEOX, FIVE_B, 2, False, guided=False) < base


def test_helios_attends_over_one_chunk_and_its_history_so_only_the_video_grows_with_length():
    helios = Footprint(inner_dim=40 * 128, decoder_channels=96)
    short, long = (least_bytes(384, 640, frames, HELIOS, helios, 2, False) for frames in (1000, 2000))
    assert long - short == 1000 * 384 * 640 * 3 * 4


def test_the_footprint_is_read_from_the_model_configs(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "vae").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(
        '{"num_attention_heads": 48, "attention_head_dim": 64}'
    )
    (tmp_path / "vae" / "config.json").write_text('{"block_out_channels": [128, 256], "latent_channels": 16}')
    assert read_footprint(tmp_path) == FIVE_B


def test_the_machine_memory_is_the_cpus_total():
    total = memory.machine_memory("cpu")
    with open("/proc/meminfo") as file:
        kib = int(next(line for line in file if line.startswith("MemTotal:")).split()[1])
    assert abs(total - kib * 1024) < 0.05 * total


@pytest.fixture
def stand_in(stand_in_pipeline):
    return stand_in_pipeline


@pytest.fixture
def small_machine(monkeypatch):
    """A CPU with 2 GiB, as the check sees it."""
    monkeypatch.setattr(memory, "machine_memory", lambda device: 2 * 2**30, raising=False)


TINY = ("--model", "tiny-cogvideox", "--seed", "1", "--steps", "1")


def test_a_size_past_the_machines_memory_is_refused_before_loading(
    invoke_cli, offline_workdir, stand_in, small_machine
):
    run = invoke_cli(
        "t2v", "a cat", *TINY, "--height", "4096", "--width", "4096", "--frames", "9", "--no-vae-tiling"
    )
    assert run.exit_code == 3, (run.stderr, run.exception)
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert "needs at least" in run.stderr and "more than the 2.0 GiB cpu has" in run.stderr
    assert "--vae-tiling" in run.stderr and stand_in.calls == []
    # With tiling left to the memory plan, the decode counts as tiled: the video alone is too big here.
    run = invoke_cli("t2v", "a cat", *TINY, "--height", "4096", "--width", "4096", "--frames", "1001")
    assert run.exit_code == 3 and "needs at least" in run.stderr and "--vae-tiling" not in run.stderr
    assert list(offline_workdir.iterdir()) == []
    fits = invoke_cli("t2v", "a cat", *TINY, "--height", "32", "--width", "32", "--frames", "1")
    assert fits.exit_code == 0, fits.stderr
    assert stand_in.calls == ["load"]


def test_a_batch_job_too_large_for_memory_fails_alone(invoke_cli, offline_workdir, stand_in, small_machine):
    (offline_workdir / "jobs.jsonl").write_text(
        '{"prompt": "a cat", "height": 4096, "width": 4096, "frames": 9}\n{"prompt": "a dog"}\n'
    )
    run = invoke_cli(
        "batch", "jobs.jsonl", "-o", "out", *TINY, "--height", "32", "--width", "32", "--frames", "1",
        "--no-vae-tiling",
    )  # fmt: skip
    assert run.exit_code == 1, run.stderr
    assert "jobs.jsonl:1: 4096x4096 with 9 frames needs at least" in run.stderr
    assert sorted(path.name for path in (offline_workdir / "out").iterdir()) == [
        "00002.mp4",
        "00002.mp4.json",
        "manifest.jsonl",
    ]


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 85899345920 bytes. Error code 12 (Cannot allocate memory)"
        ),
        MemoryError(),
    ],
)
def test_the_cpu_running_out_of_memory_exits_3_with_one_line(invoke_cli, offline_workdir, stand_in, error):
    def fail(*args, **kwargs):
        raise error

    stand_in.generate = fail
    run = invoke_cli(
        "t2v", "a cat", *TINY, "--height", "32", "--width", "32", "--frames", "1", "-o", "a.mp4", "-q"
    )
    assert run.exit_code == 3, (run.stderr, run.exception)
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert "out of memory on the CPU" in run.stderr and "--vae-tiling" in run.stderr
    assert "--offload" not in run.stderr  # offloading saves only a GPU's memory
    assert list(offline_workdir.iterdir()) == []


def test_other_runtime_errors_stay_errors(invoke_cli, offline_workdir, stand_in):
    def fail(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    stand_in.generate = fail
    run = invoke_cli("t2v", "a cat", *TINY, "--height", "32", "--width", "32", "--frames", "1", "-o", "a.mp4")
    assert run.exit_code == 1 and isinstance(run.exception, RuntimeError)  # a bug keeps its traceback
