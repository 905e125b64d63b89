"""The one error type for user mistakes: the CLI prints it as one line and exits with its code."""

import re

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


def article(word: str) -> str:
    """ "a" or "an" before `word` as it is read aloud: an i2v model, an image, an mp4, an 8-step or an
    11-step schedule; a t2v model, a png, a 10-step schedule."""
    digits = re.match(r"\d+", word)
    if digits:  # 8, 80, 800: "eight..."; 11, 18, 11000: "eleven", "eighteen (thousand)"
        number = digits.group()
        return "an" if number[0] == "8" or (len(number) % 3 == 2 and number[:2] in ("11", "18")) else "a"
    return "an" if word[:1].lower() in "aeiou" or word.lower().startswith("mp4") else "a"
