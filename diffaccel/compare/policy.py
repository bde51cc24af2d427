"""`diffaccel compare --model <policy zoo model>` (e.g. `dp-reach`): diffusion policies.

Policies are scored by closed-loop task success, not image metrics. Per seed (an evaluation set of
`episodes` ObstacleReach-2D episodes; the default `--seeds` is just 0) every row reports:

* success rate with its binomial standard error, and the collision rate;
* action-chunk error against the full-step chunks for fixed observations and noise (RMSE, max-abs);
* NFE (denoiser calls summed over re-plans), the share of cache-unit calls computed and the
  FLOP-weighted computed fraction (from `diffaccel.summary` after every re-plan);
* wall-clock and process CPU time inside `predict_action`, and both speedups against the full run, per
  re-plan (a row whose episodes end sooner re-plans less, which is not acceleration).

Rows are diffaccel strategies (`bac`, `bac:mode=uniform,interval=5`, `taylorseer:...`), `none` (full
steps) and the sampler baselines `ddim:steps=N` / `ddpm:steps=N` (fewer steps, no caching). BAC is
calibrated once per row on a held-out observation batch (`--warmup-seed`); its schedule is kept in
`<out>/calibration/` so a resumed comparison reuses it. Each record is written atomically to
`results.jsonl` as soon as it exists (`--resume` skips finished rows); `report.md` and
`success_speed.png` are written at the end.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..strategies.registry import get_entry, parse_strategy_spec, resolve_config
from .identity import canonical_digest, config_payload, finished_as_now, module_digest
from .specs import BASELINE_NAMES, split_spec_list
from .store import RESULTS_NAME, ResultsStore, atomic_write_text, record_key

logger = logging.getLogger(__name__)

SAMPLER_ROWS = ("ddim", "ddpm")  # fewer steps of a sampler, no caching
DEFAULT_EPISODES = 200
#: `--seeds` left at the image default (four seeds) means one evaluation set here: seed 0, `episodes` episodes
IMAGE_DEFAULT_SEEDS = (0, 1, 2, 3)
FIDELITY_COUNT = 64
CALIBRATION_BATCH = 64
#: BAC at the official S=10 and at S=5; uniform block reuse (BAC's "threshold" mode) and whole-output reuse
#: at about the same unit budget (on dp-reach S=10 computes 0.15 of the unit calls, S=5 0.08); BAC with one schedule
#: for every unit [ours] at uniform interval 7's budget (S=14 plus the forced last step = 15 of 100); TaylorSeer; DDIM.
DEFAULT_POLICY_SPECS = (
    "bac",
    "bac:num_updates=5",
    "bac:num_updates=14,scope=unified",
    "bac:mode=uniform,interval=7",
    "bac:mode=uniform,interval=12",
    "taylorseer:granularity=model,interval=7,order=0,warmup=1",
    "taylorseer",
    "taylorseer:interval=7",
    "ddim:steps=10",
    "ddim:steps=15",
)
COLUMNS = (
    "success",
    "collisions",
    "chunk_rmse",
    "chunk_max_abs",
    "nfe",
    "unit_calls_computed",
    "computed_fraction",
    "wall_s",
    "speedup",
    "cpu_speedup",
)


def policy_specs(values: list[str] | None) -> list[tuple[str, str, dict[str, Any]]]:
    """(canonical tag, name, options) per requested row; diffaccel strategies are validated here."""
    texts = split_spec_list(values) if values else list(DEFAULT_POLICY_SPECS)
    specs, seen = [], set()
    for text in texts:
        name, options = parse_strategy_spec(text)
        if name.lower() in BASELINE_NAMES:
            continue
        if name in SAMPLER_ROWS:
            if set(options) != {"steps"} or not isinstance(options["steps"], int) or options["steps"] < 1:
                raise ValueError(f"'{text}': a sampler row takes exactly one option, steps=N (N >= 1)")
        else:
            get_entry(name)  # raises with the list of strategies
            resolve_config(name, {}, {k: v for k, v in options.items()})
        tag = name + (":" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) if options else "")
        if tag not in seen:
            seen.add(tag)
            specs.append((tag, name, dict(sorted(options.items()))))
    return specs


def run_policy_compare(settings, processes, console=None):

    from .. import zoo
    from ..policy.fidelity import action_chunks, fidelity_observations
    from .models import parse_dtype
    from .output import CompareOutcome, prepare_out_dir, records_of_this_run, resolve_out

    specs = policy_specs(settings.strategies)
    out_dir = resolve_out(settings, processes)
    prepare_out_dir(out_dir, settings, processes)
    store = ResultsStore(out_dir, shard=processes.shard_name).load()
    policy = zoo.load(settings.model, device=processes.device(settings.device), dtype=parse_dtype(settings.dtype))
    env = policy.env_name
    steps = settings.steps or policy.num_inference_steps
    seeds = [0] if list(settings.seeds) == list(IMAGE_DEFAULT_SEEDS) else list(settings.seeds)
    episodes = settings.episodes if getattr(settings, "episodes", None) else DEFAULT_EPISODES
    weights = module_digest(policy)

    def base(tag, name, options, seed):
        return {
            "model": settings.model,
            "strategy": name,
            "options": options,
            "tag": tag,
            "family": "policy",
            "seed": seed,
            "condition": f"{env}-{episodes}",
            "num_inference_steps": steps,
            "guidance_scale": None,
            "prompt": None,
            "class": None,
            "psnr": None,
            "ssim": None,
            "lpips": None,
            "process_index": processes.index,
        }

    for seed in processes.split(seeds):
        fid_obs = fidelity_observations(env, FIDELITY_COUNT, seed, policy.config.n_obs_steps)
        reference_chunks = action_chunks(policy, fid_obs, seed, steps)
        full_key = record_key(base("none", "none", {}, seed))
        evaluate_row = functools.partial(
            _evaluate_row,
            policy,
            env=env,
            episodes=episodes,
            seed=seed,
            steps=steps,
            fid_obs=fid_obs,
            reference_chunks=reference_chunks,
            out_dir=out_dir,
            settings=settings,
            weights=weights,
        )
        full_digest = _row_digest(policy, weights, "none", {})
        if not finished_as_now(store, full_key, full_digest):
            record = base("none", "none", {}, seed)
            store.put(evaluate_row(name="none", options={}, record=record, full=None, digest=full_digest))
        full = store.get(full_key)
        for tag, name, options in specs:
            key = record_key(base(tag, name, options, seed))
            digest = _row_digest(policy, weights, name, options)
            if finished_as_now(store, key, digest):
                continue
            try:
                record = base(tag, name, options, seed)
                record = evaluate_row(name=name, options=options, record=record, full=full, digest=digest)
            except Exception as error:  # noqa: BLE001 - one failing row must not end the comparison
                logger.warning("%s failed on seed %d: %s", tag, seed, error)
                record = base(tag, name, options, seed)
                record.update(status="failed", reason=f"{type(error).__name__}: {error}")
            store.put(record)
    processes.wait()
    outcome = CompareOutcome(out_dir, [], [])
    if processes.is_main:
        tags = ["none"] + [s[0] for s in specs]
        outcome.records = records_of_this_run(store, settings, tags, steps, lambda seed: seed in seeds)
        fulls = {r["seed"]: r for r in outcome.records if r.get("tag") == "none"}
        for r in outcome.records:
            if r.get("status") == "ok":
                r.update(_speedups(r, fulls.get(r["seed"])))
        outcome.paths = {"results": out_dir / RESULTS_NAME}
        table = policy_markdown(outcome.records, tags)
        title = (
            f"diffaccel compare: {settings.model} (policy on {env}), {episodes} episodes per seed, seeds "
            f"{','.join(map(str, seeds))}, {steps} DDPM steps at full"
        )
        atomic_write_text(out_dir / "report.md", f"{title}\n\n{table}\n")
        outcome.paths["report"] = out_dir / "report.md"
        plot = success_speed_plot(outcome.records, tags, out_dir / "success_speed.png", title)
        if plot is not None:
            outcome.paths["plot"] = plot
        if settings.print_table:
            (console.print if console is not None else print)(f"{title}\n\n{table}")
    return outcome


def _evaluate_row(
    policy,
    name,
    options,
    record,
    env,
    episodes,
    seed,
    steps,
    fid_obs,
    reference_chunks,
    full,
    out_dir: Path,
    settings,
    weights: str,
    digest: str,
) -> dict:
    """One row's record; `weights` / `digest` (the policy's weights and the row's run digest, computed by the
    caller before any wrap) name its BAC calibration and identify the record on resume."""
    from .. import api
    from ..policy.evaluate import evaluate
    from ..policy.fidelity import action_chunks, chunk_errors

    run_steps = options.get("steps", steps) if name in SAMPLER_ROWS else steps
    wrapped = name not in SAMPLER_ROWS and name != "none"
    counts = {"computed": 0, "calls": 0, "fraction_sum": 0.0, "plans": 0}

    def on_plan(_out):
        summary = api.summary(policy)
        counts["computed"] += sum(u.computed for u in summary.units.values())
        counts["calls"] += sum(u.computed + u.forecast for u in summary.units.values())
        counts["fraction_sum"] += summary.computed_fraction
        counts["plans"] += 1

    if name in SAMPLER_ROWS:
        policy.use_scheduler(name)
    try:
        if wrapped:
            options = dict(options)
            if name == "bac" and options.get("mode", "optimal") == "optimal" and "schedule" not in options:
                options["schedule"] = _bac_schedule(
                    policy, options, record["tag"], env, steps, out_dir, settings, weights
                )
            api.wrap(policy, name, **options)
        try:
            chunks = action_chunks(policy, fid_obs, seed, run_steps)
            result = evaluate(
                policy,
                env=env,
                episodes=episodes,
                seed=seed,
                num_inference_steps=run_steps,
                on_plan=on_plan if wrapped else None,
            )
        finally:
            if wrapped:
                api.unwrap(policy)
    finally:
        if name in SAMPLER_ROWS:
            policy.use_scheduler("ddpm")
    record.update(
        status="ok",
        steps=run_steps,
        episodes=result["episodes"],
        success_rate=result["success_rate"],
        success_stderr=result["success_stderr"],
        collision_rate=result["collision_rate"],
        nfe=result["nfe"],
        replans=result["replans"],
        wall_s=result["wall_s"],
        cpu_s=result["cpu_s"],
        **chunk_errors(chunks, reference_chunks),
    )
    if wrapped and counts["plans"]:
        record["unit_calls_computed"] = counts["computed"] / max(counts["calls"], 1)
        record["computed_fraction"] = counts["fraction_sum"] / counts["plans"]
    else:
        record["unit_calls_computed"] = run_steps / steps if name in SAMPLER_ROWS else 1.0
        record["computed_fraction"] = record["unit_calls_computed"]
    record["full_steps"] = None
    record["config_digest"] = digest
    record.update(_speedups(record, full))
    return record


def _row_digest(policy, weights: str, name: str, options: dict[str, Any]) -> str:
    """What a row runs: the policy's weights, and what `wrap` would attach (every resolved config, defaults and
    presets included) or the sampler row's options."""
    from .. import api

    if name == "none" or name in SAMPLER_ROWS:
        return canonical_digest({"weights": weights, "row": name, "options": options})
    configs = api.resolved_configs(policy, name, **options)
    return canonical_digest(
        {"weights": weights, "configs": {k: [config_payload(c) for c in v] for k, v in configs.items()}}
    )


