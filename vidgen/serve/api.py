"""The HTTP routes: OpenAI's /v1/videos shape, vidgen's steering and health beside it.

Every route under /v1 needs the API key when the server has one. Requests are checked by the CLI's
functions before a job is queued (vidgen.serve.plans); the jobs live in the store, which the workers
claim from. Blocking work (SQLite, the checks, writing an upload) runs in the thread pool, so the event
loop keeps answering while a job generates.
"""

import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from vidgen.core.errors import VidgenError
from vidgen.serve import content, plans, web
from vidgen.serve.errors import ApiError, bad_request, error_body, not_found
from vidgen.serve.schema import FIELDS, parse_request, seconds_text, video_object
from vidgen.serve.store import QueueFull, Store
from vidgen.serve.worker import remove_files
from vidgen.validate.common import Model

MAX_JSON_BYTES = 1 << 20  # a JSON body: prompts are at most 64 KiB
DEFAULT_LIST = 20
MAX_LIST = 100


@dataclass
class Server:
    """What the routes share: the store, the loaded model's name, the limits, the in-process worker."""

    store: Store
    folder: Path
    model_name: str
    model: Model  # the model's configs and preset, read at start (no weights)
    defaults: dict[str, Any]
    instance: str
    api_key: str | None = None
    max_queue: int = 64
    max_upload_bytes: int = 20 << 20
    worker: Any = None  # the worker thread of this process (rank 0), woken when a job is queued
    draining: bool = False

    def state(self) -> str:
        if self.draining:
            return "draining"
        if self.store.ready_workers(self.instance):  # any rank's worker (torchrun) may take the job
            return "ready"
        if self.worker is not None and self.worker.state == "failed":
            return "failed"
        return "loading"


def create_app(server: Server) -> FastAPI:
    app = FastAPI(title="vidgen", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    _add_error_handlers(app)
    web.add_page(app, server)  # GET /: the page

    @app.get("/health")
    def health() -> JSONResponse:
        state = server.state()
        body = {
            "status": state,
            "model": server.model_name,
            "workers": server.store.ready_workers(server.instance),
        }
        if state == "failed":
            body["error"] = server.worker.error
        return JSONResponse(body, status_code=200 if state == "ready" else 503)

    @app.post("/v1/videos")
    async def create_video(request: Request) -> JSONResponse:
        _authorize(server, request)
        _check_ready(server)
        fields, upload = await _read_fields(request, server.max_upload_bytes)
        video = await run_in_threadpool(_create, server, fields, upload)
        if server.worker is not None:
            server.worker.wake.set()
        return JSONResponse(video)

    @app.get("/v1/videos")
    def list_videos(
        request: Request, limit: str = str(DEFAULT_LIST), after: str | None = None, order: str = "desc"
    ) -> JSONResponse:
        _authorize(server, request)
        count = _list_limit(limit)
        if order not in ("asc", "desc"):
            raise ApiError(400, f"order '{order}' is neither asc nor desc", "invalid_value", "order")
        if after is not None and server.store.get(after) is None:
            raise not_found(after)
        jobs, more = server.store.page(count, after, newest_first=order == "desc")
        data = [video_object(job) for job in jobs]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    @app.get("/v1/videos/{video_id}")
    def retrieve_video(request: Request, video_id: str) -> JSONResponse:
        _authorize(server, request)
        return JSONResponse(video_object(_job(server, video_id)))

    @app.delete("/v1/videos/{video_id}")
    def delete_video(request: Request, video_id: str) -> JSONResponse:
        _authorize(server, request)
        job = server.store.mark_deleted(video_id)
        if job is None:
            raise not_found(video_id)
        if job.status != "in_progress":  # a running job's worker stops it and removes its files
            remove_files(server.folder, video_id)
            server.store.remove(video_id)
        return JSONResponse({"id": video_id, "object": "video.deleted", "deleted": True})

    @app.get("/v1/videos/{video_id}/content", response_model=None)
    def video_content(request: Request, video_id: str, variant: str = "video") -> Response:
        _authorize(server, request)
        job = _job(server, video_id)
        if variant != "video":
            raise ApiError(
                400, f"variant '{variant}' is not kept; only the video is", "invalid_value", "variant"
            )
        path = plans.video_path(server.folder, video_id)
        if job.status == "completed":
            return FileResponse(path, media_type="video/mp4")
        if job.stream and job.status in ("queued", "in_progress"):
            return StreamingResponse(content.growing(server, video_id, path), media_type="video/mp4")
        reason = job.error_message if job.status == "failed" else f"it is {job.status.replace('_', ' ')}"
        raise ApiError(409, f"video '{video_id}' has no content: {reason}", "video_not_ready", "video_id")

    @app.post("/v1/videos/{video_id}/prompts")
    async def steer(request: Request, video_id: str) -> JSONResponse:
        _authorize(server, request)
        fields, _ = await _read_fields(request, MAX_JSON_BYTES)
        return JSONResponse(await run_in_threadpool(_steer, server, video_id, fields))

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(error.status_code, str(error.detail)), status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        param = str(first.get("loc", ["", ""])[-1]) or None
        return JSONResponse(error_body(400, first.get("msg", "invalid request"), "invalid_value", param), 400)


def _authorize(server: Server, request: Request) -> None:
    """The bearer key, compared in constant time; nothing to check when the server has none."""
    if server.api_key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, key = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), server.api_key.encode()):
        raise ApiError(
            401, "missing or wrong API key (send the header Authorization: Bearer KEY)", "invalid_api_key"
        )


