"""How pipelines report progress without knowing who listens (rich bars, plain lines, or nobody)."""

from typing import Protocol


class Progress(Protocol):
    def start_stage(self, name: str, total: int | None = None) -> None:
        """A stage begins; `total` is its number of steps when it has steps."""

    def advance(self, steps: int = 1) -> None:
        """The current stage finished `steps` more steps."""

    def end_stage(self) -> None:
        """The current stage is done."""

    def note(self, line: str) -> None:
        """A note for the user that comes up while working (the memory plan, once sizes are known)."""


class Silent:
    """Progress that reports nothing: the default for library callers and tests."""

    def start_stage(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass

    def end_stage(self) -> None:
        pass

    def note(self, line: str) -> None:
        pass