def _speedups(record: dict, full: dict | None) -> dict:
    """Speedups per re-plan (time inside `predict_action` divided by the number of re-plans): a policy that
    ends episodes sooner re-plans less often, which must not count as acceleration."""
    if full is None or full.get("status") != "ok":
        return {"speedup": 1.0, "cpu_speedup": 1.0}
    per_plan = lambda r, key: r[key] / max(r["replans"], 1)  # noqa: E731
    return {
        "speedup": per_plan(full, "wall_s") / per_plan(record, "wall_s"),
        "cpu_speedup": per_plan(full, "cpu_s") / per_plan(record, "cpu_s"),
    }


def _bac_schedule(policy, options, tag, env, steps, out_dir: Path, settings, weights: str) -> str:
    """Calibrate BAC once per row on a held-out batch of reset observations (ours: 64; the official code uses
    one reset observation, which gives the same chunk errors on dp-reach, eval/bac_diagnosis.py); saved under
    `<out>/calibration/` and reused on resume."""
    import torch

    from .. import bac
    from ..policy.envs import ObstacleReach

    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)
    # named by the weights too: a schedule calibrated on other weights must not be reused
    path = out_dir / "calibration" / f"{slug}-steps{steps}-{weights}.json"
    if path.is_file():
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    envs = ObstacleReach(env, CALIBRATION_BATCH)
    obs = torch.from_numpy(np.stack([envs.reset(settings.warmup_seed)] * policy.config.n_obs_steps, 1))
    bac.calibrate(
        policy,
        path=path,
        options={k: v for k, v in options.items()},
        obs_dict={"obs": obs},
        generator=torch.Generator().manual_seed(settings.warmup_seed),
        num_inference_steps=steps,
    )
    return str(path)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _row_values(ok: list[dict]) -> dict[str, float | None]:
    if not ok:
        return {}
    n = sum(r["episodes"] for r in ok)
    p = sum(r["success_rate"] * r["episodes"] for r in ok) / n
    return {
        "success": p,
        "success_stderr": math.sqrt(p * (1 - p) / n),
        "collisions": _mean(r["collision_rate"] for r in ok),
        **{c: _mean(r.get(c) for r in ok) for c in COLUMNS if c not in ("success", "collisions")},
        "episodes": n,
    }


