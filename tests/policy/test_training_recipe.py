"""The dp-reach recipe's optimiser options (betas, weight decay on weight matrices only, reference init) and the
zoo loop's guarantee that recipes without them get exactly the optimiser they always had."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diffaccel.policy import DiffusionTransformerPolicy, PolicyConfig
from diffaccel.policy.envs import collect_demos
from diffaccel.policy.zoo import DEMO_SEED, PolicyTraining
from diffaccel.zoo.train import ema_decay_at, make_optimizer, reference_ema_decay


def _policy(seed=0):
    torch.manual_seed(seed)
    return DiffusionTransformerPolicy(PolicyConfig(obs_dim=6, n_emb=32, n_layer=2))


def _one_step(optimizer, params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()
    optimizer.step()
    return [p.detach().clone() for p in params]


def test_recipe_without_options_gets_the_old_optimizer_bit_for_bit():
    """flux/unet/wan/dit recipes set none of betas/weight_decay/parameter_groups: the optimiser must update
    exactly as the former `AdamW(parameters, lr, weight_decay=0.0)`."""
    recipe = SimpleNamespace(name="plain", learning_rate=1e-3)
    a, b = _policy(), _policy()
    pa, pb = list(a.parameters()), list(b.parameters())
    new = make_optimizer(recipe, {"policy": a}, pa)
    old = torch.optim.AdamW(pb, lr=1e-3, weight_decay=0.0)
    assert len(new.param_groups) == 1 and new.param_groups[0]["betas"] == (0.9, 0.999)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=gen) for p in pa]
        for x, y in zip(_one_step(new, pa, grads), _one_step(old, pb, grads)):
            assert torch.equal(x, y)


def test_decay_groups_are_the_weight_matrices_only():
    model = _policy().model
    decay, no_decay = model.optim_groups(0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    # independent rule: the 2-D parameters except the two position embeddings (3-D) are weight matrices
    expected = {n for n, p in model.named_parameters() if p.ndim == 2}
    assert decayed == expected and all(n.endswith("weight") for n in decayed)
    assert any("in_proj_weight" in n for n in decayed)
    assert {names[id(p)] for p in no_decay["params"]} == set(names.values()) - expected
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


def test_weight_decay_with_zero_gradient_shrinks_only_weight_matrices():
    """With zero gradients Adam's step is 0, so AdamW leaves p·(1 − lr·wd) on decayed tensors and the rest as is."""
    policy = _policy()
    recipe = SimpleNamespace(
        name="dp",
        learning_rate=0.5,
        betas=(0.9, 0.95),
        weight_decay=0.1,
        parameter_groups=lambda components: components["policy"].model.optim_groups(0.1),
    )
    params = list(policy.parameters())
    optimizer = make_optimizer(recipe, {"policy": policy}, params)
    assert [g["betas"] for g in optimizer.param_groups] == [(0.9, 0.95)] * 2
    before = [p.detach().clone() for p in params]
    after = _one_step(optimizer, params, [torch.zeros_like(p) for p in params])
    for p, x, y in zip(params, before, after):
        factor = 0.95 if p.ndim == 2 else 1.0
        torch.testing.assert_close(y, x * factor, rtol=0, atol=1e-7)


def test_parameter_groups_must_cover_every_parameter_once():
    policy = _policy()
    params = list(policy.parameters())
    recipe = SimpleNamespace(name="broken", learning_rate=1e-3, parameter_groups=lambda c: [{"params": params[:-1]}])
    with pytest.raises(ValueError, match="every trained parameter exactly once"):
        make_optimizer(recipe, {"policy": policy}, params)


def test_reference_init_statistics():
    model = _policy().model
    assert torch.equal(model.pos_emb, torch.zeros_like(model.pos_emb))  # ours: zero position embeddings
    model.reference_init_(torch.Generator().manual_seed(0))
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.numel() >= 1024:
            assert abs(module.weight.std().item() - 0.02) < 0.002
        if isinstance(module, nn.Linear) and module.bias is not None:
            assert not module.bias.any()
        if isinstance(module, nn.MultiheadAttention):
            assert abs(module.in_proj_weight.std().item() - 0.02) < 0.002 and not module.in_proj_bias.any()
        if isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)) and not module.bias.any()
    assert abs(model.pos_emb.std().item() - 0.02) < 0.004 and model.cond_pos_emb.abs().sum() > 0


def test_unknown_weight_init_names_the_choices():
    with pytest.raises(ValueError, match=r"'ours', 'reference'"):
        PolicyTraining(weight_init="xavier")


class _OfficialEMA:
    """A transcription of the official `EMAModel` (`diffusion_policy/model/diffusion/ema_model.py`) with the low-dim
    transformer config (update_after_step 0, inv_gamma 1, power 0.75, min 0, max 0.9999): `get_decay` and the
    step counter, which `step` increments after each update."""

    def __init__(self, power=0.75, max_value=0.9999):
        self.power, self.max_value, self.optimization_step = power, max_value, 0

    def get_decay(self, optimization_step):
        step = max(0, optimization_step - 0 - 1)
        value = 1 - (1 + step / 1.0) ** -self.power
        if step <= 0:
            return 0.0
        return max(0.0, min(value, self.max_value))

    def step(self):
        decay = self.get_decay(self.optimization_step)
        self.optimization_step += 1
        return decay


