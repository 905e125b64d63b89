"""The `vidgen` command: `app` holds the commands, `options` every option they take."""

from vidgen.cli.app import app

__all__ = ["app"]