def _check_ready(server: Server) -> None:
    state = server.state()
    if state == "ready":
        return
    if state == "draining":
        raise ApiError(503, "the server is shutting down and takes no new jobs", "draining")
    if state == "failed":
        raise ApiError(503, server.worker.error, "worker_failed")
    raise ApiError(503, f"the model {server.model_name} is still loading; try again shortly", "model_loading")


async def _read_fields(request: Request, upload_limit: int) -> tuple[dict[str, Any], UploadFile | None]:
    """The body as fields (JSON or a form) and its uploaded file, read up to `upload_limit` bytes for a
    form, MAX_JSON_BYTES for JSON (413 past it)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = kind in ("multipart/form-data", "application/x-www-form-urlencoded")
    limit = upload_limit if form else MAX_JSON_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _too_large(limit)
    request._body = bytes(body)  # Starlette's form parser reads the body from here
    if form:
        parsed = await request.form(max_files=1, max_fields=len(FIELDS) + 4)
        fields: dict[str, Any] = {}
        upload = None
        for name, value in parsed.multi_items():
            if isinstance(value, UploadFile):
                if name != "input_reference":
                    raise ApiError(
                        400,
                        f"file field '{name}' is not taken; send the image as input_reference",
                        "invalid_value",
                        name,
                    )
                upload = value
            else:
                fields[name] = value
        return fields, upload
    if not body:
        return {}, None
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON", "invalid_json") from None
    if not isinstance(fields, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_json")
    if "input_reference" in fields:
        raise ApiError(
            400,
            "input_reference must be an image file in a multipart form",
            "invalid_value",
            "input_reference",
        )
    return fields, None


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the request is larger than {limit / (1 << 20):g} MiB (--max-upload-mb)", "request_too_large"
    )


def _create(server: Server, fields: dict[str, Any], upload: UploadFile | None) -> dict[str, Any]:
    """Check the request as the CLI would, then queue it; the video object."""
    request = parse_request(fields)
    if request.model is not None and request.model != server.model_name:
        raise ApiError(
            400,
            f"model '{request.model}' is not served here; this server runs "
            f"'{server.model_name}' (omit model, or send that name)",
            "model_not_found",
            "model",
        )
    job_id = "video_" + secrets.token_hex(12)
    image = _keep_upload(server.folder, job_id, upload) if upload is not None else None
    try:
        checked = plans.check_request(request, server.defaults, server.model, server.folder, job_id, image)
        plan = checked.plan
        job = server.store.add(
            {
                "id": job_id,
                "created_at": int(time.time()),
                "model": server.model_name,
                "seconds": seconds_text(plan.request.frames, plan.request.fps),
                "size": f"{plan.request.width}x{plan.request.height}",
                "prompt": plan.request.prompt,
                "stream": int(checked.stream),
                "options": checked.options,
            },
            server.max_queue,
        )
    except VidgenError as error:
        _drop_upload(image)
        message = str(error).replace(str(image), "input_reference") if image else str(error)
        raise bad_request(VidgenError(message)) from None
    except QueueFull:
        _drop_upload(image)
        raise ApiError(
            429, f"the queue is full ({server.max_queue} jobs wait); try again later", "queue_full"
        ) from None
    except BaseException:
        _drop_upload(image)
        raise
    return video_object(job)


def _keep_upload(folder: Path, job_id: str, upload: UploadFile) -> Path:
    """The uploaded image under the job's id (never the client's file name)."""
    path = plans.upload_path(folder, job_id)
    path.parent.mkdir(exist_ok=True)
    upload.file.seek(0)
    path.write_bytes(upload.file.read())
    return path


def _drop_upload(image: Path | None) -> None:
    if image is not None:
        image.unlink(missing_ok=True)


def _steer(server: Server, video_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    job = _job(server, video_id)
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(
            400, "the prompt is empty (send a prompt field)", "missing_required_parameter", "prompt"
        )
    parse_request({"prompt": prompt})  # the same bounds as a video's prompt
    if "\n" in prompt.strip() or "\r" in prompt.strip():
        raise ApiError(400, "a steering prompt is one line", "invalid_value", "prompt")
    if not job.stream or job.status != "in_progress":
        what = "not a stream" if not job.stream else f"{job.status.replace('_', ' ')}, not running"
        raise ApiError(
            409,
            f"video '{video_id}' is {what}; only a running stream can be steered",
            "not_a_running_stream",
            "video_id",
        )
    server.store.add_prompt(video_id, prompt.strip())
    return {"object": "video.prompt", "video_id": video_id, "prompt": prompt.strip()}


def _job(server: Server, video_id: str) -> Any:
    job = server.store.get(video_id)
    if job is None:
        raise not_found(video_id)
    return job


def _list_limit(limit: str) -> int:
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST:
        raise ApiError(400, f"limit '{limit}' is not a number from 1 to {MAX_LIST}", "invalid_value", "limit")
    return int(limit)
