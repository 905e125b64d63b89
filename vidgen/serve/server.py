"""`vidgen serve`: check the options, hold --dir as a batch holds its folder, start the workers, answer HTTP.

One process: uvicorn serves the routes on the main thread's event loop while a worker thread loads the
model and runs jobs. Under torchrun every rank is a worker on its own GPU (cuda:LOCAL_RANK), claiming
jobs from the one database; rank 0 also serves HTTP. The ranks share nothing but --dir: they never form
a process group, so one rank's video never waits for another's.

SIGTERM (and Ctrl-C) drain: the server stops taking jobs (503), a running stream ends at its chunk
boundary, any other running job finishes, queued jobs stay queued for the next start; then exit 0
(130 after Ctrl-C).
"""

import ipaddress
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.core.errors import INTERRUPTED, VidgenError
from vidgen.ui import console

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK")
API_KEY_VARIABLE = "VIDGEN_API_KEY"


@dataclass(frozen=True)
class ServeOptions:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    dir: str = "vidgen-serve"
    max_queue: int = 64
    max_upload_mb: float = 20.0
    # The generation options of t2v and stream by Options field name: every job's defaults.
    defaults: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False


def check_access(host: str, api_key: str | None) -> None:
    """Only this machine may reach a server without a key."""
    if api_key is not None and not api_key.strip():
        raise VidgenError("the API key is empty", f"pass --api-key KEY or set {API_KEY_VARIABLE}")
    if api_key is None and not _is_loopback(host):
        raise VidgenError(
            f"--host {host} lets other machines in, so it needs an API key",
            f"pass --api-key KEY or set {API_KEY_VARIABLE} (clients send Authorization: Bearer KEY)",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def served_name(model: str) -> str:
    """The model's name in answers: a preset or hub id as given; a local folder by its own name, so that
    no answer shows where the server keeps its files."""
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


def serve_forever(options: ServeOptions) -> int:
    """Run until SIGTERM or Ctrl-C; the exit code."""
    from vidgen.app.batch.lock import group_id, outdir_lock
    from vidgen.runtime.ranks import Rank

    api_key = options.api_key if options.api_key is not None else os.environ.get(API_KEY_VARIABLE)
    check_access(options.host, api_key)
    if not 1 <= options.max_queue <= 1_000_000:
        raise VidgenError(f"--max-queue {options.max_queue} is out of range", "pass e.g. --max-queue 64")
    if not options.max_upload_mb > 0:
        raise VidgenError(f"--max-upload-mb {options.max_upload_mb} is not positive", "pass e.g. 20")
    rank = Rank.from_env()
    group = group_id(rank)
    instance = group or secrets.token_hex(8)
    defaults = dict(options.defaults, model=options.model)
    if rank.distributed:
        defaults = _one_device_per_rank(rank, defaults)
    folder = _folder(options.dir)
    with outdir_lock(folder, group):
        return _serve_locked(options, api_key, folder, defaults, instance, rank)


def _one_device_per_rank(rank: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Each rank a lone process on its own GPU: torchrun's variables go, so nothing joins a group."""
    for name in TORCHRUN_VARIABLES:
        os.environ.pop(name, None)
    device = defaults.get("device")
    if device in (None, "cuda"):
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{rank.local_rank}"
    return dict(defaults, device=device)


def _folder(path: str) -> Path:
    from vidgen.validate.common import check_path_text

    folder = Path(path).expanduser()
    check_path_text(folder, "--dir")
    if folder.exists() and not folder.is_dir():
        raise VidgenError(f"'{folder}' is a file, not a folder", "pass a folder for the videos with --dir")
    return folder


def _serve_locked(
    options: ServeOptions, api_key: str | None, folder: Path, defaults: dict, instance: str, rank: Any
) -> int:
    from vidgen.serve.store import Store
    from vidgen.serve.worker import Worker

    store = Store(folder)
    for job_id in store.recover(instance):
        console.warning(f"{job_id}: failed; the server stopped twice while running it")
    worker = Worker(store, folder, defaults, instance, name=f"worker-{rank.rank}")
    if rank.rank != 0:
        return _work_only(worker)
    return _serve_http(options, api_key, folder, defaults, instance, store, worker)


def _work_only(worker: Any) -> int:
    """A rank past 0: run jobs until SIGTERM (torchrun passes it on to every rank)."""
    received = _record_stop_signals(worker.drain)
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
    return INTERRUPTED if signal.SIGINT in received else 0


def _record_stop_signals(on_stop: Any) -> list[int]:
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        on_stop()

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop)
    return received


def _serve_http(
    options: ServeOptions,
    api_key: str | None,
    folder: Path,
    defaults: dict,
    instance: str,
    store: Any,
    worker: Any,
) -> int:
    import uvicorn

    from vidgen.app.prepare import resolve_model
    from vidgen.serve.api import Server, create_app
    from vidgen.weights.presets import load_presets
    from vidgen.weights.sources import parse_model

    presets = load_presets()
    model = resolve_model(parse_model(options.model, presets), presets, preset_name=defaults.get("preset"))
    server = Server(
        store=store,
        folder=folder,
        model_name=served_name(options.model),
        model=model,
        defaults=defaults,
        instance=instance,
        api_key=api_key,
        max_queue=options.max_queue,
        max_upload_bytes=int(options.max_upload_mb * (1 << 20)),
        worker=worker,
    )

    def drain() -> None:
        server.draining = True
        worker.drain()

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            drain()
            super().handle_exit(sig, frame)

    # uvicorn raises the signal again once it has stopped: these make that a no-op (exit 0 after SIGTERM).
    received = _record_stop_signals(drain)
    config = uvicorn.Config(
        create_app(server),
        host=options.host,
        port=options.port,
        log_level="warning" if options.quiet else "info",
        access_log=not options.quiet,
        timeout_graceful_shutdown=None,
    )
    worker.start()
    if not options.quiet:
        console.note(f"serving {options.model} on http://{options.host}:{options.port} (videos in {folder})")
    http = DrainingServer(config)
    try:
        http.run()
    except SystemExit:  # uvicorn could not listen (the port is taken) and said why
        drain()
        worker.join()
        raise VidgenError(
            f"cannot listen on {options.host}:{options.port}", "choose another --port"
        ) from None
    worker.join()  # the running job finishes (a stream at its chunk boundary)
    received += [sig for sig in http._captured_signals if sig not in received]
    return INTERRUPTED if signal.SIGINT in received else 0
