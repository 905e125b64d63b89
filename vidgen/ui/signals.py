"""SIGTERM and SIGHUP stop vidgen the way Ctrl-C does.

A service manager, `timeout`, `kill` or a closed terminal stop a program with SIGTERM or SIGHUP, not
SIGINT. Python would die at once on those, leaving hidden partial files and a stream's sidecar saying
"running"; here they raise KeyboardInterrupt like Ctrl-C, so the same code keeps what was finished,
removes what was not, and the command exits with 128 + the signal's number, as shells report it.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vidgen.core.errors import INTERRUPTED

# Held or ignored together wherever a chunk and its record must be written whole.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: handled wherever Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_signals_as_interrupts() -> Iterator[list[int]]:
    """For the block, SIGTERM and SIGHUP raise `Stopped`; yields the list of signals received.
    Only the main thread can set handlers (elsewhere nothing changes)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum: int, frame) -> None:
        received.append(signum)
        raise Stopped(signum)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS if number != signal.SIGINT}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP that arrive during the block take effect right after it, as they
    would have (KeyboardInterrupt, `Stopped`): for a step that must not be cut in two, such as starting
    a child process and keeping hold of it. Only the main thread sees signals; elsewhere nothing changes.

    Not a signal mask: the kernel hands a process's signal to any thread that does not block it (torch
    has many), and Python then runs the handler in the main thread all the same."""
    handlers = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    if threading.current_thread() is not threading.main_thread() or None in handlers.values():
        yield  # a handler set outside Python cannot be put back
        return
    received: list[int] = []
    for number in handlers:
        signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        for number in received:
            signal.raise_signal(number)


def exit_code(code: int, received: list[int]) -> int:
    """An interruption's exit code names the signal that caused it: 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + received[0] if code == INTERRUPTED and received else code
