"""Why BAC loses success on a policy zoo model, and which schedule variants fix it.

``python eval/bac_diagnosis.py [--model dp-reach] [--calib-seed 10000] [--test-seed 0] [--episodes 200]
[--variants NAME ...] [--success NAME ...] [--out DIR]``

Calibration and scoring use different seeds (tune on one set, report on another): the unit features are
recorded on observations of ``--calib-seed`` (reset observations as the compare harness uses, or closed-loop
windows for the ``*-cl`` variants); chunk errors are measured on observations of ``--test-seed`` and success on
``--episodes`` episodes of ``--test-seed``. Per variant it writes (atomically, resumable) one JSON record with:

* ``unit_calls_computed``: share of unit calls that compute under the schedule;
* ``first_rmse`` / ``first_mode_flips``: on the first plan of every test episode (reset observation repeated, the
  step where the policy picks a side of the disc), the chunk RMSE against the full-step chunk and the share of
  plans whose end point lies on the other side of the disc than the full-step plan's;
* ``mid_rmse``: chunk RMSE on expert windows at random decision steps of held-out episodes;
* ``success`` (for the variants named in ``--success``): closed-loop success at the schedule.

Variants are schedules built from the recorded features with `diffaccel.forecast.step_selection`, so every
variant costs one calibration record and no retraining. See docs/policy/README.md, "Why BAC loses".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffaccel import api, zoo
from diffaccel.compare.identity import module_digest
from diffaccel.core.atomic import atomic_write_text
from diffaccel.forecast.step_selection import (
    bubbling_union,
    cosine_similarity_matrix,
    distance_matrix,
    select_update_steps,
    uniform_update_steps,
)
from diffaccel.policy.envs import ObstacleReach
from diffaccel.policy.evaluate import evaluate
from diffaccel.policy.fidelity import action_chunks, fidelity_observations
from diffaccel.strategies.bac import FFN_KINDS
from diffaccel.strategies.bac_schedule import BacSchedule

UNIT_MODULES = {"self_attn": "attn", "multihead_attn": "cross_attn", "linear2": "mlp"}


def reset_windows(env_name: str, count: int, seed: int, n_obs_steps: int) -> tuple[torch.Tensor, np.ndarray]:
    env = ObstacleReach(env_name, count)
    obs = env.reset(seed)
    return torch.from_numpy(np.stack([obs] * n_obs_steps, 1)), env.obstacles[:, 0]


def closed_loop_windows(policy, env_name: str, count: int, seed: int) -> torch.Tensor:
    """Observation windows the full-step policy itself meets: every re-plan of `count` episodes."""
    env = ObstacleReach(env_name, count)
    obs = env.reset(seed)
    to = policy.config.n_obs_steps
    history, windows, replans = [obs] * to, [], 0
    while not env.done.all() and env.steps.max() < env.max_steps:
        window = torch.from_numpy(np.stack(history[-to:], 1))
        windows.append(window[torch.from_numpy(~env.done)])
        actions = policy.predict_action({"obs": window}, generator=torch.Generator().manual_seed(seed * 1000 + replans))
        replans += 1
        for k in range(actions["action"].shape[1]):
            history.append(env.step(actions["action"][:, k].numpy()))
            if env.done.all():
                break
    return torch.cat(windows)


def record_features(policy, obs: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Every unit's output at every step of one full-step run on `obs`: unit -> (K, numel)."""
    store: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, module in policy.model.named_modules():
        if name.rpartition(".")[2] in UNIT_MODULES and ".layers." in name:

            def hook(_m, _i, out, name=name):
                out = out[0] if isinstance(out, tuple) else out
                store.setdefault(name, []).append(out.detach().reshape(-1).double())

            hooks.append(module.register_forward_hook(hook))
    try:
        action_chunks(policy, obs, seed)
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.stack(v) for k, v in store.items()}


def record_outputs(policy, obs: torch.Tensor, seed: int) -> torch.Tensor:
    """The denoiser's output (epsilon) at every step of one full-step run on `obs`: (K, numel)."""
    store = []
    handle = policy.model.register_forward_hook(lambda _m, _a, out: store.append(out.detach().reshape(-1).double()))
    try:
        action_chunks(policy, obs, seed)
    finally:
        handle.remove()
    return torch.stack(store)


