"""Prompt -> UMT5 embeddings the Wan way (Wan and Helios): cleaned text, real tokens kept, padding zeroed.

Callers pass `encode_prompt` to `vidgen.stages.text.encode_prompts`, so encodings go through the same
`TextCache` as CogVideoX's and a prompt schedule that returns to an earlier prompt encodes it once.
"""

import html

import regex
import torch
from torch import nn

from vidgen.stages.text import PromptEmbedding


def clean_prompt(text: str) -> str:
    """Fix mojibake, unescape HTML twice and collapse whitespace, as the Helios/Wan pipelines do."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    # `regex`, not `re`: its `\s` is Unicode White_Space, which differs from `re` on a few controls.
    return regex.sub(r"\s+", " ", text).strip()


def encode_prompt(
    tokenizer, text_encoder: nn.Module, prompt: str, max_sequence_length: int, device: str | torch.device
) -> PromptEmbedding:
    """One prompt -> [1, max_sequence_length, D] on the CPU, in the text encoder's dtype.

    The hidden states are cut to the prompt's real length (text + EOS) and zero-padded back: UMT5's
    outputs at padding positions are not zero, and Helios was trained with zeros there.
    """
    text = clean_prompt(prompt)
    tokens = tokenizer(
        text,
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    length = int(tokens.attention_mask.gt(0).sum())
    hidden = text_encoder(tokens.input_ids.to(device), tokens.attention_mask.to(device)).last_hidden_state
    hidden = hidden.to(dtype=text_encoder.dtype).cpu()  # [1, L, D]
    embeds = torch.cat(
        [hidden[:, :length], hidden.new_zeros(1, max_sequence_length - length, hidden.shape[2])], 1
    )
    untruncated = len(tokenizer(text, add_special_tokens=True).input_ids)
    return PromptEmbedding(embeds, untruncated, max_sequence_length)
