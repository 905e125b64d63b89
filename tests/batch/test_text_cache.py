"""A batch keeps a prompt's embedding only while a later job still encodes it."""

from collections import Counter

import torch

from vidgen.app.batch.runner import _forget_unused
from vidgen.stages.text import PromptEmbedding, TextCache


def embedding() -> PromptEmbedding:
    return PromptEmbedding(torch.zeros(1, 4, 2), tokens=2, max_sequence_length=4)


def test_a_prompt_is_dropped_after_the_last_job_that_uses_it():
    cache = TextCache()
    for prompt in ("a cat", "a dog", ""):
        cache.put("model", prompt, embedding())
    uses = Counter(["a cat", "", "a dog", "", "a cat", ""])  # three jobs, one negative prompt
    _forget_unused(cache, uses, ["a cat", ""])
    assert len(cache) == 3
    _forget_unused(cache, uses, ["a dog", ""])
    assert cache.get("model", "a dog", 4) is None and cache.get("model", "a cat", 4) is not None
    _forget_unused(cache, uses, ["a cat", ""])
    assert len(cache) == 0
