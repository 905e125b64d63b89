"""A Hugging Face Hub on 127.0.0.1 serving one folder as a repo: the model-info API (file names and
sizes) and the resolve/ URLs the hub client downloads from, with HEAD metadata and byte ranges."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tiny_hub import COMMIT


class FakeHub:
    """`with FakeHub(repo_id, folder) as hub:` then HF_ENDPOINT=hub.url; `hub.requests` logs
    (method, path, range) of every request. A test may make it answer as a broken or hostile hub:
    another `commit` or `etag` (for every file), or a `listing` body (a captive portal's page)."""

    def __init__(self, repo_id: str, folder: Path, extra: dict[str, bytes] | None = None) -> None:
        self.repo_id = repo_id
        self.files = {
            str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
        }
        self.files.update(extra or {})
        self.requests: list[tuple[str, str, str | None]] = []
        self.cut: dict[str, int] = {}  # file -> bytes sent before the next GET of it drops the connection
        self.commit = COMMIT
        self.etag: str | None = None  # None: each file's sha256, as the hub gives LFS files
        self.listing: bytes | None = None  # what the model-info API answers instead of its JSON
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub.answer(self, body=True)

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?")[0]
        self.requests.append((handler.command, path, handler.headers.get("Range")))
        if path.rstrip("/").casefold() == f"/api/models/{self.repo_id}".casefold():
            if self.listing is not None:
                return self.send(handler, 200, self.listing, "text/html", body)
            return self.send(handler, 200, json.dumps(self.info()).encode(), "application/json", body)
        prefix = f"/{self.repo_id}/resolve/"
        if path.startswith(prefix):
            _, _, name = path.removeprefix(prefix).partition("/")
            if name in self.files:
                return self.send_file(handler, name, body)
        return self.send(handler, 404, b'{"error": "not found"}', "application/json", body)

    def info(self) -> dict:
        siblings = [{"rfilename": name, "size": len(data)} for name, data in self.files.items()]
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": self.commit, "siblings": siblings}

    def send_file(self, handler: BaseHTTPRequestHandler, name: str, body: bool) -> None:
        data = self.files[name]
        start = 0
        if handler.headers.get("Range", "").startswith("bytes="):
            start = int(handler.headers["Range"].removeprefix("bytes=").split("-")[0])
        etag = self.etag if self.etag is not None else hashlib.sha256(data).hexdigest()
        headers = {"X-Repo-Commit": self.commit, "ETag": f'"{etag}"'}
        if start >= len(data) > 0:  # as HTTP servers answer a range past the end
            return self.send(handler, 416, b"", "text/plain", body, {"Content-Range": f"bytes */{len(data)}"})
        if body and name in self.cut:  # promise the whole file, send part of it, hang up
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: self.cut.pop(name)])
            handler.wfile.flush()
            handler.close_connection = True
            return
        self.send(handler, 206 if start else 200, data[start:], "application/octet-stream", body, headers)

    @staticmethod
    def send(handler, status: int, data: bytes, kind: str, body: bool, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)
