"""Ours: the windows around the expert's mid-episode turn towards a later obstacle, where it draws that obstacle's
side afresh (`turn_steps`, `turn_windows`, the recipe's `turn_window_weight`)."""

import numpy as np
import pytest

from diffaccel.policy.data import decision_steps, turn_steps, turn_windows
from diffaccel.policy.envs import TASKS, collect_demos


def test_turn_steps_on_hand_built_targets():
    """Three waypoints per obstacle, two obstacles: indices 3..5 are the second obstacle's, 6 the goal."""
    assert turn_steps(np.array([0, 0, 1, 2, 2, 3, 3, 4, 5, 6, 6]), 3, 2) == [5]
    assert turn_steps(np.array([0, 1, 2, 3, 3]), 3, 1) == []  # one obstacle: index 3 is the goal, not a turn
    assert turn_steps(np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 3, 3) == [3, 6]
    assert turn_steps(np.array([3, 3, 4]), 3, 2) == [0]  # an episode that starts heading for obstacle 2


def test_turn_windows_hold_the_turn_among_their_executed_actions_or_just_after():
    """Ta = 3: decision steps i with 5 − 3 + 1 <= i <= 5 + 1 around a turn at step 5."""
    assert turn_windows(range(10), [5], 3) == [i in (3, 4, 5, 6) for i in range(10)]
    assert turn_windows(range(10), [], 3) == [False] * 10
    assert turn_windows(range(4), [1], 8) == [True, True, True, False]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_demo_turns_once_per_later_obstacle_at_the_last_waypoint_of_the_one_before(name):
    """The recorded targets mark the turn where the expert is within its 0.02 waypoint tolerance of the previous
    obstacle's last waypoint (150 or 30 / 135 or 45 degrees, mirrored for its side), and only there."""
    spec = TASKS[name]
    w, k = len(spec.waypoint_angles_deg), len(spec.obstacle_x)
    last = np.deg2rad(spec.waypoint_angles_deg[-1])
    for demo in collect_demos(name, 50, 3):
        turns = turn_steps(demo["target"], w, k)
        assert len(turns) == k - 1 and len(demo["target"]) == len(demo["action"])
        for obstacle, t in enumerate(turns):
            agent, centre = demo["obs"][t, :2], demo["obs"][t, 4 + 2 * obstacle : 6 + 2 * obstacle]
            candidates = [centre + spec.waypoint_radius * np.array([np.cos(last), s * np.sin(last)]) for s in (1, -1)]
            assert min(np.linalg.norm(agent - c) for c in candidates) < spec.waypoint_tolerance
            assert (demo["target"][t - 1], demo["target"][t]) == ((obstacle + 1) * w - 1, (obstacle + 1) * w)


def test_turn_windows_cover_every_demo_of_the_two_disc_task():
    demos = collect_demos("obstacle-reach-two", 20, 5)
    for d in demos:
        steps = decision_steps(len(d["action"]), 16, 2, 8, "every-step")
        flags = turn_windows(steps, turn_steps(d["target"], 3, 2), 8)
        assert sum(flags) == 9  # Ta = 8 windows hold the turn, one more has seen one step of the new heading
