"""The manifest (append, merge the rank parts, decide what is done) and the ranks' share of the jobs."""

import json

import numpy as np
import pytest

from vidgen.app.batch.manifest import ManifestWriter, Record, is_done, latest, manifest_files
from vidgen.core.errors import VidgenError
from vidgen.io.writer import VideoWriter
from vidgen.runtime.ranks import Rank

SPEC = {"prompt": "a cat", "seed": 1}


def test_the_latest_record_per_name_wins_across_parts(tmp_path):
    with ManifestWriter(tmp_path / "manifest.rank1.jsonl") as part:
        part.write(Record("a", 1, "failed", "boom", finished="2026-01-01T00:00:01+00:00"))
        part.write(Record("b", 2, "ok", output="b.mp4", finished="2026-01-01T00:00:03+00:00"))
    with ManifestWriter(tmp_path / "manifest.rank0.jsonl") as part:
        part.write(Record("a", 1, "ok", output="a.mp4", finished="2026-01-01T00:00:02+00:00"))
    with ManifestWriter(tmp_path / "manifest.jsonl") as single:
        single.write(Record("b", 2, "failed", "older", finished="2026-01-01T00:00:00+00:00"))
    names = [path.name for path in manifest_files(tmp_path)]
    assert names == ["manifest.jsonl", "manifest.rank0.jsonl", "manifest.rank1.jsonl"]
    standing = latest(tmp_path)
    assert (standing["a"].status, standing["b"].status) == ("ok", "ok")


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path, capsys):
    with ManifestWriter(tmp_path / "manifest.jsonl") as manifest:
        manifest.write(Record("a", 1, "ok", output="a.mp4"))
    with open(tmp_path / "manifest.jsonl", "a") as file:
        file.write('{"name": "b", "li')
    assert list(latest(tmp_path)) == ["a"]
    assert "manifest.jsonl:2: not a manifest record" in capsys.readouterr().err


def test_each_record_is_one_json_line_on_disk_before_the_next_job(tmp_path):
    manifest = ManifestWriter(tmp_path / "manifest.jsonl")
    manifest.write(Record("a", 1, "ok", output="a.mp4", job=SPEC, settings={"seed": 1}))
    (line,) = (tmp_path / "manifest.jsonl").read_text().splitlines()  # written, not buffered
    manifest.close()
    record = json.loads(line)
    assert {"name", "status", "error", "output", "seconds", "job", "settings", "rank", "finished"} <= set(
        record
    )


@pytest.mark.parametrize(
    "status, spec, output_exists, done",
    [
        ("ok", SPEC, True, True),
        ("skipped", SPEC, True, True),
        ("failed", SPEC, True, False),
        ("ok", {**SPEC, "seed": 2}, True, False),  # the job asks for something else now
        ("ok", SPEC, False, False),  # its output was deleted
    ],
)
def test_a_job_is_done_when_recorded_ok_with_the_same_settings_and_its_output_exists(
    tmp_path, status, spec, output_exists, done
):
    if output_exists:  # a whole video: one that is cut short does not count (test_broken_outputs.py)
        with VideoWriter.open(tmp_path / "a.mp4", fps=8, format="mp4") as writer:
            writer.write(np.zeros((1, 16, 16, 3), np.uint8))
    record = Record("a", 1, status, output="a.mp4", job=SPEC)
    assert is_done(record, spec, None, tmp_path) is done
    assert not is_done(None, spec, None, tmp_path)


def test_ranks_take_every_nth_job_and_their_own_gpu():
    env = {"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "x", "MASTER_PORT": "1"}
    rank = Rank.from_env(env)
    assert [index for index in range(8) if rank.takes(index)] == [1, 4, 7]
    assert (rank.device("cuda"), rank.device("cuda:0"), rank.device("cpu")) == ("cuda:1", "cuda:0", "cpu")
    assert Rank.from_env({}) == Rank(0, 1, 0) and Rank().device("cuda") == "cuda"


@pytest.mark.parametrize(
    "env, words",
    [
        ({"RANK": "3", "WORLD_SIZE": "2"}, "RANK 3 is not below WORLD_SIZE 2"),
        ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR and MASTER_PORT"),
        ({"RANK": "x", "WORLD_SIZE": "2"}, "must be numbers"),
    ],
)
def test_bad_rank_variables_are_refused(env, words):
    with pytest.raises(VidgenError, match=words):
        Rank.from_env(env)
