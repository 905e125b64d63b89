"""Where vidgen keeps what it makes for itself: built tiny models, measured MagCache ratios."""

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$VIDGEN_CACHE, else $XDG_CACHE_HOME/vidgen, else ~/.cache/vidgen."""
    if os.environ.get("VIDGEN_CACHE"):
        return Path(os.environ["VIDGEN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidgen"
