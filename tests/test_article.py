"""`article`: "a" or "an" as the word is read aloud, for messages that name a mode, format or count."""

import pytest

from vidgen.core.errors import article


@pytest.mark.parametrize(
    ("word", "expected"),
    [("i2v", "an"), ("t2v", "a"), ("v2v", "a"), ("mp4", "an"), ("gif", "a"), ("png", "a"), ("image", "an")]
    + [("video", "a"), ("8", "an"), ("11", "an"), ("18", "an"), ("10", "a"), ("80", "an"), ("110", "a")],
)
def test_article(word, expected):
    assert article(word) == expected
