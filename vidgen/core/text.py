"""Text a user gives (prompts, job lines, prompt files) must be Unicode before anything uses it."""

from vidgen.core.errors import VidgenError


def check_text(text: str, what: str) -> str:
    """`text` if it is Unicode text. Python reads bytes that are not UTF-8 in argv (and, in the C
    locale, stdin) as lone surrogates, and a JSON escape can write one: the tokenizer and every
    file vidgen writes would fail on them once the model has loaded."""
    where = next((index for index, char in enumerate(text) if "\ud800" <= char <= "\udfff"), None)
    if where is None:
        return text
    char = ord(text[where])
    # surrogateescape maps an undecodable byte B to U+DC00 + B (B >= 0x80)
    found = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"a lone surrogate \\u{char:04x}"
    raise VidgenError(f"{what} is not valid UTF-8 text ({found} at character {where + 1})", "pass UTF-8 text")
