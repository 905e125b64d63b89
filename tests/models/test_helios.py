"""Parity of vidgen's HeliosTransformer3DModel with diffusers' (built in each test), on tiny configs."""

import inspect

import pytest
import torch
from diffusers import HeliosTransformer3DModel as DiffusersHelios

from vidgen.families.helios.model import HeliosCache, HeliosTransformer3DModel

TINY = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "text_dim": 24,
    "freq_dim": 16,
    "ffn_dim": 40,
    "num_layers": 2,
    "rope_dim": (4, 6, 6),
}
# Wide enough that matmuls and convs sum long rows (blocked, vectorised): where bf16 rounding can diverge.
WIDE = {
    "num_attention_heads": 4,
    "attention_head_dim": 64,
    "rope_dim": (24, 20, 20),
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 256,
    "freq_dim": 256,
    "ffn_dim": 512,
}
TEXT_LEN = 7
FP32_TOLERANCE = 1e-5


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours.float() - ref.float()).norm() / ref.float().norm()).item()


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Replace every parameter: diffusers starts some at zeros or ones, which would hide wrong wiring."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            fan_in = param[0].numel() if param.ndim > 1 else 1
            noise = torch.randn(param.shape, generator=generator) / fan_in**0.5
            # Vectors (biases, norm weights, tables, gains) around 0.5 so no sign or scale is special.
            param.copy_(noise if param.ndim > 1 else 0.5 + 0.5 * noise)


def build_pair(**overrides) -> tuple[DiffusersHelios, HeliosTransformer3DModel]:
    config = {**TINY, **overrides}
    torch.manual_seed(0)
    ref = DiffusersHelios(**config).eval()
    randomize_(ref)
    ours = HeliosTransformer3DModel(**config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def pipeline_inputs(
    batch: int = 1,
    height: int = 6,
    width: int = 10,
    chunk_frames: int = 3,
    history_sizes: tuple[int, int, int] | None = (8, 2, 1),
    chunk_scale: int = 1,
    timestep_dtype: torch.dtype = torch.float32,
    channels: int = TINY["in_channels"],
    text_dim: int = TINY["text_dim"],
    per_sample_indices: bool = False,
    seed: int = 1,
) -> dict:
    """Transformer inputs as HeliosPipeline builds them (keep_first_frame: a prefix frame joins the short).

    history_sizes are (long, mid, 1x) latent frames, [16, 2, 1] scaled down; chunk_scale > 1 shrinks the noisy
    chunk like a pyramid stage while the history stays at full size. None: no history at all.
    """
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "hidden_states": torch.randn(
            batch, channels, chunk_frames, height // chunk_scale, width // chunk_scale, generator=g
        ),
        "timestep": torch.tensor([937.5, 250.0][:batch]).to(timestep_dtype),
        "encoder_hidden_states": torch.randn(batch, TEXT_LEN, text_dim, generator=g),
    }
    if history_sizes is None:
        return inputs
    long, mid, one = history_sizes
    indices = torch.arange(1 + long + mid + one + chunk_frames)
    prefix, idx_long, idx_mid, idx_one, idx_chunk = indices.split([1, long, mid, one, chunk_frames])
    history = torch.randn(batch, channels, 1 + long + mid + one, height, width, generator=g)
    prefix_latents, latents_long, latents_mid, latents_one = history.split([1, long, mid, one], dim=2)
    # The pipelines pass indices [1, frames] whatever the batch; per_sample_indices gives one row per sample.
    rows = batch if per_sample_indices else 1
    inputs |= {
        "indices_hidden_states": idx_chunk.expand(rows, -1),
        "indices_latents_history_short": torch.cat([prefix, idx_one]).expand(rows, -1),
        "indices_latents_history_mid": idx_mid.expand(rows, -1),
        "indices_latents_history_long": idx_long.expand(rows, -1),
        "latents_history_short": torch.cat([prefix_latents, latents_one], dim=2),
        "latents_history_mid": latents_mid,
        "latents_history_long": latents_long,
    }
    return inputs


def run(model: torch.nn.Module, inputs: dict, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, **kwargs).sample


