"""`vidgen stream` in-process on the tiny Helios presets: what it writes, that it writes with the same
generator as `vidgen t2v`, prompt schedules, and every mistake refused in one line before any work.

The subprocess behaviour (watching the file grow, Ctrl-C, flat memory, -o - into a pipe) is in
test_stream_process.py.
"""

import gc
import json
import weakref

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from vidgen.app.prepare_stream import StreamOptions, prepare_stream
from vidgen.core.request import Request, Runtime
from vidgen.families import registry
from vidgen.families.helios import pipeline as helios
from vidgen.families.helios.info import read_helios_info
from vidgen.families.helios.rules import chunk_count, output_frames
from vidgen.io.media import read_comment
from vidgen.io.stream_writer import Mp4Stream

TINY = ("--model", "tiny-helios", "--seed", "3")


def read_png_folder(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path)) for path in sorted(folder.glob("frame_*.png"))])


def test_stream_writes_whole_chunks_and_a_sidecar_that_says_how_it_ended(vidgen, workdir):
    run = vidgen("stream", *TINY, "a cat walks", "--frames", "66", "-o", "long.mp4")
    assert run.exit_code == 0, run.stderr
    assert run.stdout.startswith("wrote long.mp4 (65 frames in 2 chunks, 48x32, 24 fps, seed 3; ")
    assert "real time); settings in long.mp4.json" in run.stdout
    assert "note: 66 frames take 2 chunks of 33: the video has 65 frames (2.7 s at 24 fps)" in run.stderr
    chunk_lines = [line for line in run.stderr_lines if line.startswith("chunk ")]
    assert [line.split(":")[0] for line in chunk_lines] == ["chunk 1/2", "chunk 2/2"]
    assert "frames/s" in chunk_lines[-1] and "x real time" in chunk_lines[-1]
    assert iio.imread(workdir / "long.mp4").shape == (65, 32, 48, 3)
    sidecar = json.loads((workdir / "long.mp4.json").read_text())
    assert sidecar["stream"]["status"] == "done" and sidecar["stream"]["chunks"] == 2
    assert sidecar["output"]["frames"] == 65 and sidecar["stream"]["real_time_factor"] > 0
    assert sidecar["command"].startswith("vidgen stream --model tiny-helios --prompt 'a cat walks' --seed=3")
    assert json.loads(read_comment(workdir / "long.mp4"))["stream"]["status"] == "started"


def test_stream_and_t2v_write_the_same_frames(vidgen, workdir):
    for command in ("stream", "t2v"):
        run = vidgen(command, *TINY, "a cat walks", "--format", "png", "-o", command, "--quiet")
        assert run.exit_code == 0, run.stderr
    streamed = read_png_folder(workdir / "stream")
    assert streamed.shape == (33, 32, 48, 3) and np.array_equal(streamed, read_png_folder(workdir / "t2v"))


def test_a_prompt_file_switches_the_text_at_its_chunk(vidgen, workdir):
    (workdir / "story.csv").write_text("chunk,prompt\n0,a cat walks\n1,a robot dances at night\n")
    common = ("--frames", "66", "--format", "png", "--quiet")
    assert vidgen("stream", *TINY, "a cat walks", *common, "-o", "one").exit_code == 0
    run = vidgen("stream", *TINY, "--prompt-file", "story.csv", *common, "-o", "story")
    assert run.exit_code == 0, run.stderr
    one, story = read_png_folder(workdir / "one"), read_png_folder(workdir / "story")
    assert np.array_equal(story[:33], one[:33]) and not np.array_equal(story[33:], one[33:])
    sidecar = json.loads((workdir / "story.json").read_text())
    assert [p["chunk"] for p in sidecar["stream"]["prompts"]] == [0, 1]
    assert "--prompt-file story.csv --interpolate-chunks 0" in sidecar["command"]


