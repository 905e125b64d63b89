"""Prompt -> T5 embeddings, with a cache that `vidgen batch` reuses across jobs."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vidgen.core.request import Runtime
from vidgen.weights.loading import on_device


@dataclass(frozen=True)
class PromptEmbedding:
    """One prompt's encoding, kept on the CPU."""

    embeds: torch.Tensor  # [1, max_sequence_length, text_dim]
    tokens: int  # the prompt's length in tokens (with the end token) before truncation
    max_sequence_length: int

    @property
    def dropped(self) -> int:
        """How many of the prompt's tokens the encoder never saw."""
        return max(self.tokens - self.max_sequence_length, 0)


class TextCache:
    """Prompt embeddings on the CPU, keyed by (model, prompt, max_sequence_length).

    The model folder is part of the key so that one cache can serve a batch that mixes models.
    `hits` and `misses` count lookups, for tests and for the batch summary.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, int], PromptEmbedding] = {}
        self.hits = 0
        self.misses = 0

    def get(self, model: str, prompt: str, max_sequence_length: int) -> PromptEmbedding | None:
        found = self._entries.get((model, prompt, max_sequence_length))
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, model: str, prompt: str, encoding: PromptEmbedding) -> None:
        self._entries[(model, prompt, encoding.max_sequence_length)] = encoding

    def discard(self, prompt: str) -> None:
        """Forget `prompt` (for every model and length): `vidgen batch` drops prompts no later job uses."""
        for key in [key for key in self._entries if key[1] == prompt]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def encode_prompts(
    prompts: list[str],
    tokenizer,
    text_encoder: nn.Module,
    max_sequence_length: int,
    runtime: Runtime,
    cache: TextCache | None = None,
    model_key: str = "",
    park: str | torch.device = "cpu",
    encode: Callable[..., PromptEmbedding] | None = None,
) -> list[PromptEmbedding]:
    """Each prompt's embedding, from the cache where it has one; the encoder runs only for the rest.

    The text encoder comes to the device only when some prompt is missing from the cache. `encode`
    turns one prompt into its embedding (CogVideoX's T5 recipe by default; Helios passes its own).
    """
    encode = encode or encode_prompt
    cache = TextCache() if cache is None else cache
    found = {prompt: cache.get(model_key, prompt, max_sequence_length) for prompt in dict.fromkeys(prompts)}
    missing = [prompt for prompt, encoding in found.items() if encoding is None]
    if missing:
        with torch.no_grad(), on_device(text_encoder, runtime, park):
            for prompt in missing:
                found[prompt] = encode(tokenizer, text_encoder, prompt, max_sequence_length, runtime.device)
                cache.put(model_key, prompt, found[prompt])
    return [found[prompt] for prompt in prompts]


def encode_prompt(
    tokenizer, text_encoder: nn.Module, prompt: str, max_sequence_length: int, device: str | torch.device
) -> PromptEmbedding:
    """Tokenize (pad to the full length, truncate past it) and run T5, as the CogVideoX pipelines do."""
    ids = tokenizer(
        prompt,
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    ).input_ids  # [1, max_sequence_length]
    tokens = len(tokenizer(prompt, add_special_tokens=True).input_ids)
    # No attention mask: the released models were trained on padded sequences with the pad tokens attended.
    embeds = text_encoder(ids.to(device))[0]
    return PromptEmbedding(embeds.cpu(), tokens, max_sequence_length)


def truncation_warning(label: str, encoding: PromptEmbedding) -> str | None:
    """One line for Result.warnings when the prompt was too long for the text encoder."""
    if not encoding.dropped:
        return None
    return (
        f"{label} is {encoding.tokens} tokens; the text encoder reads {encoding.max_sequence_length}, "
        f"{encoding.dropped} were dropped"
    )
