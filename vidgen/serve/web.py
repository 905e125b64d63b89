"""The page at `GET /`: static files from vidgen/serve/page (no build step, nothing fetched from elsewhere,
so the server works offline), and what the page's form needs to know about the loaded model.

The page talks to the API like any client. With an API key it sends `Authorization: Bearer KEY` on every
request, videos included: it fetches a finished video into a blob and a growing stream into a
MediaSource, because a `<video src>` cannot send the header, and a key (or a token standing for it) in a
URL would end up in logs, history and Referer headers.
"""

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

from vidgen.serve.errors import ApiError

PAGE = Path(__file__).parent / "page"
FILES = {"page.js": "text/javascript", "page.css": "text/css"}

# The page runs only its own script and styles and connects only to this server (blob: holds the videos
# it fetched). A page that cannot run injected script cannot hand the key it holds to anyone else.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "media-src 'self' blob:; img-src 'self' blob: data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_page(app: FastAPI, server: Any) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(PAGE / "index.html", media_type="text/html", headers=HEADERS)

    @app.get("/page/model.json", include_in_schema=False)
    def model() -> JSONResponse:
        return JSONResponse(page_model(server), headers=HEADERS)

    @app.get("/page/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        if name not in FILES:  # only the page's own files: nothing from a request names a path
            raise ApiError(404, f"the page has no file '{name}'", "not_found")
        return FileResponse(PAGE / name, media_type=FILES[name], headers=HEADERS)


def page_model(server: Any) -> dict[str, Any]:
    """The loaded model as the form shows it: its name, whether it streams, animates an image or needs one,
    and the server's defaults (the placeholders of the options left empty)."""
    model, defaults = server.model, server.defaults
    preset = model.preset

    def default(name: str, fallback: Any) -> Any:
        value = defaults.get(name)
        return fallback if value is None else value

    return {
        "model": server.model_name,
        "streams": model.family.streams,
        "images": "i2v" in model.info.modes,
        "text": "t2v" in model.info.modes,  # False: an image-to-video model, which needs the image
        "defaults": {
            "size": f"{default('width', preset.width)}x{default('height', preset.height)}",
            "frames": default("frames", preset.frames),
            "fps": default("fps", preset.fps),
            "steps": default("steps", preset.steps),
            "guidance": default("guidance", preset.guidance),
            "negative_prompt": default("negative_prompt", ""),
        },
    }
