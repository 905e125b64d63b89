"""Run `vidgen` (argv after this script) under torchrun, with rank $KILL_RANK killing itself (SIGKILL) at
its third all-to-all, as the OOM killer or a lost node would: the other ranks are left in a collective."""

import os
import signal
import sys

import torch.distributed._functional_collectives as funcol

calls = 0
all_to_all_single = funcol.all_to_all_single


def dying(*args, **kwargs):
    global calls
    calls += 1
    if os.environ.get("RANK") == os.environ["KILL_RANK"] and calls == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return all_to_all_single(*args, **kwargs)


funcol.all_to_all_single = dying

from vidgen.cli import app  # noqa: E402  (after the collective is wrapped)

app(sys.argv[1:], prog_name="vidgen")