def test_a_stream_can_continue_a_video(vidgen, workdir):
    clip = np.random.default_rng(0).integers(0, 256, (34, 40, 56, 3), dtype=np.uint8)
    iio.imwrite(workdir / "clip.mp4", clip, fps=24)
    run = vidgen("stream", *TINY, "the same scene, later", "--video", "clip.mp4", "-o", "more.mp4", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert json.loads((workdir / "more.mp4.json").read_text())["mode"] == "v2v"
    assert iio.imread(workdir / "more.mp4").shape == (33, 32, 48, 3)


def test_the_stream_keeps_no_chunk_once_it_is_written(vidgen, workdir, monkeypatch):
    """Memory stays flat: when a chunk arrives, every earlier one is gone (the generator keeps none either,
    tests/pipelines/test_helios.py)."""
    written, alive_before = [], []
    write = Mp4Stream.write

    def recording_write(self, frames):
        gc.collect()
        alive_before.append(sum(ref() is not None for ref in written))
        written.append(weakref.ref(frames))
        write(self, frames)

    monkeypatch.setattr(Mp4Stream, "write", recording_write)
    run = vidgen("stream", *TINY, "a cat", "--frames", "132", "--steps", "1", "-o", "out.mp4", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert alive_before == [0, 0, 0, 0]


def test_frames_round_up_to_whole_chunks_as_the_generator_counts_them():
    folder = registry.ensure_tiny("helios", "base")
    info, model = read_helios_info(folder), helios.load(folder, Runtime())
    for frames in (1, 32, 33, 34, 66, 99, 100, 1440):
        request = Request(mode="t2v", prompt="x", frames=frames)
        plan = helios.chunk_plan(model, request, helios.HeliosSettings())
        assert chunk_count(frames, info) == plan.chunks
        assert output_frames(frames, info, 24, []) == plan.total_frames


def test_seconds_round_up_to_whole_chunks_with_a_note(workdir):
    options = StreamOptions(
        mode="t2v", model="tiny-helios", prompt="a cat", seed=1, seconds=60, output="a.mp4"
    )
    plan = prepare_stream(options)
    assert plan.chunks == 44 and plan.plan.request.frames == 1449
    assert "1440 frames take 44 chunks of 33: the video has 1449 frames (60.4 s at 24 fps)" in plan.plan.notes


@pytest.fixture
def bad_inputs(workdir):
    Image.new("RGB", (48, 32)).save(workdir / "photo.png")
    iio.imwrite(workdir / "short.mp4", np.zeros((20, 32, 48, 3), np.uint8), fps=24)
    (workdir / "story.txt").write_text("a cat\n")
    (workdir / "bad.csv").write_text("chunk,prompt\n0,a cat\nlater,a dog\n")
    (workdir / "taken.mp4").write_bytes(b"old")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--model", "tiny-cogvideox", "a cat"), ("tiny-cogvideox", "Helios")),
        (("--model", "tiny-helios", "a cat", "-o", "a.gif"), ("GIF cannot be streamed",)),
        (("--model", "tiny-helios", "a cat", "--pyramid-steps", "2,2,2"), ("--pyramid-steps", "one stage")),
        (("--model", "tiny-helios-distilled", "a cat", "--pyramid-steps", "2,2"), ("gives 2 stages", "3")),
        (("--model", "tiny-helios-distilled", "a cat", "--pyramid-steps", "2,x,2"), ("not a list",)),
        (
            ("--model", "tiny-helios-distilled", "a cat", "--steps", "2", "--pyramid-steps", "2,2,2"),
            ("both",),
        ),
        (("--model", "tiny-helios-distilled", "a cat", "--height", "96"), ("--height 96", "64 or 128")),
        (("--model", "tiny-helios", "a cat", "--height", "40"), ("--height 40", "multiple of 16")),
        (("--model", "tiny-helios", "a cat", "--frames", "33", "--seconds", "2"), ("--seconds", "both")),
        (("--model", "tiny-helios", "a cat", "--seconds", "0"), ("--seconds 0.0",)),
        (("--model", "tiny-helios", "a cat", "--image", "photo.png", "--video", "short.mp4"), ("both",)),
        (("--model", "tiny-helios", "a cat", "--video", "short.mp4"), ("20 frames", "33")),
        (("--model", "tiny-helios", "a cat", "--prompt-file", "story.txt"), ("--prompt-file",)),
        (("--model", "tiny-helios", "--prompt-file", "bad.csv"), ("bad.csv', line 3", "'later'")),
        (("--model", "tiny-helios", "a cat", "-o", "taken.mp4"), ("already exists", "--overwrite")),
        (("--model", "tiny-helios", "a cat", "-o", "-", "--json"), ("--json", "stdout")),
        (("--model", "tiny-helios", "a cat", "-o", "-", "--format", "png"), ("MP4 stream",)),
    ],
)
def test_mistakes_are_one_line_and_nothing_is_written(vidgen, workdir, bad_inputs, files_in, args, words):
    before = files_in(workdir)
    run = vidgen("stream", "--seed", "1", *args)
    assert run.exit_code == 2, (run.stdout, run.stderr, run.exception)
    assert len(run.stderr_lines) == 1 and run.stderr_lines[0].startswith("error: "), run.stderr
    assert all(word in run.stderr_lines[0] for word in words), run.stderr
    assert files_in(workdir) == before and run.stdout == ""


@pytest.mark.parametrize(
    ("command", "args", "words"),
    [
        ("v2v", ("--video", "short.mp4", "--strength", "0.5"), ("no --strength",)),
        ("t2v", ("--dynamic-cfg",), ("--dynamic-cfg",)),
    ],
)
def test_cogvideox_options_are_refused_for_helios(vidgen, workdir, bad_inputs, command, args, words):
    run = vidgen(command, "--model", "tiny-helios", "a cat", *args)
    assert run.exit_code == 2 and len(run.stderr_lines) == 1
    assert all(word in run.stderr for word in words), run.stderr


def test_a_prompt_longer_than_a_command_line_argument_streams(vidgen, workdir):
    prompt = "a cat walks on the beach " * 8000  # 200 KB: more than one argument may hold (128 KiB)
    run = vidgen("stream", *TINY, prompt, "--frames", "33", "--steps", "1", "-o", "long.mp4", "-q")
    assert run.exit_code == 0, run.stderr
    assert iio.imread(workdir / "long.mp4").shape[0] == 33
    assert json.loads(read_comment(workdir / "long.mp4"))["prompt"] == prompt.strip()


