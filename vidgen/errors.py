"""The one error type for user mistakes: the CLI prints it as one line and exits with its code."""

# Exit codes, documented in `vidgen --help`'s epilog.
WRITE_FAILED = 1  # the output could not be written (disk full, file-size limit, encoder failure)
USAGE = 2  # a mistake in the options or inputs; nothing was generated
OUT_OF_MEMORY = 3  # the device ran out of memory; options that use less memory are named
RANK_LOST = 1  # under torchrun, another rank stopped in the middle of a collective (torchrun names it)
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)
PIPE_CLOSED = 141  # the program reading `vidgen stream -o -` closed the pipe, as shells report SIGPIPE


class VidgenError(Exception):
    """A mistake the user can fix: what is wrong, and how to fix it."""

    def __init__(self, message: str, hint: str = "", exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