def _fmt(value, digits) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def policy_markdown(records: list[dict[str, Any]], tags: list[str]) -> str:
    header = (
        "| strategy | episodes | success ± stderr | collisions | chunk RMSE | chunk max | NFE | unit calls computed "
        "| FLOP computed | wall s | speedup | CPU speedup | note |"
    )
    lines = [header, "|" + "---|" * 13]
    for tag in tags:
        group = [r for r in records if r.get("tag") == tag]
        if not group:
            continue
        ok = [r for r in group if r.get("status") == "ok"]
        reason = next((r.get("reason", "") for r in group if r.get("status") != "ok"), "")
        v = _row_values(ok)
        if not v:
            lines.append(f"| {tag} | 0 |" + " - |" * 10 + f" {reason} |")
            continue
        lines.append(
            f"| {tag} | {v['episodes']} | {v['success']:.3f} ± {v['success_stderr']:.3f} | {_fmt(v['collisions'], 3)} "
            f"| {_fmt(v['chunk_rmse'], 4)} | {_fmt(v['chunk_max_abs'], 4)} | {_fmt(v['nfe'], 0)} "
            f"| {_fmt(v['unit_calls_computed'], 3)} | {_fmt(v['computed_fraction'], 3)} | {_fmt(v['wall_s'], 2)} "
            f"| {_fmt(v['speedup'], 2)} | {_fmt(v['cpu_speedup'], 2)} | {reason} |"
        )
    return "\n".join(lines)


def success_speed_plot(records, tags, path: Path, title: str = "") -> Path | None:
    """Success rate (± standard error) against CPU-time speedup, one point per row."""
    from .render import pyplot, save_figure

    plt = pyplot()

    points = []
    for tag in tags:
        v = _row_values([r for r in records if r.get("tag") == tag and r.get("status") == "ok"])
        if v and v.get("cpu_speedup") is not None:
            points.append((tag, v))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for tag, v in points:
        marker = "s" if tag.startswith(SAMPLER_ROWS) else "*" if tag == "none" else "o"
        ax.errorbar(v["cpu_speedup"], v["success"], yerr=v["success_stderr"], fmt=marker, capsize=3, label=tag)
    ax.set_xlabel("CPU-time speedup vs full steps")
    ax.set_ylabel("success rate (± standard error)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
