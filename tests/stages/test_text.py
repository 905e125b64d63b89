"""The text stage: T5 embeddings, the prompt cache, truncation warnings, the encoder's placement."""

import pytest
import torch
from transformers import T5Config, T5EncoderModel

from vidgen.core.request import Runtime
from vidgen.stages.text import TextCache, encode_prompts, truncation_warning
from vidgen.weights import tiny


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer(model_max_length=226)


@pytest.fixture
def encoder(tokenizer):
    config = T5Config(vocab_size=len(tokenizer), d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    return T5EncoderModel(config).eval()


def count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_cache_runs_the_encoder_once_per_prompt_and_length(tokenizer, encoder):
    calls = count_calls(encoder)
    cache = TextCache()
    first = encode_prompts(["a cat", "a dog"], tokenizer, encoder, 226, Runtime(), cache)
    again = encode_prompts(["a dog", "a cat"], tokenizer, encoder, 226, Runtime(), cache)
    assert len(calls) == 2 and (cache.hits, cache.misses) == (2, 2)
    assert again[0] is first[1] and again[1] is first[0]
    encode_prompts(["a cat"], tokenizer, encoder, 120, Runtime(), cache)  # another length: another entry
    encode_prompts(["a cat"], tokenizer, encoder, 226, Runtime(), cache, model_key="other/model")
    assert len(calls) == 4 and len(cache) == 4


def test_a_prompt_repeated_in_one_call_is_encoded_once(tokenizer, encoder):
    calls = count_calls(encoder)
    negative, positive = encode_prompts(["", ""], tokenizer, encoder, 226, Runtime())
    assert len(calls) == 1 and negative is positive


def test_embeddings_are_padded_to_the_full_length_and_kept_on_the_cpu(tokenizer, encoder):
    (encoding,) = encode_prompts(["a cat walks"], tokenizer, encoder, 226, Runtime())
    assert encoding.embeds.shape == (1, 226, 8) and encoding.embeds.device.type == "cpu"
    assert encoding.tokens == 4 and encoding.dropped == 0  # three words and the end token


def test_truncation_warning_says_how_many_tokens_were_dropped(tokenizer, encoder):
    long_prompt = " ".join(["cat"] * 299)  # 299 word tokens and the end token
    short, long = encode_prompts(["a cat", long_prompt], tokenizer, encoder, 226, Runtime())
    assert truncation_warning("prompt", short) is None
    assert long.dropped == 74
    assert truncation_warning("prompt", long) == (
        "prompt is 300 tokens; the text encoder reads 226, 74 were dropped"
    )


@pytest.mark.parametrize(
    "runtime, expected",
    [
        (Runtime(offload="model"), "meta"),
        (Runtime(offload="model", keep_models=True), "cpu"),
        (Runtime(), "cpu"),
    ],
)
def test_encoder_leaves_the_device_after_encoding_under_model_offload_unless_kept(
    tokenizer, encoder, runtime, expected
):
    # The device here is the CPU, so the encoder is parked on "meta" to make the move visible.
    encode_prompts(["a cat"], tokenizer, encoder, 226, runtime, park="meta")
    assert {p.device.type for p in encoder.parameters()} == {expected}


def test_cache_hit_does_not_touch_the_encoder(tokenizer, encoder):
    cache = TextCache()
    (first,) = encode_prompts(["a cat"], tokenizer, encoder, 226, Runtime(), cache, park="meta")
    # The encoder is now on "meta" and could not run; a hit must not need it.
    (again,) = encode_prompts(["a cat"], tokenizer, encoder, 226, Runtime(), cache, park="meta")
    assert again is first
