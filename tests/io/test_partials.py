"""Hidden partial files: a dead run's are removed the next time the same output (or cache) is used, a
live writer's never are."""

import os
import time

import numpy as np

from vidgen.families import registry
from vidgen.io.partials import Hold, partial_name
from vidgen.io.writer import VideoWriter, write_sidecar
from vidgen.weights import tiny


def test_writing_an_output_again_removes_the_partials_a_killed_run_left_but_not_a_live_one(tmp_path):
    output = tmp_path / "cat.mp4"
    dead = [partial_name(output), partial_name(tmp_path / "cat.mp4.json"), partial_name(output, tag="old")]
    for path in dead:
        path.write_bytes(b"left by a killed run")
    live = partial_name(output)
    live.write_bytes(b"another run is writing this")
    hold = Hold(live)
    unrelated = [tmp_path / ".cat.mp4.notes", tmp_path / ".dog.mp4.1a2b3c4d.partial.mp4"]
    for path in unrelated:
        path.write_bytes(b"not ours")
    try:
        with VideoWriter.open(output, fps=8, format="mp4") as writer:
            writer.write(np.zeros((2, 16, 16, 3), np.uint8))
        write_sidecar(output, {})
        left = sorted(os.listdir(tmp_path))
    finally:
        hold.release()
    assert left == sorted(["cat.mp4", "cat.mp4.json", live.name, *(path.name for path in unrelated)])


def test_using_the_cache_again_removes_a_killed_build_but_not_a_running_one(tmp_path):
    built = tmp_path / "tiny" / f"cogvideox-t2v-seed0-v{tiny.BUILDER_VERSION}"
    built.mkdir(parents=True)
    (built / "model_index.json").write_text("{}")  # as if built: only the clean-up runs
    killed, running = tmp_path / "tiny" / ".building-killed", tmp_path / "tiny" / ".building-running"
    for folder in (killed, running):
        (folder / "transformer").mkdir(parents=True)
        (folder / "transformer" / "weights").write_bytes(b"half")
        a_while_ago = time.time() - 600
        os.utime(folder, (a_while_ago, a_while_ago))
    hold = Hold(running)
    try:
        assert registry.ensure_tiny("cogvideox", "t2v", cache_dir=tmp_path) == built
    finally:
        hold.release()
    assert sorted(os.listdir(tmp_path / "tiny")) == sorted([built.name, running.name])
