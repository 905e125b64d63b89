"""What the user sees while weights download: the total up front, then a bar per file and one overall.

On a terminal rich bars (bytes, speed, ETA); anywhere else one plain line per file, so logs stay short.
"""

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vidgen.weights.hub import RemoteFile, describe_size


class DownloadProgress:
    """Rich bars on stderr; use as a context manager so the live display always stops."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bars: Progress | None = None
        self._overall = None

    def __enter__(self) -> "DownloadProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bars is not None:
            self._bars.stop()

    def begin(self, repo_id: str, files: list[RemoteFile], missing: list[RemoteFile]) -> None:
        total, todo = sum(f.size for f in files), sum(f.size for f in missing)
        self.console.print(
            f"{repo_id}: {len(files)} files, {describe_size(total)}; "
            f"{len(missing)} to download ({describe_size(todo)})",
            highlight=False,
        )
        if missing and self.console.is_terminal:
            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                redirect_stdout=False,
            )
            self._bars.start()
            self._overall = self._bars.add_task("total", total=todo)

    def file(self, file: RemoteFile) -> Callable[[int], None]:
        """Starts `file`'s bar; returns the function that moves it (and the total) by some bytes."""
        if self._bars is None:
            self.console.print(f"downloading {file.path} ({describe_size(file.size)})", highlight=False)
            return lambda size: None
        bars, overall = self._bars, self._overall
        task = bars.add_task(file.path, total=file.size)

        def advance(size: int) -> None:
            bars.advance(task, size)
            bars.advance(overall, size)

        return advance

    def note(self, line: str) -> None:
        self.console.print(line, highlight=False)