def step_sensitivity(policy, obs: torch.Tensor, seed: int) -> np.ndarray:
    """[ours] How much reusing the denoiser's whole output at one step moves the final chunk: for each step k ≥ 1,
    the chunk RMSE against the full-step chunk when step k returns step k−1's output (step 0 always computes)."""
    reference = action_chunks(policy, obs, seed)
    k_steps = policy.num_inference_steps
    out = np.zeros(k_steps)
    state = {"n": -1, "prev": None, "skip": -1}

    def hook(_m, _a, output):
        state["n"] += 1
        if state["n"] == state["skip"]:
            return state["prev"]
        state["prev"] = output
        return output

    handle = policy.model.register_forward_hook(hook)
    try:
        for k in range(1, k_steps):
            state.update(n=-1, prev=None, skip=k)
            out[k] = float((action_chunks(policy, obs, seed) - reference).pow(2).mean().sqrt())
    finally:
        handle.remove()
    return out


def layer_of(name: str) -> int:
    return int(name.split(".layers.")[1].split(".")[0])


def kind_of(name: str) -> str:
    return UNIT_MODULES[name.rpartition(".")[2]]


class UnitStats:
    """Each unit's score matrices and reuse error, computed once per calibration record."""

    def __init__(self, features: dict[str, torch.Tensor]):
        self.names = list(features)
        self.k = next(iter(features.values())).shape[0]
        self.cos, self.l1, self.rel, self.errors = {}, {}, {}, {}
        for name, f in features.items():
            self.cos[name] = cosine_similarity_matrix(f)
            dist = distance_matrix(f, "l1")  # element-mean |X_i - X_k|
            self.l1[name] = dist
            self.rel[name] = dist / f.abs().mean(1)[None, :].clamp_min(1e-30)
            k = f.shape[0]
            self.errors[name] = float(dist.triu(diagonal=1).sum() / (k * (k - 1) / 2))
        self.layers = {n: layer_of(n) for n in self.names}
        self.ffn = [n for n in self.names if kind_of(n) in FFN_KINDS]

    def score(self, name, metric):
        return {"cosine": self.cos, "l1": self.l1, "rel": self.rel}[metric][name]

    def finish(self, acs, top_blocks, force_last):
        updates = bubbling_union(acs, self.errors, self.layers, self.ffn, top_blocks)
        if force_last:
            updates = {u: sorted(set(s) | {self.k - 1}) for u, s in updates.items()}
        return updates

    def bac(self, num_updates, top_blocks=5, metric="cosine", force_last=True):
        """The official pipeline (ACS per unit, Bubbling Union, forced last step); metric "rel" [ours] is the
        relative L1 error |X_i - X_k|_1 / |X_k|_1, minimised."""
        acs = {
            n: select_update_steps(self.score(n, metric), num_updates, maximize=metric == "cosine") for n in self.names
        }
        return self.finish(acs, top_blocks, force_last)

    def unified(self, num_updates, metric="cosine", force_last=True, weights=None):
        """[ours] One schedule for every unit: the DP on the units' mean score (the paper's "Unified ACS" takes
        layer 0's self-attention alone)."""
        score = torch.stack([self.score(n, metric) for n in self.names]).mean(0)
        if weights is not None:  # [ours] each reusing step k counts with weight w_k
            score = score * torch.as_tensor(weights, dtype=score.dtype)[None, :]
        steps = select_update_steps(score, num_updates, maximize=metric == "cosine")
        if force_last:
            steps = sorted(set(steps) | {self.k - 1})
        return {n: steps for n in self.names}


def fraction(updates, k):
    return sum(len(s) for s in updates.values()) / (len(updates) * k)


