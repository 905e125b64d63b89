"""Sharing a batch between processes started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK set).

Every rank reads and checks the whole job file (cheap next to generating), then takes the jobs whose
index in the file is its rank modulo the world size: a split that needs no communication and stays the
same on a resumed run, whatever the manifest says. Each rank writes its own manifest part.

The ranks meet once, at the end: rank 0 gathers every rank's report (gloo, over torchrun's rendezvous,
so it works across nodes and on CPU) and speaks for the whole batch. That wait matters: torchrun stops
every rank as soon as one exits with an error, so a rank whose jobs failed must not exit while others
still generate. Ranks other than 0 exit 0 once their share is done; rank 0's exit status covers all.
"""

import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from vidgen.core.errors import VidgenError

T = TypeVar("T")

# Ranks finish their shares hours apart on a long batch; the default 30 minutes would end the wait. A
# rank that dies makes torchrun stop the others, so a long wait never hangs a torchrun batch.
GATHER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Rank":
        """This process's place, from torchrun's variables; a lone process is rank 0 of 1."""
        if "WORLD_SIZE" not in environ:
            return cls()
        try:
            rank = cls(
                int(environ.get("RANK", 0)), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", 0))
            )
        except ValueError:
            raise VidgenError(
                "RANK, WORLD_SIZE and LOCAL_RANK must be numbers", "start ranks with torchrun"
            ) from None
        if not 0 <= rank.rank < rank.world_size:
            raise VidgenError(
                f"RANK {rank.rank} is not below WORLD_SIZE {rank.world_size}", "start with torchrun"
            )
        missing = [
            name for name in ("MASTER_ADDR", "MASTER_PORT") if rank.distributed and name not in environ
        ]
        if missing:
            raise VidgenError(
                f"WORLD_SIZE is set but {' and '.join(missing)} is not", "start ranks with torchrun"
            )
        return rank

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def speaks(self) -> bool:
        """Whether this rank reports for the batch (the validation report, the summary)."""
        return self.rank == 0

    def takes(self, index: int) -> bool:
        """Whether the job at `index` (0-based, in file order) is this rank's."""
        return index % self.world_size == self.rank

    def device(self, device: str) -> str:
        """A plain "cuda" means this rank's own GPU, cuda:LOCAL_RANK; a device with an index is kept."""
        return f"cuda:{self.local_rank}" if self.distributed and device == "cuda" else device


# How long a rank other than 0 waits, after an error, for rank 0 to report the same error (see
# `left_to_rank_zero`): what rank 0 needs to reach it too, on a loaded machine.
REPORT_WAIT_SECONDS = 60.0


def left_to_rank_zero(environ: Mapping[str, str] = os.environ, seconds: float = REPORT_WAIT_SECONDS) -> bool:
    """Whether this rank's error is left for rank 0 to report: True on a torchrun rank other than 0 that
    torchrun stopped (SIGTERM, or Ctrl-C) within `seconds` of the error, as it does once rank 0 exits.

    A mistake in the options stops every rank, each with the same error: rank 0 alone prints it, and
    the others wait for torchrun to stop them before exiting with the same code, so that none exits
    first and torchrun stops rank 0 before it has said why. After `seconds` the error is this rank's
    own (rank 0 went on) and this rank reports it."""
    try:
        rank = Rank.from_env(environ)
    except VidgenError:
        return False
    if not rank.distributed or rank.speaks:
        return False
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)
    except KeyboardInterrupt:  # torchrun stopping this rank (vidgen.ui.signals turns SIGTERM into one)
        return True
    return False


def lost_peer(error: BaseException, environ: Mapping[str, str] = os.environ) -> str | None:
    """The one line for a collective that failed because another rank is gone (killed, crashed): gloo
    reports a closed connection as a RuntimeError, NCCL and the store as torch.distributed errors.
    None for anything else, and outside torchrun."""
    distributed = sys.modules.get("torch.distributed")  # never imported here: only if the run did
    if distributed is None or "WORLD_SIZE" not in environ:
        return None
    text = str(error)
    gloo = isinstance(error, RuntimeError) and "/gloo/" in text
    if not (gloo or isinstance(error, getattr(distributed, "DistError", ()))):
        return None
    reason = re.sub(
        r"^\[[^\]]*\]\s*", "", text.strip().splitlines()[0] if text.strip() else type(error).__name__
    )
    reason = reason.split(". This is typically")[0]  # gloo's advice to read the other rank's log
    return (
        f"rank {environ.get('RANK', '?')} stopped: another rank is gone ({reason}); torchrun's report "
        "names the rank that failed first"
    )


def gather(rank: Rank, report: T) -> list[T] | None:
    """Every rank's report on rank 0 (None on the others), once all ranks are done; a no-op alone."""
    if not rank.distributed:
        return [report]
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
    try:
        reports: list[Any] | None = [None] * rank.world_size if rank.speaks else None
        dist.gather_object(report, reports, dst=0)
        return reports
    finally:
        dist.destroy_process_group()