# (config overrides, input options): every switch, with and without history, batch 1 and 2.
CASES = {
    "released_switches": ({}, {}),
    "released_switches_batch2": ({}, {"batch": 2}),
    "per_sample_indices": ({}, {"batch": 2, "per_sample_indices": True}),
    "no_history": ({}, {"history_sizes": None, "batch": 2}),
    "no_memory_patch": ({"has_multi_term_memory_patch": False}, {"history_sizes": None}),
    "no_guidance_cross_attn": ({"guidance_cross_attn": False}, {"batch": 2}),
    "no_zero_history_timestep": ({"zero_history_timestep": False}, {"batch": 2}),
    "amplify_per_head": ({"is_amplify_history": True, "history_scale_mode": "per_head"}, {"batch": 2}),
    "amplify_scalar": ({"is_amplify_history": True, "history_scale_mode": "scalar"}, {}),
    "qk_norm_none": ({"qk_norm": None}, {}),
    "no_cross_attn_norm": ({"cross_attn_norm": False}, {"batch": 2}),
    "added_kv_proj": ({"added_kv_proj_dim": 12}, {}),
    "all_switches_off": (
        {"guidance_cross_attn": False, "zero_history_timestep": False, "cross_attn_norm": False},
        {"batch": 2},
    ),
    "pyramid_stage_int_timesteps": (
        {},
        {"chunk_scale": 2, "height": 8, "width": 12, "timestep_dtype": torch.int64},
    ),
    "odd_sizes_long_history": ({}, {"height": 10, "width": 14, "history_sizes": (16, 2, 1)}),
    "wide": (WIDE, {"batch": 2, "height": 16, "width": 24, "channels": 16, "text_dim": 256}),
    "wide_long_history": (
        WIDE,
        {"height": 16, "width": 16, "history_sizes": (16, 2, 1), "channels": 16, "text_dim": 256},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_diffusers_fp32(name: str) -> None:
    overrides, options = CASES[name]
    ref, ours = build_pair(**overrides)
    inputs = pipeline_inputs(**options)
    expected = run(ref, inputs)
    actual = run(ours, inputs)
    assert actual.shape == expected.shape == inputs["hidden_states"].shape
    assert relative_error(actual, expected) <= FP32_TOLERANCE


# Ours vs diffusers, both bf16: measured 0 (bit for bit) in every case here and at the released width.
BF16_TOLERANCE = 1e-4
BF16_VS_FP32_TOLERANCE = 2e-2  # bf16 vs float32 of the same weights: measured 4e-3 to 8e-3


def to_bf16(inputs: dict) -> dict:
    # The pipelines cast latents and text to the model dtype; timesteps stay as the scheduler gives them.
    return {
        k: v.to(torch.bfloat16) if v.is_floating_point() and k != "timestep" else v for k, v in inputs.items()
    }


def test_history_key_amplification_runs_in_bf16_close_to_diffusers_fp32(tmp_path) -> None:
    # diffusers 0.42.1 promotes the amplified history keys to float32 and its attention call then rejects
    # the mixed dtypes, so its bf16 output cannot be compared: check ours against its float32 output.
    ref, _ = build_pair(is_amplify_history=True)
    inputs = pipeline_inputs(batch=2)
    expected = run(ref, inputs)
    ref.save_pretrained(tmp_path)
    ours = HeliosTransformer3DModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16).eval()
    assert ours.blocks[0].attn1.history_key_scale.dtype == torch.float32
    actual = run(ours, to_bf16(inputs))
    assert actual.dtype == torch.bfloat16
    assert relative_error(actual, expected) <= BF16_VS_FP32_TOLERANCE


@pytest.mark.parametrize(
    "name",
    [
        "released_switches_batch2",
        "all_switches_off",
        "pyramid_stage_int_timesteps",
        "wide",
        "wide_long_history",
    ],
)
def test_bf16_loading_keeps_fp32_modules_and_matches_diffusers_bf16(name: str, tmp_path) -> None:
    overrides, options = CASES[name]
    ref, _ = build_pair(**overrides)
    inputs = pipeline_inputs(**options)
    expected_fp32 = run(ref, inputs)
    ref.save_pretrained(tmp_path / "transformer")
    load = {"subfolder": "transformer", "torch_dtype": torch.bfloat16}
    ref_bf16 = DiffusersHelios.from_pretrained(tmp_path, **load).eval()
    ours_bf16 = HeliosTransformer3DModel.from_pretrained(tmp_path, **load).eval()

    def fp32_names(model: torch.nn.Module) -> set[str]:
        return {n for n, p in model.named_parameters() if p.dtype == torch.float32}

    assert fp32_names(ours_bf16) == fp32_names(ref_bf16)
    assert any(".time_embedder." in n for n in fp32_names(ours_bf16))
    assert ours_bf16.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    expected = run(ref_bf16, to_bf16(inputs))
    actual = run(ours_bf16, to_bf16(inputs))
    assert actual.dtype == expected.dtype == torch.bfloat16
    assert relative_error(actual, expected) <= BF16_TOLERANCE
    assert relative_error(actual, expected_fp32) <= BF16_VS_FP32_TOLERANCE


def test_fused_projections_match_unfused_and_diffusers() -> None:
    ref, ours = build_pair()
    inputs = pipeline_inputs(batch=2)
    expected = run(ref, inputs)
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    ours.fuse_qkv_projections()
    assert hasattr(ours.blocks[0].attn1, "to_qkv") and not hasattr(ours.blocks[0].attn1, "to_q")
    assert hasattr(ours.blocks[0].attn2, "to_kv") and hasattr(ours.blocks[0].attn2, "to_q")
    assert relative_error(run(ours, inputs), expected) <= FP32_TOLERANCE
    ref.fuse_qkv_projections()
    assert relative_error(run(ours, inputs), run(ref, inputs)) <= FP32_TOLERANCE
    ours.unfuse_qkv_projections()
    restored = ours.state_dict()
    assert restored.keys() == state.keys()
    assert all(torch.equal(restored[k], v) for k, v in state.items())


def test_cache_reuses_per_chunk_constants_and_matches_uncached() -> None:
    ref, ours = build_pair(num_layers=3)
    inputs = pipeline_inputs(batch=2)
    cache = HeliosCache()
    first = run(ours, inputs, cache=cache)
    computed = cache.computed  # rotary table, projected text, timestep-0 rows, key/value pair per block
    assert computed == 3 + 3
    for t in (937.5, 500.0):  # later steps of the chunk: only the latents and the timestep change
        step = inputs | {"hidden_states": inputs["hidden_states"] + 0.1, "timestep": torch.tensor([t, t / 2])}
        assert relative_error(run(ours, step, cache=cache), run(ref, step)) <= FP32_TOLERANCE
    assert cache.computed == computed
    assert torch.equal(first, run(ours, inputs))

    # Another prompt (a new tensor) refreshes the text entries and keeps the rotary table.
    other = inputs | {"encoder_hidden_states": torch.randn_like(inputs["encoder_hidden_states"])}
    assert relative_error(run(ours, other, cache=cache), run(ref, other)) <= FP32_TOLERANCE
    assert cache.computed == computed + 1 + 3


def test_history_without_memory_patch_is_an_error() -> None:
    _, ours = build_pair(has_multi_term_memory_patch=False)
    with pytest.raises(ValueError, match="has_multi_term_memory_patch"):
        run(ours, pipeline_inputs())


def test_unknown_history_scale_mode_is_rejected_like_diffusers() -> None:
    config = TINY | {"is_amplify_history": True, "history_scale_mode": "per_token"}
    with pytest.raises(ValueError):
        DiffusersHelios(**config)
    with pytest.raises(ValueError, match="history_scale_mode"):
        HeliosTransformer3DModel(**config)


def test_return_dict_false_gives_a_one_tuple() -> None:
    ref, ours = build_pair()
    inputs = pipeline_inputs()
    with torch.no_grad():
        (actual,) = ours(**inputs, return_dict=False)
    assert relative_error(actual, run(ref, inputs)) <= FP32_TOLERANCE


def test_constructor_matches_diffusers_names_and_defaults() -> None:
    def parameters(fn) -> list[tuple[str, object]]:
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]

    assert parameters(HeliosTransformer3DModel.__init__) == parameters(DiffusersHelios.__init__)


