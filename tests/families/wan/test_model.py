"""vidgen's WanTransformer3DModel against diffusers' (built in each test with the same weights), on tiny
configs of each released kind: 2.1 T2V, 2.1 I2V (CLIP image embeddings), first-last-frame (learned image
positions), 2.2 TI2V (48 channels, a timestep per token); and the released configs on the meta device."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import diffusers
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import WanTransformer3DModel as DiffusersWan
from diffusers.hooks import FirstBlockCacheConfig, PyramidAttentionBroadcastConfig, SeaCacheConfig
from diffusers.hooks.pyramid_attention_broadcast import apply_pyramid_attention_broadcast
from torch._dynamo.testing import CompileCounterWithBackend

from vidgen.families.layers import DispatchedAttention
from vidgen.models import WanTransformer3DModel

FP32_TOLERANCE = 1e-5
# Ours vs diffusers, both loaded in bf16 (measured: 0, bit for bit, for every kind here).
BF16_TOLERANCE = 1e-4
TINY = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "text_dim": 24,
    "freq_dim": 16,
    "ffn_dim": 40,
    "num_layers": 2,
}
# diffusers takes all but the last 512 context tokens as the image's, so I2V texts have 512 tokens.
I2V_TEXT_TOKENS = 512
# (config overrides, input options) per kind.
KINDS = {
    "t2v": ({}, {}),
    "i2v": (
        {"in_channels": 8, "image_dim": 12, "added_kv_proj_dim": 32},
        {"text_tokens": I2V_TEXT_TOKENS, "image_tokens": 5},
    ),
    "flf2v": (  # first-last-frame: both images' tokens in one sequence with learned positions
        {"in_channels": 8, "image_dim": 12, "added_kv_proj_dim": 32, "pos_embed_seq_len": 10},
        {"text_tokens": I2V_TEXT_TOKENS, "image_tokens": 5, "images_per_sample": 2},
    ),
    # Image embeddings but no image keys/values: the cross-attention reads [image; text] as text
    # (diffusers' own I2V pipeline tests build this), so no 512-token text is needed.
    "i2v_no_added_kv": ({"in_channels": 8, "image_dim": 12}, {"image_tokens": 5}),
    "ti2v": ({"in_channels": 48, "out_channels": 48}, {"timestep_per_token": True}),
    "t2v_no_cross_attn_norm": ({"cross_attn_norm": False}, {"batch": 1}),
    # The released head width (rotary channels 44/42/42) and positions up to 11.
    "t2v_head_dim_128": (
        {"attention_head_dim": 128, "in_channels": 16, "out_channels": 16, "freq_dim": 256, "ffn_dim": 512},
        {"frames": 9, "height": 16, "width": 24},
    ),
}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected.float()).norm() / expected.float().norm()).item()


def fill_zero_weights_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every all-zero parameter (the image positions, norm biases) random values, as
    vidgen.weights.tiny does, so that an output that ignores them cannot pass."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if not param.any():
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))


def build_pair(**overrides) -> tuple[DiffusersWan, WanTransformer3DModel]:
    config = {**TINY, **overrides}
    torch.manual_seed(0)
    ref = DiffusersWan(**config).eval()
    fill_zero_weights_(ref)
    ours = WanTransformer3DModel(**config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def make_inputs(
    config: dict,
    batch: int = 2,
    frames: int = 3,
    height: int = 6,
    width: int = 10,
    text_tokens: int = 7,
    image_tokens: int = 0,
    images_per_sample: int = 1,
    timestep_per_token: bool = False,
    seed: int = 1,
) -> dict:
    """Transformer inputs as diffusers' Wan pipelines build them."""
    config = {**TINY, **config}
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "hidden_states": torch.randn(batch, config["in_channels"], frames, height, width, generator=g),
        "timestep": torch.tensor([937.5, 250.0][:batch]),
        "encoder_hidden_states": torch.randn(batch, text_tokens, config["text_dim"], generator=g),
    }
    if image_tokens:
        shape = (batch * images_per_sample, image_tokens, config["image_dim"])
        inputs["encoder_hidden_states_image"] = torch.randn(shape, generator=g)
    if timestep_per_token:
        # WanPipeline with expand_timesteps: the first (conditioning) latent frame's tokens stay at 0.
        tokens_per_frame = (height // 2) * (width // 2)
        first = torch.zeros(batch, tokens_per_frame)
        rest = inputs["timestep"][:, None].expand(-1, (frames - 1) * tokens_per_frame)
        inputs["timestep"] = torch.cat([first, rest], dim=1)  # [B, F'*H'*W']
    return inputs


def run(model: torch.nn.Module, inputs: dict, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, **kwargs).sample


@pytest.mark.parametrize("kind", KINDS)
def test_forward_matches_diffusers_fp32(kind: str) -> None:
    overrides, options = KINDS[kind]
    ref, ours = build_pair(**overrides)
    inputs = make_inputs(overrides, **options)
    expected = run(ref, inputs)
    actual = run(ours, inputs)
    batch, _, *size = inputs["hidden_states"].shape
    assert actual.shape == expected.shape == (batch, ours.config.out_channels, *size)
    assert relative_error(actual, expected) <= FP32_TOLERANCE
    with torch.no_grad():
        (as_tuple,) = ours(**inputs, return_dict=False)
    assert torch.equal(as_tuple, actual)


def test_image_embeddings_change_the_i2v_output() -> None:
    # The image attention is not silently skipped: other CLIP embeddings, another output (both sides).
    overrides, options = KINDS["i2v"]
    ref, ours = build_pair(**overrides)
    inputs = make_inputs(overrides, **options)
    other = inputs | {"encoder_hidden_states_image": torch.randn_like(inputs["encoder_hidden_states_image"])}
    assert relative_error(run(ours, other), run(ours, inputs)) > 1e-3
    assert relative_error(run(ours, other), run(ref, other)) <= FP32_TOLERANCE


def test_timestep_per_token_matches_diffusers_and_differs_from_one_timestep() -> None:
    overrides, options = KINDS["ti2v"]
    ref, ours = build_pair(**overrides)
    per_token = make_inputs(overrides, **options)
    one = make_inputs(overrides)
    assert relative_error(run(ours, per_token), run(ours, one)) > 1e-3
    # A timestep per token all equal is one timestep per sample.
    same = one | {"timestep": one["timestep"][:, None].expand(-1, per_token["timestep"].shape[1])}
    assert relative_error(run(ours, same), run(ours, one)) <= FP32_TOLERANCE
    assert relative_error(run(ours, same), run(ref, same)) <= FP32_TOLERANCE


def test_attention_kwargs_scale_lora_adapters_like_diffusers() -> None:
    from peft import LoraConfig

    overrides, options = KINDS["i2v"]
    ref, ours = build_pair(**overrides)
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0", "add_k_proj"])
    ref.add_adapter(lora)
    fill_zero_weights_(ref)  # LoRA's B starts at zero
    ours.add_adapter(lora)
    ours.load_state_dict(ref.state_dict(), strict=True)
    inputs = make_inputs(overrides, **options)
    kwargs = {"scale": 0.5}
    half = run(ours, inputs, attention_kwargs=kwargs)
    assert kwargs == {"scale": 0.5}  # the caller's dict is left as it was
    assert relative_error(half, run(ref, inputs, attention_kwargs={"scale": 0.5})) <= FP32_TOLERANCE
    full = run(ours, inputs, attention_kwargs={"scale": 1.0})
    assert relative_error(full, run(ours, inputs)) <= FP32_TOLERANCE
    assert relative_error(full, run(ref, inputs)) <= FP32_TOLERANCE
    assert relative_error(half, full) > 1e-3


def to_bf16(inputs: dict) -> dict:
    # The pipelines cast latents, text and image to the model dtype; timesteps stay as the scheduler's.
    return {
        k: v.to(torch.bfloat16) if v.is_floating_point() and k != "timestep" else v for k, v in inputs.items()
    }


@pytest.mark.parametrize("kind", ["t2v", "flf2v", "ti2v"])
def test_bf16_loading_keeps_fp32_modules_and_matches_diffusers_bf16(kind: str, tmp_path) -> None:
    overrides, options = KINDS[kind]
    ref, _ = build_pair(**overrides)
    inputs = make_inputs(overrides, **options)
    ref.save_pretrained(tmp_path / "transformer")
    load = {"subfolder": "transformer", "torch_dtype": torch.bfloat16}
    ref_bf16 = DiffusersWan.from_pretrained(tmp_path, **load).eval()
    ours_bf16 = WanTransformer3DModel.from_pretrained(tmp_path, **load).eval()

    def fp32_names(model: torch.nn.Module) -> set[str]:
        return {n for n, p in model.named_parameters() if p.dtype == torch.float32}

    assert fp32_names(ours_bf16) == fp32_names(ref_bf16)
    assert "scale_shift_table" in fp32_names(ours_bf16)
    assert ours_bf16.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    expected = run(ref_bf16, to_bf16(inputs))
    actual = run(ours_bf16, to_bf16(inputs))
    assert actual.dtype == expected.dtype == torch.bfloat16
    assert relative_error(actual, expected) <= BF16_TOLERANCE


@pytest.mark.parametrize("kind", ["t2v", "i2v"])
def test_fused_projections_match_unfused_and_diffusers(kind: str) -> None:
    overrides, options = KINDS[kind]
    ref, ours = build_pair(**overrides)
    inputs = make_inputs(overrides, **options)
    unfused = run(ours, inputs)
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    ours.fuse_qkv_projections()
    attn1, attn2 = ours.blocks[0].attn1, ours.blocks[0].attn2
    assert hasattr(attn1, "to_qkv") and not hasattr(attn1, "to_q")
    assert hasattr(attn2, "to_kv") and hasattr(attn2, "to_q") and not hasattr(attn2, "to_k")
    assert hasattr(attn2, "to_added_kv") == (kind == "i2v")
    assert all(type(p).__name__.startswith("Fused") for p in ours.attn_processors.values())
    fused = run(ours, inputs)
    assert relative_error(fused, unfused) <= FP32_TOLERANCE
    ref.fuse_qkv_projections()
    assert relative_error(fused, run(ref, inputs)) <= FP32_TOLERANCE
    ours.unfuse_qkv_projections()
    restored = ours.state_dict()
    assert restored.keys() == state.keys()
    assert all(torch.equal(restored[k], v) for k, v in state.items())


# Within PAB's default (100, 800) range from the second step on: steps 1 and 3 reuse attention.
STEPS = (900, 700, 500, 300)


def denoise(model: torch.nn.Module, kind: str = "t2v") -> list[torch.Tensor]:
    """The model's outputs over STEPS, called as diffusers' pipelines call it (cache context, timestep)."""
    overrides, options = KINDS[kind]
    outputs = []
    for step, t in enumerate(STEPS):
        inputs = make_inputs(overrides, **options)
        latents = inputs["hidden_states"]
        drift = torch.randn(latents.shape, generator=torch.Generator().manual_seed(step))
        inputs |= {"hidden_states": latents + 0.05 * drift, "timestep": torch.tensor([t, t])}
        model.current_timestep = t
        # Where the loop is, as diffusers 0.42.1's Wan pipelines say (SeaCache needs it, the others ignore it)
        where = {"step_index": step, "sigma": t / 1000, "num_inference_steps": len(STEPS)}
        with torch.no_grad(), model.cache_context("cond", **where):
            outputs.append(model(**inputs).sample)
    return outputs


def test_first_block_cache_on_a_bare_model_matches_diffusers() -> None:
    ref, ours = build_pair(num_layers=3)
    plain = denoise(ours)
    # High enough that this random model skips: the first block's output barely changes between steps.
    for model in (ref, ours):
        model.enable_cache(FirstBlockCacheConfig(threshold=0.5))
    cached = denoise(ours)
    for actual, expected in zip(cached, denoise(ref), strict=True):
        assert relative_error(actual, expected) <= FP32_TOLERANCE
    assert torch.equal(cached[0], plain[0])
    assert any(relative_error(c, p) > 1e-3 for c, p in zip(cached[1:], plain[1:], strict=True))
    ours.disable_cache()
    for actual, expected in zip(denoise(ours), plain, strict=True):
        assert relative_error(actual, expected) <= FP32_TOLERANCE


@pytest.mark.parametrize("kind", ["t2v", "ti2v"])
def test_sea_cache_skips_steps_as_on_diffusers_class(kind: str) -> None:
    # diffusers hands SeaCache the latents of its own Wan class only (input channels = output channels);
    # without them SeaCache computes every step, so vidgen's class would run uncached.
    ref, ours = build_pair(num_layers=3, **KINDS[kind][0])
    plain = denoise(ours, kind)
    for model in (ref, ours):
        model.enable_cache(SeaCacheConfig(threshold=5.0))
    cached = denoise(ours, kind)
    for actual, expected in zip(cached, denoise(ref, kind), strict=True):
        assert relative_error(actual, expected) <= FP32_TOLERANCE
    assert any(relative_error(c, p) > 1e-3 for c, p in zip(cached, plain, strict=True))


def hooked_layers(model: torch.nn.Module) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if hasattr(module, "_diffusers_hook")
        and module._diffusers_hook.get_hook("pyramid_attention_broadcast")
    ]


