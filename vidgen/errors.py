"""The one error type for user mistakes: the CLI prints it as one line and exits with its code."""


class VidgenError(Exception):
    """A mistake the user can fix: what is wrong, and how to fix it."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
