"""`vidgen serve` under test: real servers (a subprocess each, on a free port) on the tiny models, and a
small HTTP client on the standard library. Waits poll with generous deadlines, never fixed sleeps."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DEADLINE = 180.0  # seconds: a loaded 2-core machine can be slow, a healthy test never waits this long
KEY = "test-key-" + uuid.uuid4().hex  # the key the keyed servers take


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def wait_for(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """`check()`'s first truthy value, looked for until the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    """`vidgen serve ARGS` in a subprocess; stderr goes to a log file."""

    def __init__(self, folder: Path, args: list[str], key: str | None = None) -> None:
        self.folder, self.key, self.port = folder, key, free_port()
        self.log = folder.parent / f"{folder.name}-{self.port}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        env.pop("VIDGEN_API_KEY", None)
        command = [
            sys.executable,
            "-m",
            "vidgen",
            "serve",
            "--dir",
            str(folder),
            "--port",
            str(self.port),
            *args,
        ]
        if key is not None:
            command += ["--api-key", key]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict | None = None,
        key: str | None = "default",
    ) -> Answer:
        """One request; `body` a dict is sent as JSON, bytes as they are."""
        headers = dict(headers or {})
        key = self.key if key == "default" else key
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        if isinstance(body, dict):
            body, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.output()
            try:
                return self.call("GET", "/health").status == 200
            except OSError:
                return False

        wait_for(ready, "the server to load its model")

    def create(self, **fields: Any) -> dict:
        answer = self.call("POST", "/v1/videos", fields)
        assert answer.status == 200, answer.body
        return answer.json()

    def video(self, video_id: str) -> dict:
        answer = self.call("GET", f"/v1/videos/{video_id}")
        assert answer.status == 200, answer.body
        return answer.json()

    def wait_status(self, video_id: str, *statuses: str) -> dict:
        return wait_for(
            lambda: (video := self.video(video_id))["status"] in statuses and video,
            f"{video_id} to be {' or '.join(statuses)}",
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(DEADLINE)


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """`start_server(args, folder=None, key=None, ready=True)`: a server, killed when the session ends."""
    started: list[Server] = []

    def start(
        args: list[str], folder: Path | None = None, key: str | None = None, ready: bool = True
    ) -> Server:
        folder = folder or tmp_path_factory.mktemp("serve") / "videos"
        server = Server(folder, args, key)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


# Every tiny job as quick as the model allows: one step, no guidance branch.
FAST = ["--steps", "1", "--guidance", "1"]


@pytest.fixture(scope="session")
def cog(start_server):
    """A keyed tiny-cogvideox server with a queue of 20 and a 64 KiB request cap."""
    return start_server(
        ["--model", "tiny-cogvideox", *FAST, "--max-queue", "20", "--max-upload-mb", "0.0625"], key=KEY
    )