def test_pyramid_attention_broadcast_hooks_the_same_layers_and_matches_diffusers() -> None:
    ref, ours = build_pair(**KINDS["i2v"][0])
    plain = denoise(ours, "i2v")

    def config(model: torch.nn.Module) -> PyramidAttentionBroadcastConfig:
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            cross_attention_block_skip_range=2,
            current_timestep_callback=lambda: model.current_timestep,
        )

    apply_pyramid_attention_broadcast(ref, config(ref))
    ours.enable_cache(config(ours))
    assert hooked_layers(ours) == hooked_layers(ref)
    assert len(hooked_layers(ours)) == 2 * TINY["num_layers"]
    broadcast = denoise(ours, "i2v")
    for actual, expected in zip(broadcast, denoise(ref, "i2v"), strict=True):
        assert relative_error(actual, expected) <= FP32_TOLERANCE
    assert relative_error(broadcast[1], plain[1]) > 1e-3  # step 1 reused attention outputs


@pytest.mark.parametrize("kind", ["i2v", "ti2v"])
def test_regional_compile_traces_every_block_as_one_graph_without_breaks(kind: str) -> None:
    torch._dynamo.reset()
    overrides, options = KINDS[kind]
    _, ours = build_pair(**overrides | {"num_layers": 3})
    inputs = make_inputs(overrides, **options)
    eager = run(ours, inputs)
    counter = CompileCounterWithBackend("aot_eager")
    ours.compile_repeated_blocks(backend=counter, fullgraph=True)
    compiled = run(ours, inputs)
    run(ours, inputs)
    torch._dynamo.reset()
    assert counter.frame_count == 1  # three blocks, one graph; the second call compiles nothing
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_attention_backend_reaches_every_attention_layer() -> None:
    overrides, options = KINDS["i2v"]
    ref, ours = build_pair(**overrides)
    inputs = make_inputs(overrides, **options)
    ours.set_attention_backend("_native_math")
    layers = [m for m in ours.modules() if isinstance(m, DispatchedAttention)]
    assert len(layers) == 2 * TINY["num_layers"]
    assert all(layer.backend == "_native_math" for layer in layers)
    assert relative_error(run(ours, inputs), run(ref, inputs)) <= FP32_TOLERANCE
    ours.reset_attention_backend()
    assert all(layer.backend is None for layer in layers)
    with pytest.raises(ValueError):
        ours.set_attention_backend("no-such-kernel")


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    overrides, options = KINDS["ti2v"]
    _, ours = build_pair(**overrides)
    inputs = make_inputs(overrides, **options)

    def gradients() -> dict[str, torch.Tensor]:
        ours.zero_grad()
        ours(**inputs).sample.square().mean().backward()
        return {name: param.grad.clone() for name, param in ours.named_parameters()}

    plain = gradients()
    ours.enable_gradient_checkpointing()
    checkpointed = gradients()
    assert all(torch.allclose(checkpointed[name], grad, atol=1e-7) for name, grad in plain.items())
    assert plain["blocks.0.attn1.to_q.weight"].abs().sum() > 0