def mode_side(chunks: torch.Tensor, policy, start: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """+1 / -1: the side of the disc centre (in y) where the executed part of the plan ends."""
    to = policy.config.n_obs_steps
    acts = chunks[:, to - 1 : to - 1 + policy.config.n_action_steps].numpy()
    end = start + acts.sum(1)
    return np.sign(end[:, 1] - centres[:, 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dp-reach")
    parser.add_argument("--calib-seed", type=int, default=10_000)
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--test-seed", type=int, default=0)
    parser.add_argument("--test-count", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--success", nargs="*", default=[])
    parser.add_argument("--timing", nargs="*", default=[], help="variants timed against full steps, interleaved")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="eval/results/bac-diagnosis")
    parser.add_argument("--cache-dir", default="/tmp/bac-diagnosis-features", help="recorded features (not kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    policy = zoo.load(args.model)
    env_name, to = policy.env_name, policy.config.n_obs_steps
    k = policy.num_inference_steps
    # the weights' digest in the folder name: records of other weights under the same zoo name are never resumed
    # (the folders without it, in eval/results/bac-diagnosis/, hold the records of the n_emb-64 dp-reach weights)
    digest = module_digest(policy)
    out = Path(args.out) / f"{args.model}-{digest[:12]}-calib{args.calib_seed}-test{args.test_seed}"
    out.mkdir(parents=True, exist_ok=True)

    cache = Path(args.cache_dir) / f"{args.model}-calib{args.calib_seed}-{digest}.pt"
    if cache.exists():
        feats = torch.load(cache)
    else:
        calib_reset, _ = reset_windows(env_name, args.calib_count, args.calib_seed, to)
        feats = {"reset": record_features(policy, calib_reset, args.calib_seed)}
        # the official calibration: one observation (batch 1)
        feats["one"] = record_features(policy, calib_reset[:1], args.calib_seed)
        cl = closed_loop_windows(policy, env_name, args.calib_count, args.calib_seed)
        pick = np.random.default_rng(args.calib_seed).choice(len(cl), args.calib_count, replace=False)
        feats["cl"] = record_features(policy, cl[torch.from_numpy(pick)], args.calib_seed)
        feats["sensitivity"] = torch.from_numpy(step_sensitivity(policy, calib_reset, args.calib_seed))
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(feats, cache)
    print("features recorded", flush=True)
    variants = {}
    sens = feats.pop("sensitivity").numpy()
    print("step sensitivity (x1e4):", np.round(sens * 1e4, 1).tolist(), flush=True)
    st = UnitStats(feats["reset"])
    for s in (8, 10, 14, 15):
        variants[f"unified-w-S{s}"] = st.unified(s, metric="l1", weights=sens)
        variants[f"unified-wsqrt-S{s}"] = st.unified(s, metric="l1", weights=np.sqrt(sens))
        variants[f"unified-wrel-S{s}"] = st.unified(s, metric="rel", weights=sens)
    eps = record_outputs(policy, reset_windows(env_name, args.calib_count, args.calib_seed, to)[0], args.calib_seed)
    for s in (10, 14, 15):  # [ours] one schedule for every unit, chosen on the denoiser output's similarity
        for metric, score in (("cos", cosine_similarity_matrix(eps)), ("l1", distance_matrix(eps, "l1"))):
            steps = sorted(set(select_update_steps(score, s, maximize=metric == "cos")) | {k - 1})
            variants[f"unified-eps{metric}-S{s}"] = {n: steps for n in feats["reset"]}
    for src in ("reset", "cl", "one"):
        st = UnitStats(feats[src])
        sfx = "" if src == "reset" else f"-{src}"
        for s in (5, 8, 10, 14, 15, 20, 25):
            variants[f"bac-S{s}{sfx}"] = st.bac(s)
            variants[f"bac-S{s}-nobu{sfx}"] = st.bac(s, top_blocks=0)
            variants[f"bac-S{s}-bu12{sfx}"] = st.bac(s, top_blocks=12)
            variants[f"bac-S{s}-l1{sfx}"] = st.bac(s, metric="l1")
            variants[f"rel-S{s}{sfx}"] = st.bac(s, metric="rel")
            variants[f"unified-S{s}{sfx}"] = st.unified(s)
            variants[f"unified-rel-S{s}{sfx}"] = st.unified(s, metric="rel")
    names = list(feats["reset"])
    for interval in (4, 5, 7, 10, 12):
        steps = uniform_update_steps(k, interval)
        variants[f"uniform-{interval}"] = {n: steps for n in names}
        variants[f"uniform-{interval}-last"] = {n: sorted(set(steps) | {k - 1}) for n in names}
    if args.variants:
        variants = {v: variants[v] for v in args.variants}

    test_reset, centres = reset_windows(env_name, args.test_count, args.test_seed, to)
    start = test_reset[:, -1, :2].numpy()
    test_mid = fidelity_observations(env_name, 64, args.test_seed, to)
    ref_first = action_chunks(policy, test_reset, args.test_seed)
    ref_mid = action_chunks(policy, test_mid, args.test_seed)
    ref_side = mode_side(ref_first, policy, start, centres)
    full_path = out / "full.json"
    if "none" in args.success and not full_path.exists():
        r = evaluate(policy, env=env_name, episodes=args.episodes, seed=args.test_seed)
        atomic_write_text(full_path, json.dumps({"success": r["success_rate"], "cpu_s": r["cpu_s"], **r}) + "\n")

    for name, updates in variants.items():
        path = out / f"{name}.json"
        rec = json.loads(path.read_text()) if path.exists() else None
        if rec is None:
            sched = BacSchedule(type(policy.model).__name__, k, updates)
            api.wrap(policy, "bac", schedule=sched)
            try:
                first = action_chunks(policy, test_reset, args.test_seed)
                mid = action_chunks(policy, test_mid, args.test_seed)
            finally:
                api.unwrap(policy)
            rec = {
                "variant": name,
                "unit_calls_computed": fraction(updates, k),
                "first_rmse": float((first - ref_first).pow(2).mean().sqrt()),
                "first_mode_flips": float((mode_side(first, policy, start, centres) != ref_side).mean()),
                "mid_rmse": float((mid - ref_mid).pow(2).mean().sqrt()),
                "updates": updates,
            }
            atomic_write_text(path, json.dumps(rec) + "\n")
        if name in args.success and "success" not in rec:
            api.wrap(policy, "bac", schedule=BacSchedule(type(policy.model).__name__, k, updates))
            try:
                r = evaluate(policy, env=env_name, episodes=args.episodes, seed=args.test_seed)
            finally:
                api.unwrap(policy)
            rec.update(success=r["success_rate"], success_stderr=r["success_stderr"], cpu_s=r["cpu_s"])
            rec["replans"] = r["replans"]
            atomic_write_text(path, json.dumps(rec) + "\n")
        print(
            f"{name:24s} computed {rec['unit_calls_computed']:.3f}  first rmse {rec['first_rmse']:.4f} "
            f"flips {rec['first_mode_flips']:.3f}  mid rmse {rec['mid_rmse']:.4f}"
            + (f"  success {rec['success']:.3f}" if "success" in rec else ""),
            flush=True,
        )
    if args.timing:
        timing = interleaved_cpu_time(policy, test_reset, args.test_seed, {n: variants[n] for n in args.timing}, args)
        atomic_write_text(out / "timing.json", json.dumps(timing, indent=1) + "\n")
        for name, t in timing["cpu_s_per_plan"].items():
            print(f"{name:24s} CPU s per plan {t:.3f}  CPU speedup {timing['cpu_speedup'][name]:.2f}", flush=True)
    return 0


def interleaved_cpu_time(policy, obs, seed, variants, args) -> dict:
    """CPU time per plan of full steps and of each schedule, measured round-robin in one process so that every row
    sees the same machine load; the median over `args.rounds` rounds."""
    k = policy.num_inference_steps
    times: dict[str, list[float]] = {"none": [], **{n: [] for n in variants}}
    for _ in range(args.rounds):
        for name in times:
            if name != "none":
                api.wrap(policy, "bac", schedule=BacSchedule(type(policy.model).__name__, k, variants[name]))
            try:
                c0 = time.process_time()
                action_chunks(policy, obs, seed)
                times[name].append(time.process_time() - c0)
            finally:
                if name != "none":
                    api.unwrap(policy)
    med = {n: float(np.median(v)) for n, v in times.items()}
    return {
        "batch": len(obs),
        "rounds": args.rounds,
        "cpu_s": times,
        "cpu_s_per_plan": med,
        "cpu_speedup": {n: med["none"] / t for n, t in med.items()},
    }


if __name__ == "__main__":
    raise SystemExit(main())
