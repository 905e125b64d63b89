"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the status that says
what went wrong, so OpenAI's clients raise their own exception classes (BadRequestError, ...)."""

from dataclasses import dataclass

from vidgen.core.errors import VidgenError

# status -> OpenAI's error type
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


@dataclass
class ApiError(Exception):
    status: int
    message: str
    code: str | None = None
    param: str | None = None

    def body(self) -> dict:
        return error_body(self.status, self.message, self.code, self.param)


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    return {
        "error": {
            "message": message,
            "type": TYPES.get(status, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def bad_request(error: VidgenError, param: str | None = None) -> ApiError:
    """A check the CLI makes, failed: its one line, as the CLI prints it."""
    return ApiError(400, str(error), "invalid_value", param)


def not_found(video_id: str) -> ApiError:
    return ApiError(404, f"no video with id '{video_id}'", "not_found", "video_id")