def test_image_embeddings_need_an_i2v_model() -> None:
    _, ours = build_pair()
    inputs = make_inputs({"image_dim": 12}, image_tokens=5)
    with pytest.raises(ValueError, match="image_dim"):
        run(ours, inputs)


def test_constructor_and_forward_match_diffusers_names_and_defaults() -> None:
    def parameters(fn) -> list[tuple[str, object]]:
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]

    assert parameters(WanTransformer3DModel.__init__) == parameters(DiffusersWan.__init__)
    assert parameters(WanTransformer3DModel.forward) == parameters(DiffusersWan.forward)


def test_class_attributes_match_diffusers() -> None:
    for attribute in (
        "_supports_gradient_checkpointing",
        "_keep_in_fp32_modules",
        "_keys_to_ignore_on_load_unexpected",
        "_no_split_modules",
        "_skip_layerwise_casting_patterns",
        "_repeated_blocks",
        "_cp_plan",
    ):
        assert getattr(WanTransformer3DModel, attribute) == getattr(DiffusersWan, attribute), attribute
    ours = WanTransformer3DModel(**TINY)
    module_names = {name.split(".")[-1] for name, _ in ours.named_modules()}
    # Every module the context-parallel plan and the fp32 list name exists here under that name.
    assert {"rope", "proj_out", "time_embedder", "norm1", "norm2", "norm3"} <= module_names
    module_classes = {type(m).__name__ for m in ours.modules()}
    assert set(WanTransformer3DModel._no_split_modules) <= module_classes
    assert getattr(diffusers.loaders, WanTransformer3DModel.lora_loader).__name__ == "WanLoraLoaderMixin"