def test_the_cpu_running_out_of_memory_mid_stream_exits_3_keeping_the_finished_chunks(
    vidgen, workdir, monkeypatch
):
    real = helios.generate_chunks

    def one_chunk_then_no_memory(*args, **kwargs):
        chunks = real(*args, **kwargs)
        yield next(chunks)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(helios, "generate_chunks", one_chunk_then_no_memory)
    run = vidgen("stream", "--model", "tiny-helios", "a cat", "--seed", "1", "--frames", "66", "-o", "s.mp4")
    assert run.exit_code == 3, (run.stderr, run.exception)
    assert "out of memory on the CPU" in run.stderr and "holds 1 finished chunk" in run.stderr
    assert "Traceback" not in run.stderr
    assert len(iio.imread(workdir / "s.mp4")) == 33
    assert json.loads((workdir / "s.mp4.json").read_text())["stream"]["status"] == "out of memory on the CPU"


CHUNKS_3 = ("a cat", "--frames", "99", "--steps", "1", "--format", "png", "--quiet")


def test_decoding_beside_the_next_chunk_writes_the_same_chunk_files(vidgen, workdir, monkeypatch):
    from deferred_decode import DeferredSideStream

    assert vidgen("stream", *TINY, *CHUNKS_3, "-o", "in-turn").exit_code == 0
    side = DeferredSideStream()
    monkeypatch.setattr(helios, "_side_stream", lambda runtime: side)
    run = vidgen("stream", *TINY, *CHUNKS_3, "-o", "beside")
    assert run.exit_code == 0, run.stderr
    assert side.started == 2  # chunks 2 and 3 decoded beside the next chunk's denoising
    written = sorted(path.name for path in (workdir / "beside").iterdir())
    assert written == sorted(path.name for path in (workdir / "in-turn").iterdir()) and len(written) == 97
    for name in written:
        assert (workdir / "beside" / name).read_bytes() == (workdir / "in-turn" / name).read_bytes(), name
    sidecar = json.loads((workdir / "beside.json").read_text())
    assert sidecar["stream"]["status"] == "done" and sidecar["stream"]["chunks"] == 3


def test_each_chunk_line_names_its_own_prompt_when_written_after_the_next_one_started(
    vidgen, workdir, monkeypatch
):
    from deferred_decode import DeferredSideStream

    monkeypatch.setattr(helios, "_side_stream", lambda runtime: DeferredSideStream())
    (workdir / "story.csv").write_text("chunk,prompt\n0,a cat walks\n1,a robot dances\n2,a dog sleeps\n")
    run = vidgen("stream", *TINY, "--prompt-file", "story.csv", *CHUNKS_3[1:-1], "-o", "story")
    assert run.exit_code == 0, run.stderr
    chunk_lines = [line for line in run.stderr_lines if line.startswith("chunk ")]
    prompts = [line.rsplit("; ", 1)[1] for line in chunk_lines]
    assert prompts == ["'a cat walks'", "'a robot dances'", "'a dog sleeps'"]


def test_ctrl_c_while_a_chunk_denoises_keeps_the_chunk_decoding_beside_it(vidgen, workdir, monkeypatch):
    from deferred_decode import DeferredSideStream

    side = DeferredSideStream()
    monkeypatch.setattr(helios, "_side_stream", lambda runtime: side)
    sample = helios._ChunkSampler.sample

    def interrupted_third_chunk(self, chunk, *args, **kwargs):
        if chunk == 2:
            raise KeyboardInterrupt
        return sample(self, chunk, *args, **kwargs)

    monkeypatch.setattr(helios._ChunkSampler, "sample", interrupted_third_chunk)
    run = vidgen("stream", *TINY, *CHUNKS_3, "-o", "stopped")
    assert run.exit_code == 130, (run.stderr, run.exception)
    assert "stopped holds 2 finished chunks of 3 (66 frames" in run.stderr
    assert side.started == 1 and len(list((workdir / "stopped").glob("frame_*.png"))) == 66
    sidecar = json.loads((workdir / "stopped.json").read_text())
    assert sidecar["stream"]["status"] == "interrupted" and sidecar["stream"]["chunks"] == 2


def test_a_decode_failing_beside_the_next_chunk_fails_the_stream_after_the_chunks_before(
    vidgen, workdir, monkeypatch
):
    from deferred_decode import DeferredSideStream

    monkeypatch.setattr(helios, "_side_stream", lambda runtime: DeferredSideStream(fail_at=0))
    run = vidgen("stream", *TINY, *CHUNKS_3, "-o", "failed")
    assert isinstance(run.exception, RuntimeError) and "decode 0 failed" in str(run.exception)
    assert len(list((workdir / "failed").glob("frame_*.png"))) == 33  # the first chunk, decoded in turn
    sidecar = json.loads((workdir / "failed.json").read_text())
    assert sidecar["stream"]["status"] == "failed" and sidecar["stream"]["chunks"] == 1
