"""A prompt schedule may give a chunk (prompt, weight) pairs: the chunk is conditioned on the weighted
sum of the prompts' embeddings (the Helios authors' prompt interpolation), on tiny models."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from vidgen.core.request import Request, Runtime
from vidgen.families import registry
from vidgen.families.helios import pipeline as helios
from vidgen.families.helios.denoise import Guidance
from vidgen.stages.text import TextCache

REQUEST = Request(
    mode="t2v",
    prompt="a red panda walks in the snow",
    negative_prompt="blurry",
    seed=3,
    steps=1,
    guidance=5.0,
    height=32,
    width=48,
    frames=33,
    max_sequence_length=512,
)


@pytest.fixture(scope="module")
def base_model():
    return helios.load(registry.ensure_tiny("helios", "base"), Runtime())


def conditioning(model, schedule):
    text = helios._ChunkText(model, REQUEST, Runtime(), Guidance(scale=5.0), TextCache(), schedule)
    return text.at(0)


def test_a_blend_conditions_on_the_weighted_sum_of_embeddings(base_model):
    cat, dog = "a cat sleeps", "a dog runs on the beach"
    blended = conditioning(base_model, lambda chunk: [(cat, 0.25), (dog, 0.75)])
    alone = {prompt: conditioning(base_model, lambda chunk, p=prompt: p) for prompt in (cat, dog)}
    expected = 0.25 * alone[cat].prompt + 0.75 * alone[dog].prompt
    torch.testing.assert_close(blended.prompt, expected, rtol=0, atol=1e-6)
    assert torch.equal(blended.negative, alone[cat].negative)  # the negative prompt is not blended


def test_a_whole_weight_blend_gives_the_prompts_video_and_an_even_blend_another(base_model):
    def first_chunk(schedule):
        return next(
            helios.generate_chunks(base_model, REQUEST, helios.HeliosSettings(), Runtime(), prompts=schedule)
        )

    plain = first_chunk(lambda chunk: REQUEST.prompt)
    assert np.array_equal(first_chunk(lambda chunk: [(REQUEST.prompt, 1.0)]), plain)
    halfway = first_chunk(lambda chunk: [(REQUEST.prompt, 0.5), ("a robot dances at night", 0.5)])
    assert not np.array_equal(halfway, plain)


def test_each_prompt_is_encoded_once_however_many_blends_use_it(base_model):
    calls = []
    hook = base_model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    schedule = [
        REQUEST.prompt,
        [(REQUEST.prompt, 0.5), ("a dog", 0.5)],
        [(REQUEST.prompt, 0.25), ("a dog", 0.75)],
    ]
    request = replace(REQUEST, frames=99)
    try:
        list(
            helios.generate_chunks(
                base_model, request, helios.HeliosSettings(), Runtime(), prompts=schedule.__getitem__
            )
        )
    finally:
        hook.remove()
    assert len(calls) == 3  # the prompt, the negative prompt, "a dog"
