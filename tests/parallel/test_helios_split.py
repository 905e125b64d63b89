"""Helios under context parallelism: which world sizes split its sequences is known before loading."""

from pathlib import Path

import pytest
from model_infos import HELIOS_DISTILLED

from vidgen.core.errors import VidgenError
from vidgen.core.request import Request
from vidgen.families import registry
from vidgen.families.helios import model as helios_model
from vidgen.families.helios.info import read_helios_info
from vidgen.families.helios.rules import helios_token_counts
from vidgen.runtime.parallel import ParallelPlan
from vidgen.validate.runtime import check_split


def test_released_distilled_at_384x640_splits_over_four_ranks_and_names_the_sizes_that_fit_eight():
    request = Request(mode="t2v", prompt="a cat", height=384, width=640, frames=33)
    # History 2400 tokens (short 2 x 24 x 40, mid 1 x 12 x 20, long 4 x 6 x 10); the chunk's 9 latent
    # frames at each pyramid stage: 9 x 6 x 10, 9 x 12 x 20, 9 x 24 x 40.
    assert helios_token_counts(request, HELIOS_DISTILLED) == {2400, 540, 2160, 8640}
    four = ParallelPlan(4, ulysses=4)
    assert check_split(four, request, HELIOS_DISTILLED, registry.family("helios")) == four
    with pytest.raises(VidgenError) as error:
        check_split(ParallelPlan(8, ulysses=8), request, HELIOS_DISTILLED, registry.family("helios"))
    assert str(error.value).startswith("8-way ulysses cannot split Helios' sequences at 640x384")
    assert error.value.hint == "use 2, 3, 4, 5, 6, 10, 12, 15 ranks"


def test_the_counts_are_the_sequences_the_model_sees(offline_workdir, invoke_cli, monkeypatch):
    folder = registry.ensure_tiny("helios", "distilled")
    seen = set()
    block_forward = helios_model.HeliosTransformerBlock.forward

    def recording(self, tokens, text_kv, time_rows, freqs, split):
        seen.update((split, tokens.shape[1] - split))
        return block_forward(self, tokens, text_kv, time_rows, freqs, split)

    monkeypatch.setattr(helios_model.HeliosTransformerBlock, "forward", recording)
    run = invoke_cli(
        "stream", "-m", "tiny-helios-distilled", "a cat", "--frames", "66", "--height", "64", "--width",
        "128", "--format", "png", "-o", "out", "--quiet",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert len(list(Path("out").glob("*.png"))) == 65  # two chunks: the second has a full history
    request = Request(mode="t2v", prompt="a cat", height=64, width=128, frames=66)
    assert helios_token_counts(request, read_helios_info(folder)) == seen
