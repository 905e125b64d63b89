"""vidgen's CogVideoX transformer against diffusers', built in each test from the same weights and inputs."""

import inspect
from types import SimpleNamespace

import accelerate
import pytest
import torch
from diffusers import CogVideoXTransformer3DModel as DiffusersModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline
from model_infos import RELEASED
from safetensors.torch import load_file

from vidgen.families.cogvideox.model import CogVideoXTransformer3DModel, rotary_embedding

# Tiny widths (inner dim 32 keeps the sin-cos table's quarter/eighth splits even), 2 layers.
TINY = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    time_embed_dim=32,
    text_embed_dim=24,
    max_text_seq_length=7,
)
# The five released checkpoints' switches at tiny size. The 1.0 sample size equals the test grid below
# (3 latent frames of 8x12), as the learned positions of 5b-I2V require; 1.5's 20x20 keeps the slice
# rotary grid bigger than the input, like its released 300x300.
SAMPLE_1_0 = dict(sample_height=8, sample_width=12, sample_frames=9)
SAMPLE_1_5 = dict(sample_height=20, sample_width=20, sample_frames=9)
VARIANTS = {
    "2b": dict(SAMPLE_1_0, spatial_interpolation_scale=1.875),
    "5b": dict(SAMPLE_1_0, use_rotary_positional_embeddings=True),
    "5b-i2v": dict(
        SAMPLE_1_0,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
        in_channels=8,
        out_channels=4,
    ),
    "1.5-5b": dict(SAMPLE_1_5, use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False),
    "1.5-5b-i2v": dict(
        SAMPLE_1_5,
        use_rotary_positional_embeddings=True,
        patch_size_t=2,
        patch_bias=False,
        ofs_embed_dim=32,
        in_channels=8,
        out_channels=4,
    ),
}
ROTARY_VARIANTS = [
    name for name, config in VARIANTS.items() if config.get("use_rotary_positional_embeddings")
]

# Tensors in the state dict (parameters plus 5b-I2V's learned position table), from MODELS.md.
RELEASED_SIZES = {"2b": 1.69e9, "5b": 5.57e9, "5b-i2v": 5.63e9}

HEIGHT, WIDTH = 8, 12  # latent grid: not square, so height/width mix-ups show


def tiny_config(variant: str, **overrides) -> dict:
    return {**TINY, **VARIANTS[variant], **overrides}