def test_reference_ema_schedule_is_the_official_one():
    official = _OfficialEMA()
    recipe = SimpleNamespace(ema_power=0.75, ema_decay=0.5, warmup_steps=10)
    for step in range(5000):
        assert ema_decay_at(recipe, step) == official.step()
    assert reference_ema_decay(0, 0.75) == reference_ema_decay(1, 0.75) == 0.0
    assert reference_ema_decay(10**9, 0.75) == 0.9999  # capped at max_value
    # a recipe without ema_power keeps our constant decay after the learning-rate warm-up
    plain = SimpleNamespace(ema_decay=0.998, warmup_steps=200)
    assert [ema_decay_at(plain, s) for s in (0, 199, 200, 4999)] == [0.0, 0.0, 0.998, 0.998]


def test_recipe_window_starts_reference_and_every_step():
    reference, ours = PolicyTraining(demos=4, window_starts="reference"), PolicyTraining(demos=4, eval_episodes=1)
    lengths = [len(d["action"]) for d in collect_demos("obstacle-reach", 4, DEMO_SEED)]
    assert len(ours.obs) == sum(lengths) and len(reference.obs) == sum(n - 7 for n in lengths)  # 16/8/2: 7 fewer
    assert reference.normalizer == ours.normalizer  # fitted on the demonstrations' rows, not the windows


def test_first_window_weight_oversamples_the_reset_windows_only():
    """Ours: with weight w each demonstration's first window (the reset observation repeated) is drawn w times as
    often as any other; weight 1 keeps the uniform draw bit for bit."""
    recipe = PolicyTraining(demos=4, first_window_weight=3.0)
    first = recipe.first_window
    assert int(first.sum()) == 4 and bool((recipe.obs[first][:, 0] == recipe.obs[first][:, 1]).all())
    assert bool((recipe.obs[~first][:, 0] != recipe.obs[~first][:, 1]).any(1).all())  # the agent moved
    drawn = []
    policy = SimpleNamespace(compute_loss=lambda obs, act, gen: drawn.append(obs) or torch.zeros(()))
    recipe.batch_size = 20000
    recipe.loss({"policy": policy}, torch.Generator().manual_seed(0))
    share = (drawn[0][:, 0] == drawn[0][:, 1]).all(1).float().mean().item()
    expected = 3 * 4 / (3 * 4 + len(recipe.obs) - 4)
    assert abs(share - expected) < 0.02
    uniform, drawn = PolicyTraining(demos=4, eval_episodes=1), []
    uniform.batch_size = 8
    uniform.loss({"policy": policy}, torch.Generator().manual_seed(1))
    idx = torch.randint(0, len(uniform.obs), (8,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(drawn[0], uniform.obs[idx])


def test_turn_window_weight_oversamples_the_windows_around_each_turn():
    """Ours: with turn weight 4 and first-window weight 2, each window is drawn in proportion to 4 (around a turn),
    2 (a reset window) or 1, counted by hand from the recipe's masks; on the one-disc task there is no turn."""
    recipe = PolicyTraining(name="dp-reach-two", demos=4, first_window_weight=2.0, turn_window_weight=4.0)
    turn, first = recipe.turn_window, recipe.first_window
    assert int(turn.sum()) == 4 * 9 and not bool((turn & first).any())
    drawn = []
    policy = SimpleNamespace(compute_loss=lambda obs, act, gen: drawn.append(obs) or torch.zeros(()))
    recipe.batch_size = 40000
    recipe.loss({"policy": policy}, torch.Generator().manual_seed(0))
    rows = {tuple(o.flatten().tolist()): i for i, o in enumerate(recipe.obs)}
    picked = torch.tensor([rows[tuple(o.flatten().tolist())] for o in drawn[0]])
    total = 4.0 * 36 + 2.0 * 4 + (len(recipe.obs) - 40)
    assert abs(turn[picked].float().mean().item() - 4.0 * 36 / total) < 0.01
    assert abs(first[picked].float().mean().item() - 2.0 * 4 / total) < 0.01
    one_disc = PolicyTraining(demos=4, turn_window_weight=4.0)
    assert not bool(one_disc.turn_window.any()) and bool((one_disc.window_weights == 1.0).all())


def test_n_layer_sets_the_decoder_depth_the_config_records():
    """`n_layer` (the reference low-dim transformer has 8; the recipes keep the prototype's 4) reaches the built
    denoiser and the saved config, so `zoo.load` rebuilds the same depth."""
    recipe = PolicyTraining(demos=4, n_emb=16, n_layer=3)
    components = recipe.build()
    assert len(components["policy"].model.decoder.layers) == 3
    assert recipe.config(components)["policy"]["n_layer"] == 3
    assert len(PolicyTraining(demos=4, n_emb=16).build()["policy"].model.decoder.layers) == 4