def test_forward_accepts_diffusers_arguments_in_order() -> None:
    ours = list(inspect.signature(HeliosTransformer3DModel.forward).parameters.values())
    ref = list(inspect.signature(DiffusersHelios.forward).parameters.values())
    assert [(p.name, p.default) for p in ours[: len(ref)]] == [(p.name, p.default) for p in ref]
    assert [p.name for p in ours[len(ref) :]] == ["cache"]


def test_loading_metadata_matches_diffusers() -> None:
    for attribute in (
        "_keep_in_fp32_modules",
        "_keys_to_ignore_on_load_unexpected",
        "_no_split_modules",
        "_skip_layerwise_casting_patterns",
        "_repeated_blocks",
    ):
        assert getattr(HeliosTransformer3DModel, attribute) == getattr(DiffusersHelios, attribute)
    ours = HeliosTransformer3DModel(**TINY)
    module_classes = {type(m).__name__ for m in ours.modules()}
    assert set(HeliosTransformer3DModel._no_split_modules) <= module_classes


def test_released_config_has_diffusers_parameter_names_and_shapes() -> None:
    with torch.device("meta"):
        ref = DiffusersHelios()
        ours = HeliosTransformer3DModel()
    shapes = {name: p.shape for name, p in ours.named_parameters()}
    assert shapes == {name: p.shape for name, p in ref.named_parameters()}
    assert 14.2e9 < sum(p.numel() for p in ours.parameters()) < 14.4e9


def test_from_pretrained_loads_diffusers_save_exactly(tmp_path) -> None:
    ref, _ = build_pair(is_amplify_history=True, added_kv_proj_dim=12)
    ref.save_pretrained(tmp_path / "transformer")
    ours = HeliosTransformer3DModel.from_pretrained(tmp_path, subfolder="transformer")
    names = list(inspect.signature(DiffusersHelios.__init__).parameters)[1:]

    def config(model: torch.nn.Module) -> dict:  # tuples come back from JSON as lists
        return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if k in names}

    assert config(ours) == config(ref)
    expected = ref.state_dict()
    actual = ours.state_dict()
    assert actual.keys() == expected.keys()
    assert all(torch.equal(actual[k], v) for k, v in expected.items())
