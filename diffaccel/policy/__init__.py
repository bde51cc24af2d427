"""Diffusion policies: a reference-layout transformer policy, ObstacleReach-2D, batched evaluation.

policy = diffaccel.zoo.load("dp-reach")
out = policy.predict_action({"obs": obs})          # obs (B, 2, 6) -> out["action"] (B, 8, 2)
diffaccel.wrap(policy, "bac")                        # any strategy, through the same engine
diffaccel.policy.evaluate(policy, env="obstacle-reach", episodes=200, seed=0)
"""

from .envs import TASKS, ObstacleReach, ScriptedExpert, collect_demos
from .evaluate import evaluate
from .transformer import DiffusionTransformerPolicy, PolicyConfig, TransformerDenoiser, make_scheduler

__all__ = [
    "TASKS",
    "DiffusionTransformerPolicy",
    "ObstacleReach",
    "PolicyConfig",
    "ScriptedExpert",
    "TransformerDenoiser",
    "collect_demos",
    "evaluate",
    "make_scheduler",
]
