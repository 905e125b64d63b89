"""Run `vidgen` (argv after this script) with torch.distributed's collectives counted.

Started by torchrun in the tests: every call to the collectives that context parallelism uses adds the
bytes of the tensor this rank puts in to a tally, written as JSON to $VIDGEN_COUNT_DIR/rankN.json at exit
(with `group_left_open`: 1 when the process group was still initialized then).
RANK_ARGS (optional, "RANK:ARG ...") appends arguments on one rank only, to test ranks that disagree;
DIE_RANK (optional) makes that rank die at its third all-to-all, as a crashed GPU process would.
"""

import atexit
import json
import os
import sys
from collections import Counter
from pathlib import Path

import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

tally: Counter = Counter()


def counted(module, name):
    original = getattr(module, name)

    def wrapper(tensor, *args, **kwargs):
        source = args[0] if name == "all_gather" else tensor  # all_gather(outputs, input): the input
        tally[name] += source.numel() * source.element_size()
        tally[f"{name}.calls"] += 1
        if os.environ.get("DIE_RANK") == os.environ.get("RANK") and tally["all_to_all_single.calls"] == 3:
            os._exit(1)
        return original(tensor, *args, **kwargs)

    setattr(module, name, wrapper)


counted(funcol, "all_to_all_single")
counted(funcol, "all_gather_tensor")
counted(dist, "all_gather")


def dump() -> None:
    tally["group_left_open"] = int(dist.is_initialized())
    folder = Path(os.environ["VIDGEN_COUNT_DIR"])
    folder.mkdir(exist_ok=True)
    (folder / f"rank{os.environ.get('RANK', 0)}.json").write_text(json.dumps(tally))


atexit.register(dump)
extra = dict(item.split(":", 1) for item in os.environ.get("RANK_ARGS", "").split())
if os.environ.get("RANK") in extra:
    sys.argv.append(extra[os.environ["RANK"]])

from vidgen.cli import app  # noqa: E402  (after the collectives are wrapped)

app(sys.argv[1:], prog_name="vidgen")