def build_pair(variant: str, **overrides) -> tuple[CogVideoXTransformer3DModel, DiffusersModel]:
    """Diffusers' model with every weight perturbed (nothing hidden by zeros or symmetry), and ours loaded
    from its state dict strictly."""
    config = tiny_config(variant, **overrides)
    torch.manual_seed(0)
    reference = DiffusersModel(**config).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.02)
        if config.get("use_learned_positional_embeddings"):
            # Initialised as sin-cos with zero text rows; random rows prove both parts are added.
            reference.patch_embed.pos_embedding.normal_()
    ours = CogVideoXTransformer3DModel(**config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


def latent_frames(variant: str) -> int:
    # Odd for 1.0; 1.5 needs a multiple of patch_size_t (diffusers' patch embedding cannot reshape others).
    return 4 if VARIANTS[variant].get("patch_size_t") else 3


def make_inputs(model: DiffusersModel, frames: int, height: int = HEIGHT, width: int = WIDTH) -> dict:
    config = model.config
    generator = torch.Generator().manual_seed(1)
    inputs = {
        "hidden_states": torch.randn(2, frames, config.in_channels, height, width, generator=generator),
        "encoder_hidden_states": torch.randn(
            2, config.max_text_seq_length, config.text_embed_dim, generator=generator
        ),
        "timestep": torch.tensor([999, 17]),
    }
    if config.ofs_embed_dim:
        inputs["ofs"] = torch.tensor([2.0])  # what the 1.5 I2V pipeline passes
    return inputs


def pipeline_rotary(model: DiffusersModel, frames: int, height: int, width: int) -> tuple:
    """The rotary tables exactly as diffusers' CogVideoX pipelines compute them (pixel sizes in)."""
    pipeline = SimpleNamespace(transformer=model, vae_scale_factor_spatial=8)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(
        pipeline, height * 8, width * 8, frames, torch.device("cpu")
    )


def with_pipeline_rotary(model: DiffusersModel, inputs: dict) -> dict:
    if not model.config.use_rotary_positional_embeddings:
        return inputs
    _, frames, _, height, width = inputs["hidden_states"].shape
    return {**inputs, "image_rotary_emb": pipeline_rotary(model, frames, height, width)}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.float(), expected.float()
    return ((actual - expected).norm() / expected.norm()).item()


def assert_close_fp32(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= 1e-5
    assert (actual - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()


# ---------------------------------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------------------------------


def test_constructor_parameters_and_defaults_match_diffusers():
    def parameters(cls: type) -> list[tuple[str, object]]:
        signature = inspect.signature(cls.__init__)
        return [(name, param.default) for name, param in signature.parameters.items() if name != "self"]

    assert parameters(CogVideoXTransformer3DModel) == parameters(DiffusersModel)


@pytest.mark.parametrize("variant", list(RELEASED))
def test_released_configs_have_diffusers_state_dict_names_and_shapes(variant):
    with torch.device("meta"):
        ours = CogVideoXTransformer3DModel(**RELEASED[variant])
        reference = DiffusersModel(**RELEASED[variant])
    ours_shapes = {name: tensor.shape for name, tensor in ours.state_dict().items()}
    reference_shapes = {name: tensor.shape for name, tensor in reference.state_dict().items()}
    assert ours_shapes == reference_shapes
    if variant in RELEASED_SIZES:
        size = sum(tensor.numel() for tensor in ours.state_dict().values())
        assert abs(size - RELEASED_SIZES[variant]) / RELEASED_SIZES[variant] < 0.005


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_save_pretrained_from_diffusers_loads_identical_weights(variant, tmp_path):
    ours, reference = build_pair(variant)
    reference.save_pretrained(tmp_path)
    loaded = CogVideoXTransformer3DModel.from_pretrained(tmp_path).eval()

    saved = load_file(tmp_path / "diffusion_pytorch_model.safetensors")
    state = loaded.state_dict()
    assert state.keys() == saved.keys()
    for name, tensor in saved.items():
        assert state[name].dtype == tensor.dtype, name
        assert torch.equal(state[name], tensor), name
    # Non-persistent tables (the 2b sin-cos positions) must come out of loading usable too.
    inputs = with_pipeline_rotary(reference, make_inputs(reference, latent_frames(variant)))
    with torch.no_grad():
        assert_close_fp32(loaded(**inputs).sample, reference(**inputs).sample)


# ---------------------------------------------------------------------------------------------------
# Parity of the forward pass
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_matches_diffusers_fp32(variant):
    ours, reference = build_pair(variant)
    inputs = with_pipeline_rotary(reference, make_inputs(reference, latent_frames(variant)))
    with torch.no_grad():
        expected = reference(**inputs).sample
        output = ours(**inputs).sample
        (as_tuple,) = ours(**inputs, return_dict=False)
    assert output.shape == (2, latent_frames(variant), reference.config.out_channels, HEIGHT, WIDTH)
    assert_close_fp32(output, expected)
    assert torch.equal(as_tuple, output)


@pytest.mark.parametrize("variant", ROTARY_VARIANTS)
def test_forward_without_rotary_tables_computes_the_pipelines(variant):
    ours, reference = build_pair(variant)
    inputs = make_inputs(reference, latent_frames(variant))
    with torch.no_grad():
        expected = reference(**with_pipeline_rotary(reference, inputs)).sample
        output = ours(**inputs).sample
    assert_close_fp32(output, expected)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fused_qkv_matches_diffusers_and_unfuse_restores_checkpoint(variant):
    ours, reference = build_pair(variant)
    original = {name: tensor.clone() for name, tensor in ours.state_dict().items()}
    inputs = with_pipeline_rotary(reference, make_inputs(reference, latent_frames(variant)))
    with torch.no_grad():
        expected = reference(**inputs).sample
        ours.fuse_qkv_projections()
        fused = ours(**inputs).sample
        reference.fuse_qkv_projections()
        fused_reference = reference(**inputs).sample
    assert "transformer_blocks.0.attn1.to_qkv.weight" in ours.state_dict()
    assert "transformer_blocks.0.attn1.to_q.weight" not in ours.state_dict()
    assert_close_fp32(fused, expected)
    assert_close_fp32(fused, fused_reference)

    ours.unfuse_qkv_projections()
    restored = ours.state_dict()
    assert restored.keys() == original.keys()
    assert all(torch.equal(restored[name], tensor) for name, tensor in original.items())


def test_number_timestep_and_ofs_equal_their_tensor_forms():
    ours, reference = build_pair("1.5-5b-i2v")
    inputs = make_inputs(reference, latent_frames("1.5-5b-i2v"))
    with torch.no_grad():
        expected = ours(**{**inputs, "timestep": torch.tensor([500, 500]), "ofs": torch.tensor([2.0])}).sample
        output = ours(**{**inputs, "timestep": 500, "ofs": 2.0}).sample
    assert torch.equal(output, expected)


def test_2b_sincos_positions_at_another_size_match_diffusers():
    # Not the sample size: both models recompute the table for the input's grid.
    ours, reference = build_pair("2b")
    inputs = make_inputs(reference, frames=2, height=6, width=10)
    with torch.no_grad():
        assert_close_fp32(ours(**inputs).sample, reference(**inputs).sample)


@pytest.mark.parametrize(
    ("variant", "dtype", "bound"),
    # Measured: ~4e-3 (bf16) and ~5e-4 (fp16) relative to diffusers in the same dtype, both ~6e-3 / 8e-4
    # from the float32 result; the bounds leave room for other CPUs' kernels.
    [(variant, torch.bfloat16, 1e-2) for variant in VARIANTS] + [("2b", torch.float16, 2e-3)],
)
def test_half_precision_matches_diffusers_in_the_same_dtype(variant, dtype, bound):
    ours, reference = build_pair(variant)
    inputs = with_pipeline_rotary(reference, make_inputs(reference, latent_frames(variant)))
    with torch.no_grad():
        exact = reference(**inputs).sample
        ours.to(dtype)
        reference.to(dtype)
        low = {name: value.to(dtype) if name.endswith("states") else value for name, value in inputs.items()}
        expected = reference(**low).sample
        output = ours(**low).sample
    assert output.dtype == dtype
    assert relative_error(output, expected) <= bound
    # Same dtype behaviour (what is upcast, where it is cast back): no further from float32 than diffusers.
    assert relative_error(output, exact) <= 1.25 * relative_error(expected, exact)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sequential_cpu_offload_matches_diffusers(variant):
    # Weights live on `meta` and hooks bring them in when their module is called: every weight use must
    # go through a module call (the pipelines' low-VRAM mode does this on a GPU).
    ours, reference = build_pair(variant)
    inputs = with_pipeline_rotary(reference, make_inputs(reference, latent_frames(variant)))
    accelerate.cpu_offload(ours, execution_device=torch.device("cpu"))
    assert {param.device.type for param in ours.parameters()} == {"meta"}
    with torch.no_grad():
        assert_close_fp32(ours(**inputs).sample, reference(**inputs).sample)


def test_gradient_checkpointing_gives_the_same_gradients():
    ours, reference = build_pair("5b")
    inputs = make_inputs(reference, latent_frames("5b"))

    def gradients() -> dict[str, torch.Tensor]:
        ours.zero_grad()
        ours(**inputs).sample.square().mean().backward()
        return {name: param.grad.clone() for name, param in ours.named_parameters()}

    plain = gradients()
    ours.enable_gradient_checkpointing()
    checkpointed = gradients()
    assert all(torch.allclose(checkpointed[name], grad, atol=1e-7) for name, grad in plain.items())
    assert plain["transformer_blocks.0.attn1.to_q.weight"].abs().sum() > 0


# ---------------------------------------------------------------------------------------------------
# Rotary tables the pipelines compute
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "frames", "height", "width"),
    [
        ("5b", 13, 60, 90),  # the training size
        ("5b", 13, 96, 170),  # 768x1360: wider than 60x90, crop-resized
        ("5b", 7, 90, 60),  # portrait: taller
        ("5b", 2, 30, 44),
        ("1.5-5b", 22, 96, 170),  # 81 frames, padded to an even latent count
        ("1.5-5b", 11, 60, 90),  # odd: the table rounds up like the pipeline's
    ],
)
def test_rotary_embedding_equals_the_pipeline_helper(variant, frames, height, width):
    defaults = inspect.signature(DiffusersModel.__init__).parameters
    config = SimpleNamespace(**{name: param.default for name, param in defaults.items() if name != "self"})
    vars(config).update(RELEASED[variant])
    cos, sin = rotary_embedding(config, frames, height, width)
    expected_cos, expected_sin = pipeline_rotary(SimpleNamespace(config=config), frames, height, width)
    assert torch.equal(cos, expected_cos)
    assert torch.equal(sin, expected_sin)


def test_rotary_1_5_grid_beyond_sample_size_raises():
    config = SimpleNamespace(
        attention_head_dim=64, patch_size=2, patch_size_t=2, sample_height=300, sample_width=300
    )
    with pytest.raises(ValueError, match="larger than the model's sample size 300x300"):
        rotary_embedding(config, 2, 302, 120)


# ---------------------------------------------------------------------------------------------------
# Inputs the model cannot take
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "height", "width", "text_tokens"),
    [(3, 8, 16, 7), (3, 10, 12, 7), (3, 8, 12, 5)],
)
def test_learned_positions_reject_other_sizes_clearly(frames, height, width, text_tokens):
    # diffusers crashes on other sizes or text lengths (other frame counts run: tests/models/
    # test_drop_in_hooks.py); vidgen says which size the checkpoint supports.
    ours, reference = build_pair("5b-i2v")
    inputs = make_inputs(reference, frames, height, width)
    inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"][:, :text_tokens]
    with pytest.raises(ValueError, match=r"fix its input size to 12x8 latents and 7 text tokens"):
        ours(**inputs)


def test_1_5_odd_latent_frames_raise_clearly():
    ours, reference = build_pair("1.5-5b")
    inputs = make_inputs(reference, frames=3)
    with pytest.raises(RuntimeError):  # diffusers' patch embedding cannot reshape them either
        reference(**inputs)
    with pytest.raises(ValueError, match="multiple of patch_size_t 2"):
        ours(**inputs)


def test_odd_latent_height_raises_clearly():
    ours, reference = build_pair("5b")
    with pytest.raises(ValueError, match="multiples of 2, got 12x9"):
        ours(**make_inputs(reference, frames=3, height=9))


def test_1_5_i2v_without_ofs_raises_clearly():
    ours, reference = build_pair("1.5-5b-i2v")
    inputs = make_inputs(reference, latent_frames("1.5-5b-i2v"))
    del inputs["ofs"]
    with pytest.raises(ValueError, match="needs `ofs`"):
        ours(**inputs)
