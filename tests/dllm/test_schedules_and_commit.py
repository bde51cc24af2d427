"""Transfer schedules and the shared commit rule, against hand-computed values."""

import torch

from diffaccel.dllm.commit import best_position, top_confidence_positions
from diffaccel.dllm.schedules import dream_timesteps, dream_transfer_count, get_num_transfer_tokens, threshold_counts


def test_llada_linear_schedule_matches_hand_computed_counts():
    masks = torch.zeros(3, 10, dtype=torch.bool)
    masks[0, :10] = True  # 10 masks over 4 steps: 3,3,2,2
    masks[1, :3] = True  # 3 masks over 4 steps: 1,1,1,0
    masks[2, :8] = True  # 8 over 4: 2,2,2,2
    assert get_num_transfer_tokens(masks, 4).tolist() == [[3, 3, 2, 2], [1, 1, 1, 0], [2, 2, 2, 2]]
    assert get_num_transfer_tokens(torch.ones(1, 8, dtype=torch.bool), 8).tolist() == [[1] * 8]


def test_dream_native_schedule_has_the_documented_step0_quirk():
    """steps == gen_length = 8, eps = 1e-3: step 0 commits 0, steps 1..6 one each, the last step 2 (Dream's ``_sample``)."""
    steps, remaining, counts = 8, 8, []
    timesteps = dream_timesteps(steps, 1e-3)
    for i in range(steps):
        k = dream_transfer_count(torch.tensor(float(remaining)), i, steps, timesteps)
        counts.append(k)
        remaining -= k
    assert counts == [0, 1, 1, 1, 1, 1, 1, 2]


def test_threshold_counts_are_top1_plus_everything_above_threshold():
    conf = torch.tensor([[0.95, 0.2, 0.91, 0.5], [0.3, 0.2, 0.1, 0.0], [0.99, 0.99, 0.99, 0.99]], dtype=torch.float64)
    cand = torch.tensor([[True, True, True, False], [True, True, False, False], [False] * 4])
    assert threshold_counts(conf, cand, 0.9).tolist() == [2, 1, 0]


def test_ties_go_to_the_lowest_index_and_non_candidates_are_never_chosen():
    conf = torch.tensor([[0.5, 0.7, 0.7, 0.7, float("-inf")]], dtype=torch.float64)
    assert top_confidence_positions(conf, torch.tensor([2])).tolist() == [[False, True, True, False, False]]
    assert top_confidence_positions(conf, torch.tensor([9])).tolist() == [[True, True, True, True, False]]
    assert best_position(conf).tolist() == [1]
