"""A stream's video while it is generated: the fragmented MP4 sent as it grows (chunked transfer), so a
`<video>` element or `mpv URL` plays it while later chunks are made.

The file grows by whole chunks under its final name (vidgen.io.stream_writer.Mp4Stream); the response
sends what is there, then waits for more, and ends once the job has ended and every byte was sent. A
job deleted meanwhile ends it; so does a server draining before the job started.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

POLL = 0.2  # seconds between looks at the file and the job
PIECE = 1 << 20


async def growing(server: Any, video_id: str, path: Path) -> AsyncIterator[bytes]:
    sent = 0
    while True:
        job = server.store.get(video_id)
        running = job is not None and job.status in ("queued", "in_progress")
        if job is None or (job.status == "queued" and server.draining):
            return
        data = _read_from(path, sent)
        while data:
            sent += len(data)
            yield data
            data = _read_from(path, sent)
        if not running:  # ended, and everything it wrote is sent
            return
        await asyncio.sleep(POLL)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(PIECE)
    except FileNotFoundError:  # before the first chunk
        return b""
