"""A server's life: killed and started again with nothing lost, drained by SIGTERM, refused a second
time on one --dir or on an open host without a key, answering 503 while it loads or drains."""

import signal
import sqlite3
import threading
from types import SimpleNamespace

import pytest
import uvicorn
from conftest import DEADLINE, FAST, Server, free_port, wait_for

from vidgen.serve.api import Server as ApiServer
from vidgen.serve.api import create_app
from vidgen.serve.store import Store


def jobs_in(folder) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(folder / "jobs.sqlite") as db:
        return {row[0]: (row[1], row[2]) for row in db.execute("SELECT id, status, attempts FROM jobs")}


def test_a_server_killed_and_started_again_keeps_every_video_and_runs_every_job(start_server, tmp_path):
    folder = tmp_path / "videos"
    first = start_server(["--model", "tiny-cogvideox", *FAST], folder=folder)
    ids = [first.create(prompt=f"job {n}", seed=n, frames=1)["id"] for n in range(4)]
    first.wait_status(ids[0], "completed")
    first.wait_status(ids[1], "in_progress", "completed")
    kept = (folder / f"{ids[0]}.mp4").read_bytes()
    first.process.kill()
    assert first.process.wait(DEADLINE) == -signal.SIGKILL
    again = start_server(["--model", "tiny-cogvideox", *FAST], folder=folder)  # the stale lock is taken over
    for video_id in ids:
        assert again.wait_status(video_id, "completed", "failed")["status"] == "completed"
        answer = again.call("GET", f"/v1/videos/{video_id}/content")
        assert answer.status == 200 and answer.body[4:8] == b"ftyp"
    assert (folder / f"{ids[0]}.mp4").read_bytes() == kept  # finished before the kill: not made again
    assert jobs_in(folder)[ids[0]] == ("completed", 1)
    # Two servers on one folder are refused as two batches are.
    second = Server(folder, ["--model", "tiny-cogvideox"])
    assert second.process.wait(DEADLINE) == 2
    lines = second.output().strip().splitlines()
    assert len(lines) == 1 and "is in use by another vidgen batch" in lines[0], lines
    assert again.stop() == 0


def test_sigterm_drains_a_stream_at_its_chunk_boundary_keeps_the_queue_and_exits_0(start_server):
    server = start_server(["--model", "tiny-helios", *FAST])
    stream_id = server.create(prompt="a long walk", stream=True, frames=33 * 500)["id"]
    waiting_id = server.create(prompt="after the stream", frames=33)["id"]
    sidecar = server.folder / f"{stream_id}.mp4.json"
    wait_for(sidecar.exists, "a first chunk")
    assert server.stop(signal.SIGTERM) == 0, server.output()
    assert '"status": "ended"' in sidecar.read_text()
    jobs = jobs_in(server.folder)
    assert jobs[stream_id][0] == "completed" and jobs[waiting_id][0] == "queued"
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::"])
def test_an_open_host_without_a_key_is_refused_in_one_line(host, tmp_path, vidgen, monkeypatch):
    monkeypatch.delenv("VIDGEN_API_KEY", raising=False)
    run = vidgen("serve", "--model", "tiny-cogvideox", "--host", host, "--dir", str(tmp_path / "videos"))
    assert run.exit_code == 2 and run.stderr.count("\n") == 1, run.stderr
    assert f"--host {host} lets other machines in, so it needs an API key" in run.stderr
    assert not (tmp_path / "videos").exists()


class Worker(SimpleNamespace):
    """A worker that never finishes loading."""


@pytest.fixture
def unready(tmp_path):
    """The routes, in-process, over a worker still loading its model."""
    server = ApiServer(
        store=Store(tmp_path),
        folder=tmp_path,
        model_name="tiny-cogvideox",
        model=None,
        defaults={},
        instance="test",
        worker=Worker(state="loading", error=None, wake=threading.Event()),
    )
    http = uvicorn.Server(uvicorn.Config(create_app(server), port=free_port(), log_level="error"))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    wait_for(lambda: http.started, "uvicorn to start")
    yield server, SimpleNamespace(call=Server.call, port=http.config.port, key=None)
    http.should_exit = True
    thread.join(DEADLINE)


def test_503_while_the_model_loads_and_while_the_server_drains(unready):
    server, client = unready
    answer = Server.call(client, "POST", "/v1/videos", {"prompt": "early"})
    assert answer.status == 503 and answer.json()["error"]["code"] == "model_loading"
    assert Server.call(client, "GET", "/health").json()["status"] == "loading"
    server.draining = True
    answer = Server.call(client, "POST", "/v1/videos", {"prompt": "late"})
    assert answer.status == 503 and answer.json()["error"]["code"] == "draining"
    assert not jobs_in(server.folder)


def test_a_job_running_when_two_servers_died_fails_with_a_line_saying_so(tmp_path):
    store = Store(tmp_path)
    store.add(
        {
            "id": "video_a",
            "created_at": 0,
            "model": "m",
            "seconds": "1",
            "size": "1x1",
            "prompt": "p",
            "options": {},
        },
        max_queue=1,
    )
    assert store.claim("first", "worker-0").attempts == 1
    assert store.recover("second") == [] and store.get("video_a").status == "queued"  # runs again
    assert store.claim("second", "worker-0").attempts == 2
    assert store.recover("second") == []  # its own server's job is not touched
    assert store.recover("third") == ["video_a"]
    failed = store.get("video_a")
    assert failed.status == "failed" and failed.error_code == "server_stopped"
    assert failed.error_message == "the server stopped 2 times while running this job; it is not run again"


def test_a_worker_whose_queue_fails_says_so_and_the_server_takes_no_jobs(tmp_path, monkeypatch, capsys):
    """A database error outside any job (here on claiming one) stops the worker with a line on stderr,
    and the server answers 503 with it, instead of queueing jobs no thread will ever run."""
    from vidgen.serve.api import ApiError, _check_ready
    from vidgen.serve.worker import Worker as RealWorker

    store = Store(tmp_path)
    worker = RealWorker(store, tmp_path, {}, "test")
    monkeypatch.setattr(worker, "_load", lambda: None)

    def broken_claim(instance, name):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "claim", broken_claim)
    worker.run()  # returns: the worker stops instead of dying silently
    assert worker.state == "failed" and store.ready_workers("test") == 0
    assert "the worker stopped taking jobs: OperationalError: disk I/O error" in capsys.readouterr().err
    server = ApiServer(store=store, folder=tmp_path, model_name="m", model=None, defaults={}, instance="test")
    server.worker = worker
    assert server.state() == "failed"
    with pytest.raises(ApiError) as refused:
        _check_ready(server)
    assert refused.value.status == 503 and "disk I/O error" in refused.value.message


def test_a_database_from_before_prompts_had_their_chunk_gets_the_column(tmp_path):
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:  # the prompts table as it was made before
        db.execute(
            "CREATE TABLE prompts (seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, "
            "prompt TEXT NOT NULL, taken INTEGER NOT NULL DEFAULT 0)"
        )
        db.execute("INSERT INTO prompts (job, prompt, taken) VALUES ('video_a', 'old', 1)")
    store = Store(tmp_path)
    store.add_prompt("video_a", "a robot dances")
    assert store.take_prompts("video_a", 3) == ["a robot dances"]
    assert store.taken_prompts("video_a") == {3: ["a robot dances"]}  # taken before: no chunk, not replayed
    assert Store(tmp_path).taken_prompts("video_a") == {3: ["a robot dances"]}  # opened again: kept
