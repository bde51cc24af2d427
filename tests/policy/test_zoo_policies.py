"""The committed policy zoo weights (`dp-reach`, `dp-reach-two` and their `-full-attn` twins): every file matches
the sha256 its manifest records, the recorded training command is the zoo's, and `diffaccel.zoo.load` returns a
policy shaped for its environment (one or two obstacle centres in the observation), masked as it was trained, that
plans the reference's chunk sizes."""

import pytest
import torch

import diffaccel
from diffaccel.policy.envs import ObstacleReach
from diffaccel.zoo.weights_io import read_json, verify_manifest, weights_dir

#: written out here, not read from `ZOO_ENVS`, so that a changed mapping in the library fails this test
ENVS = {
    "dp-reach": "obstacle-reach",
    "dp-reach-full-attn": "obstacle-reach",
    "dp-reach-two": "obstacle-reach-two",
    "dp-reach-two-full-attn": "obstacle-reach-two",
}


@pytest.mark.parametrize("name", sorted(ENVS))
def test_weights_match_the_manifest_and_load_as_a_policy(name):
    manifest = verify_manifest(name)
    # the zoo's loop, run by `python -m diffaccel.zoo.train` or by the policy script with recipe options
    commands = (f"python -m diffaccel.zoo.train {name}", f"python policies/train.py {name}")
    assert manifest["name"] == name and manifest["command"].startswith(commands)
    assert set(manifest["sha256"]) == {"config.json", "model.safetensors"}
    assert 0.0 <= manifest["metrics"]["success_rate"] <= 1.0
    config = read_json(weights_dir(name) / "config.json")
    assert config["env"] == ENVS[name]
    policy = diffaccel.zoo.load(name)
    assert diffaccel.zoo.entry(name).kind == "policy" and policy.env_name == ENVS[name]
    obs_dim = ObstacleReach(ENVS[name]).obs_dim  # agent xy, goal xy, one xy per obstacle
    assert policy.config.obs_dim == obs_dim
    assert policy.config.causal_attn == COMMITTED[name][3]
    assert (policy.model.mask is None) == (not COMMITTED[name][3])  # the loaded decoder masks as trained
    out = policy.predict_action({"obs": torch.rand(2, 2, obs_dim)}, num_inference_steps=2)
    assert out["action"].shape == (2, 8, 2) and out["action_pred"].shape == (2, 16, 2)


#: what each committed config records and the recipe must reproduce: training windows, first-window weight, width,
#: causal attention between the action tokens
COMMITTED = {
    "dp-reach": (4681, 12.0, 128, True),
    "dp-reach-full-attn": (4681, 12.0, 128, False),
    "dp-reach-two": (10105, 12.0, 128, True),
    "dp-reach-two-full-attn": (10105, 12.0, 128, False),
}


@pytest.mark.parametrize("name", sorted(ENVS))
def test_each_zoo_recipe_is_the_one_its_committed_config_records(name):
    """The recipe `python -m diffaccel.zoo.train NAME` trains (`ZOO_RECIPES`: window range, normaliser on the
    demonstrations' rows, first-window weight, width, EMA schedule) cuts the training data the committed config
    records: the same demonstrations, windows and normaliser ranges, weight and width."""
    from diffaccel.zoo.train import recipe_class

    config = read_json(weights_dir(name) / "config.json")
    recipe = recipe_class(name)()
    data = config["training_data"]
    assert (recipe.demos, len(recipe.obs), recipe.window_starts, recipe.first_window_weight) == (
        data["demos"],
        data["windows"],
        data["window_starts"],
        data["first_window_weight"],
    )
    assert recipe.turn_window_weight == data.get("turn_window_weight", 1.0)  # configs before it: no turn weight
    assert recipe.demo_action_noise == data.get("demo_action_noise", 0.0)  # configs before it: clean demonstrations
    assert recipe.demos_kept == data.get("demos_kept", data["demos"])
    assert recipe.policy_config.n_layer == config["policy"]["n_layer"]
    policy_config = recipe.policy_config
    committed = (len(recipe.obs), recipe.first_window_weight, policy_config.n_emb, policy_config.causal_attn)
    assert committed == COMMITTED[name]
    recorded = config["policy"]
    # configs written before the option record no `causal_attn`; they were trained causal, the default
    assert (policy_config.n_emb, policy_config.causal_attn) == (recorded["n_emb"], recorded.get("causal_attn", True))
    assert (recipe.window_starts, recipe.ema_power) == ("every-step", config["optimizer"]["ema_power"])
    assert recipe.ema_power is None
    assert recipe.normalizer == config["normalizer"]