# config.json of each released transformer beyond diffusers' defaults (the 14B); 2.2 A14B: each expert's.
RELEASED = {
    "wan2.1-t2v-1.3b": {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    "wan2.1-t2v-14b+wan2.2-t2v-a14b": {},
    "wan2.1-i2v-14b": {"in_channels": 36, "image_dim": 1280, "added_kv_proj_dim": 5120},
    "wan2.2-i2v-a14b": {"in_channels": 36},
    "wan2.2-ti2v-5b": {
        "num_attention_heads": 24,
        "ffn_dim": 14336,
        "num_layers": 30,
        "in_channels": 48,
        "out_channels": 48,
    },
}
PARAMETER_COUNTS = {  # billions, rounded: what the model cards name
    "wan2.1-t2v-1.3b": 1.4,
    "wan2.1-t2v-14b+wan2.2-t2v-a14b": 14.3,
    "wan2.1-i2v-14b": 16.4,
    "wan2.2-i2v-a14b": 14.3,
    "wan2.2-ti2v-5b": 5.0,
}


@pytest.mark.parametrize("name", RELEASED)
def test_released_config_has_diffusers_parameter_names_and_shapes(name: str) -> None:
    with init_empty_weights():
        ref = DiffusersWan(**RELEASED[name])
        ours = WanTransformer3DModel(**RELEASED[name])
    shapes = {name: p.shape for name, p in ours.named_parameters()}
    assert shapes == {name: p.shape for name, p in ref.named_parameters()}
    assert round(sum(p.numel() for p in ours.parameters()) / 1e9, 1) == PARAMETER_COUNTS[name]


def test_from_pretrained_loads_diffusers_save_exactly(tmp_path) -> None:
    ref, _ = build_pair(**KINDS["flf2v"][0])
    ref.save_pretrained(tmp_path / "transformer")
    ours = WanTransformer3DModel.from_pretrained(tmp_path, subfolder="transformer")
    names = list(inspect.signature(DiffusersWan.__init__).parameters)[1:]

    def config(model: torch.nn.Module) -> dict:  # tuples come back from JSON as lists
        return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if k in names}

    assert config(ours) == config(ref)
    expected, actual = ref.state_dict(), ours.state_dict()
    assert actual.keys() == expected.keys()
    assert all(torch.equal(actual[k], v) for k, v in expected.items())


def test_context_parallel_plan_splits_the_tokens_and_matches_one_process() -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    script = Path(__file__).with_name("context_parallel.py")
    run = subprocess.run([*command, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = re.findall(r"(\w+) relative difference (\S+) block tokens (\d+)", run.stdout)
    assert [kind for kind, _, _ in results] == ["t2v", "i2v", "ti2v"]
    for _, difference, tokens in results:
        assert float(difference) <= FP32_TOLERANCE
        assert int(tokens) == 36 // 2  # each rank's blocks took half the video's tokens
