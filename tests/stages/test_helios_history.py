"""Helios' latent history: bounded by the history sizes however many chunks are appended."""

import torch

from vidgen.families.helios.history import LatentHistory


def frames(start: int, count: int) -> torch.Tensor:
    """[1, 2, count, 2, 2] latents whose every value is its frame number, counting from `start`."""
    numbers = torch.arange(start, start + count, dtype=torch.float32)
    return numbers.view(1, 1, count, 1, 1).expand(1, 2, count, 2, 2).clone()


def frame_numbers(latents: torch.Tensor) -> list[int]:
    return latents[0, 0, :, 0, 0].int().tolist()


def test_window_keeps_only_the_latest_frames_the_model_reads():
    history = LatentHistory((4, 2, 1), chunk_frames=3, keep_first_frame=True, seed=frames(0, 0))
    for chunk in range(5):
        history.append(frames(1 + 3 * chunk, 3))
    assert history.window.shape == (1, 2, 7, 2, 2)
    inputs = history.inputs()
    assert frame_numbers(inputs.latents_history_long) == [9, 10, 11, 12]
    assert frame_numbers(inputs.latents_history_mid) == [13, 14]
    # Short history: the first-frame anchor (zeros until one is set), then the newest frame.
    assert frame_numbers(inputs.latents_history_short) == [0, 15]


def test_history_starts_as_zeros_ending_with_the_seed_frames():
    history = LatentHistory((4, 2, 1), chunk_frames=3, keep_first_frame=True, seed=frames(1, 2))
    assert frame_numbers(history.window) == [0, 0, 0, 0, 0, 1, 2]
    long_seed = LatentHistory((4, 2, 1), chunk_frames=3, keep_first_frame=True, seed=frames(1, 20))
    assert frame_numbers(long_seed.window) == list(range(14, 21))


def test_rotary_positions_put_the_first_frame_before_the_long_history():
    inputs = LatentHistory((4, 2, 1), chunk_frames=3, keep_first_frame=True, seed=frames(0, 0)).inputs()
    assert inputs.indices_latents_history_short.tolist() == [[0, 7]]
    assert inputs.indices_latents_history_long.tolist() == [[1, 2, 3, 4]]
    assert inputs.indices_latents_history_mid.tolist() == [[5, 6]]
    assert inputs.indices_hidden_states.tolist() == [[8, 9, 10]]


def test_without_the_first_frame_the_short_history_takes_two_recent_frames():
    history = LatentHistory((4, 2, 1), chunk_frames=3, keep_first_frame=False, seed=frames(1, 9))
    inputs = history.inputs()
    assert frame_numbers(inputs.latents_history_short) == [8, 9]
    assert inputs.indices_latents_history_short.tolist() == [[6, 7]]
    assert inputs.indices_hidden_states.tolist() == [[8, 9, 10]]
