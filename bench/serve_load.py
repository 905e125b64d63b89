"""`vidgen serve` under load: status polls per second, and what a job costs through the server against
`vidgen t2v` on the same model.

Polls: THREADS clients, each on one keep-alive connection, GET /v1/videos/ID for SECONDS, first with
the worker idle, then while it generates one job after another (the HTTP loop must keep answering).
Jobs: the same JOBS videos (prompt, seed, size) made by `vidgen t2v` (one process each: Python, torch
and the model load every time) and through one warm server (POST, then polls until completed). Beside
the wall times, the generation time both record in their sidecars (text + denoise + decode + write), so
the overhead of each way is the difference.

    python bench/serve_load.py                                  # tiny-cogvideox, steps 1
    python bench/serve_load.py --model cogvideox-2b --steps 50 --device cuda --jobs 3
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VIDGEN = [sys.executable, "-m", "vidgen"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(connection: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {answer}")
    return answer


def wait_done(port: int, video_id: str, every: float = 0.02) -> float:
    """Polls until the job completes; the time it was first seen completed."""
    connection = http.client.HTTPConnection("127.0.0.1", port)
    while True:
        video = call(connection, "GET", f"/v1/videos/{video_id}")
        if video["status"] == "completed":
            return time.perf_counter()
        if video["status"] == "failed":
            raise RuntimeError(video["error"])
        time.sleep(every)


def polls_per_second(port: int, video_id: str, threads: int, seconds: float) -> float:
    counts = [0] * threads
    end = time.perf_counter() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port)
        while time.perf_counter() < end:
            call(connection, "GET", f"/v1/videos/{video_id}")
            counts[index] += 1

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def generation_seconds(sidecar: Path) -> float:
    timings = json.loads(sidecar.read_text())["timings"]
    return sum(timings.get(stage, 0.0) for stage in ("text", "encode", "denoise", "decode", "write"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny-cogvideox")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    levers = ["--steps", str(args.steps)] + (["--device", args.device] if args.device else [])
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        # The tiny model is built (or the weights fetched) before anything is timed.
        subprocess.run(
            [
                *VIDGEN,
                "t2v",
                "warm up",
                "-m",
                args.model,
                *levers,
                "--seed",
                "0",
                "-o",
                str(folder / "warm.mp4"),
                "--quiet",
            ],
            check=True,
            env=env,
        )

        cli_wall, cli_generate = [], []
        for job in range(args.jobs):
            output = folder / f"cli-{job}.mp4"
            started = time.perf_counter()
            subprocess.run(
                [
                    *VIDGEN,
                    "t2v",
                    f"job {job}",
                    "-m",
                    args.model,
                    *levers,
                    "--seed",
                    str(job),
                    "-o",
                    str(output),
                    "--quiet",
                ],
                check=True,
                env=env,
            )
            cli_wall.append(time.perf_counter() - started)
            cli_generate.append(generation_seconds(output.with_name(output.name + ".json")))

        port = free_port()
        videos = folder / "served"
        command = [
            *VIDGEN,
            "serve",
            "-m",
            args.model,
            *levers,
            "--dir",
            str(videos),
            "--port",
            str(port),
            "--quiet",
        ]
        server = subprocess.Popen(command, env=env)
        try:
            started = time.perf_counter()
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port)
                    connection.request("GET", "/health")
                    if connection.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if server.poll() is not None:
                    raise SystemExit("the server stopped")
                time.sleep(0.05)
            ready = time.perf_counter() - started

            connection = http.client.HTTPConnection("127.0.0.1", port)
            serve_latency, serve_generate = [], []
            for job in range(args.jobs):
                posted = time.perf_counter()
                video = call(connection, "POST", "/v1/videos", {"prompt": f"job {job}", "seed": job})
                serve_latency.append(wait_done(port, video["id"]) - posted)
                serve_generate.append(generation_seconds(videos / f"{video['id']}.mp4.json"))

            idle = polls_per_second(port, video["id"], args.threads, args.seconds)
            connection = http.client.HTTPConnection("127.0.0.1", port)  # the last one idled past keep-alive
            busy_ids = [
                call(connection, "POST", "/v1/videos", {"prompt": f"busy {n}"})["id"] for n in range(50)
            ]
            busy = polls_per_second(port, video["id"], args.threads, args.seconds)
            connection = http.client.HTTPConnection("127.0.0.1", port)
            for video_id in busy_ids:
                call(connection, "DELETE", f"/v1/videos/{video_id}")
        finally:
            server.terminate()
            server.wait()

    mean = statistics.mean
    print(f"model {args.model}, steps {args.steps}, {args.jobs} jobs, {args.threads} polling clients")
    print(
        f"status polls: {idle:.0f} requests/s with the worker idle, {busy:.0f} requests/s while it generates"
    )
    print(
        f"vidgen t2v: {mean(cli_wall):.2f} s a video (wall, one process each), "
        f"{mean(cli_generate):.2f} s of it generating; overhead {mean(cli_wall) - mean(cli_generate):.2f} s"
    )
    print(
        f"vidgen serve: {mean(serve_latency):.2f} s a video (POST to completed, model loaded once in "
        f"{ready:.1f} s), {mean(serve_generate):.2f} s of it generating; "
        f"overhead {mean(serve_latency) - mean(serve_generate):.2f} s"
    )


if __name__ == "__main__":
    main()
