"""The comparison loop: every strategy on every (seed, conditioning) unit, timed and scored the same way.

Order and measurement (identical for diffaccel's strategies and for peers):

1. the baseline first (full steps; its float32 outputs are cached in `<out>/baseline/` so that a resumed
   comparison never recomputes them, and, when peers are compared, an untimed counting pass records its
   per-call work);
2. for each strategy: attach, one untimed warm-up call on a held-out seed (`warmup_seed`, never one of the
   scored seeds, so whatever a strategy learns on its first run, e.g. HyCa's probe, is not fitted to the
   scored images), then per unit: reset, time only the pipeline call (`time.perf_counter`, with a CUDA
   synchronise on GPUs; with `repeats` > 1 the fastest of that many calls), score against the cached
   baseline output, write the record at once;
3. peers get a second, untimed call under `WorkCounter` for `computed_fraction` / `full_steps`, which must
   reproduce the timed output bit for bit (else those fields are null with a note).

A strategy that cannot run on the model is one record with `status: "unsupported"` and the reason; one
that raises mid-way gets `status: "failed"`. Neither stops the comparison.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.atomic import atomic_write_text
from .counting import CallCounts, WorkCounter, compare_counts
from .models import Condition, LoadedModel
from .quality import Scorer, output_array
from .runners import HarnessContext, StrategyRunner, Unsupported, make_runner, resolve_spec
from .specs import BASELINE, StrategySpec
from .store import ResultsStore, load_array, record_key, save_array, to_uint8

logger = logging.getLogger(__name__)


#: Order in which families run (the table keeps the user's order). cache-dit last: its patch functors replace
#: the transformer's (and, for FLUX, the single blocks') forward for good (`disable_cache` in cache-dit 1.5 does
#: not restore them), which breaks hooks that rows after it attach, e.g. diffusers' MagCache tail-block hook.
RUN_ORDER = {"baseline": 0, "diffaccel": 1, "diffusers": 2, "cache-dit": 3}


class RunLimitReached(Exception):
    """`max_runs` new records were written; the rest is left for `--resume`."""


@dataclass(frozen=True)
class WorkUnit:
    seed: int
    condition: Condition


def settings_dir(steps: int, guidance_scale: float | None, scheduler_tag: str | None = None) -> str:
    base = f"steps{steps}_g{'default' if guidance_scale is None else guidance_scale}"
    return base if scheduler_tag is None else f"{base}_sched-{scheduler_tag.replace(',', '_')}"


class Harness:
    """Runs specs over units and writes records; see the module docstring."""

    def __init__(
        self,
        model: LoadedModel,
        store: ResultsStore,
        out_dir: Path,
        steps: int,
        guidance_scale: float | None,
        warmup_seed: int,
        scorer: Scorer,
        max_runs: int | None = None,
        progress: bool = True,
        process_index: int = 0,
        on_record: Callable[[dict], None] | None = None,
        repeats: int = 1,
    ):
        self.model, self.store, self.out_dir = model, store, Path(out_dir)
        self.steps, self.guidance_scale, self.warmup_seed = steps, guidance_scale, warmup_seed
        self.scorer, self.max_runs, self.progress = scorer, max_runs, progress
        self.process_index = process_index
        self.on_record = on_record
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.repeats = repeats
        self.new_records = 0
        self.folder = settings_dir(steps, guidance_scale, model.scheduler_tag)
        self.ctx = HarnessContext(model, steps, guidance_scale, warmup_seed, self.out_dir)
        self._resolved: dict[str, tuple[str | None, str | None]] = {}

    # ------------------------------------------------------------------ keys and paths
    def base_record(self, spec: StrategySpec, unit: WorkUnit | None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "model": self.model.name,
            "strategy": spec.strategy,
            "options": spec.options_dict,
            "tag": spec.tag,
            "family": spec.family,
            "seed": None if unit is None else unit.seed,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance_scale,
        }
        if self.model.scheduler_tag is not None:
            record["scheduler"] = self.model.scheduler_tag
        if unit is None:
            record.update(condition=None, prompt=None, **{"class": None})
        else:
            record.update(unit.condition.record_fields())
            if unit.condition.kind == "all-classes" and self.model.class_names:
                record["classes"] = list(self.model.class_names)
        return record

    def key(self, spec: StrategySpec, unit: WorkUnit | None) -> tuple:
        return record_key(self.base_record(spec, unit))

    def resolution(self, spec: StrategySpec) -> tuple[str | None, str | None]:
        """The digest and `config` text of what this code attaches for a diffaccel spec on this model
        (presets resolved), or (None, None) when it cannot be resolved (the run then reports why)."""
        if spec.tag not in self._resolved:
            try:
                self._resolved[spec.tag] = resolve_spec(spec, self.model.pipe)
            except Exception as error:  # noqa: BLE001 - attaching will fail the same way and become a row
                logger.debug("%s: configuration not resolved: %s", spec.tag, error)
                self._resolved[spec.tag] = (None, None)
        return self._resolved[spec.tag]

    def measured_as_now(self, spec: StrategySpec, record: dict[str, Any]) -> bool:
        """Whether a finished record of `spec` ran the configuration this code resolves for it. A spec's
        meaning can live in code (tuned and family presets), so the tag alone does not identify a run; peers
        and the baseline resolve nothing and match by tag. Records from before `config_digest` existed are
        compared by their `config` text (every non-default option of the attached configs)."""
        if spec.family != "diffaccel" or record.get("status") != "ok":
            return True
        digest, text = self.resolution(spec)
        if record.get("config_digest") is not None:
            return record["config_digest"] == digest
        return text is not None and record.get("config") == text

    def is_done(self, spec: StrategySpec, unit: WorkUnit) -> bool:
        """A finished record of this run exists and measured what this code would run now."""
        key = self.key(spec, unit)
        return self.store.is_done(key) and self.measured_as_now(spec, self.store.get(key))

    def baseline_path(self, unit: WorkUnit) -> Path:
        return self.out_dir / "baseline" / self.folder / f"{unit.condition.id}_seed{unit.seed}.npy"

    def counts_path(self, unit: WorkUnit) -> Path:
        return self.out_dir / "baseline" / self.folder / f"{unit.condition.id}_seed{unit.seed}.counts.json"

    def image_path(self, spec: StrategySpec, unit: WorkUnit) -> Path:
        return self.out_dir / "images" / self.folder / spec.slug / f"{unit.condition.id}_seed{unit.seed}.npy"

    # ------------------------------------------------------------------ pipeline calls
    def _call(self, unit_seed: int, condition: Condition):
        return self.model.pipe(**self.model.call_kwargs(condition, self.steps, unit_seed, self.guidance_scale))

    def _sync(self) -> None:
        if self.model.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.synchronize()

    def timed_call(self, runner: StrategyRunner, unit: WorkUnit) -> tuple[np.ndarray, float, float | None]:
        """The pipeline call alone: wall-clock seconds, and on CPU also this process's CPU seconds (steadier than
        wall-clock on a machine shared with other work, where waiting for a core counts as wall time)."""
        walls, cpus = [], []
        for _ in range(self.repeats):  # with --repeats N: the fastest of N identical calls (least disturbed)
            runner.before_call()
            self._sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            output = self._call(unit.seed, unit.condition)
            self._sync()
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu_start)
        return output_array(output), min(walls), (min(cpus) if self.model.device == "cpu" else None)

    def counted_call(self, runner: StrategyRunner, unit: WorkUnit) -> tuple[np.ndarray, CallCounts]:
        runner.before_call()
        with WorkCounter(self.model.denoisers) as counter:
            output = self._call(unit.seed, unit.condition)
        return output_array(output), counter.counts

    # ------------------------------------------------------------------ the loop
    def run(self, specs: list[StrategySpec], units: list[WorkUnit]) -> None:
        """All specs over `units`, with one progress bar over every run still to do."""
        if not units:
            return
        want_counts = any(s.is_peer for s in specs)
        total = len(self._baseline_todo(units, want_counts)) + sum(
            sum(not self.is_done(s, u) for u in units) for s in specs if not s.is_baseline
        )
        self._bar = self._make_bar(total)
        try:
            self.run_baseline(units, want_counts)
            if want_counts:
                self.ctx.baseline_counts = self.load_counts(units[0])
                self.ctx.batched_cfg = self._batched_cfg(units[0])
            for spec in sorted(specs, key=lambda s: RUN_ORDER.get(s.family, len(RUN_ORDER))):
                if not spec.is_baseline:
                    self.run_strategy(spec, units)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    _bar = None

    def _make_bar(self, total: int):
        if not self.progress or total == 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="run", desc="diffaccel compare", dynamic_ncols=True)

    def _advance(self, description: str, done: int = 1) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(description, refresh=False)
            self._bar.update(done)

    def _baseline_todo(self, units: list[WorkUnit], want_counts: bool) -> list[WorkUnit]:
        return [
            u
            for u in units
            if not self.store.is_done(self.key(BASELINE, u))
            or load_array(self.baseline_path(u)) is None
            or (want_counts and not self.counts_path(u).is_file())
        ]

    def _batched_cfg(self, unit: WorkUnit) -> bool:
        counts, reference = self.ctx.baseline_counts, load_array(self.baseline_path(unit))
        if counts is None or reference is None or not counts.first_batch:
            return False
        return any(batch == 2 * reference.shape[0] for batch in counts.first_batch.values())

    def run_baseline(self, units: list[WorkUnit], want_counts: bool) -> None:
        spec = BASELINE
        todo = self._baseline_todo(units, want_counts)
        if not todo:
            return
        runner = StrategyRunner(spec)
        runner.setup(self.ctx)
        try:
            self._run_baseline_units(runner, todo, want_counts)
        finally:
            runner.teardown()

    def _run_baseline_units(self, runner: StrategyRunner, todo: list[WorkUnit], want_counts: bool) -> None:
        spec = BASELINE
        self._warmup(runner)
        for unit in todo:
            key = self.key(spec, unit)
            if not self.store.is_done(key) or load_array(self.baseline_path(unit)) is None:
                images, wall_s, cpu_s = self.timed_call(runner, unit)
                save_array(self.baseline_path(unit), images)
                save_array(self.image_path(spec, unit), to_uint8(images))
                if not self.store.is_done(key):
                    record = self.finished_call_record(spec, unit, runner.after_call(), wall_s, cpu_s)
                    record.update(
                        speedup=1.0,
                        cpu_speedup=1.0 if cpu_s else None,
                        psnr=None,
                        ssim=None,
                        lpips=None,
                        note="reference: the full-step output every other row is scored against",
                    )
                    self._put(record)
            if want_counts and not self.counts_path(unit).is_file():
                images, counts = self.counted_call(runner, unit)
                reference = load_array(self.baseline_path(unit))
                payload = counts.as_dict()
                payload["deterministic"] = bool(np.array_equal(images, reference))
                if not payload["deterministic"]:
                    logger.warning(
                        "baseline %s seed %d: a second call gave a different output (non-deterministic "
                        "pipeline); peers' counted statistics are then null",
                        unit.condition.id,
                        unit.seed,
                    )
                atomic_write_text(self.counts_path(unit), json.dumps(payload))
            self._advance("none")

    def load_counts(self, unit: WorkUnit) -> CallCounts | None:
        path = self.counts_path(unit)
        if not path.is_file():
            return None
        payload = json.loads(path.read_text())
        if not payload.get("deterministic", True):
            return None
        return CallCounts.from_dict(payload)

    def run_strategy(self, spec: StrategySpec, units: list[WorkUnit]) -> None:
        strategy_key = self.key(spec, None)
        todo = [u for u in units if not self.is_done(spec, u)]
        if not todo:
            return
        stale = sum(self.store.is_done(self.key(spec, u)) for u in todo)
        if stale:
            logger.warning(
                "%d finished run%s of '%s' %s measured with another resolved configuration; running %s again",
                stale,
                "s" if stale > 1 else "",
                spec.tag,
                "were" if stale > 1 else "was",
                "them" if stale > 1 else "it",
            )
        runner = make_runner(spec)
        try:
            runner.setup(self.ctx)
        except Unsupported as reason:
            logger.info("%s: unsupported: %s", spec.tag, reason)
            self._put(self._strategy_record(spec, "unsupported", str(reason)), count=False)
            self._advance(spec.tag, len(todo))
            return
        except Exception as error:  # noqa: BLE001 - attaching failed in an unforeseen way: a row, not a crash
            logger.warning("%s could not be attached: %s: %s", spec.tag, type(error).__name__, error)
            runner.teardown()
            self._put(self._strategy_record(spec, "failed", f"{type(error).__name__}: {error}"), count=False)
            return
        try:
            self._warmup(runner)
            for unit in todo:
                self.run_unit(spec, runner, unit)
                self._advance(spec.tag)
        except RunLimitReached:
            raise
        except Exception as error:  # noqa: BLE001 - a failing row must not end the comparison
            logger.warning(
                "%s failed: %s: %s", spec.tag, type(error).__name__, error, exc_info=logger.isEnabledFor(logging.DEBUG)
            )
            self._put(self._strategy_record(spec, "failed", f"{type(error).__name__}: {error}"), count=False)
            return
        finally:
            runner.teardown()
        if self.store.get(strategy_key) is not None:
            self.store.remove(strategy_key)

    def finished_call_record(self, spec: StrategySpec, unit: WorkUnit, stats, wall_s: float, cpu_s) -> dict[str, Any]:
        """The record of one finished call: its steps, computed fraction and times (scores come after)."""
        record = self.base_record(spec, unit)
        record.update(
            status="ok",
            steps=stats.steps,
            full_steps=stats.full_steps,
            computed_fraction=stats.computed_fraction,
            computed_fraction_source=stats.source,
            wall_s=wall_s,
            cpu_s=cpu_s,
        )
        return record

    def run_unit(self, spec: StrategySpec, runner: StrategyRunner, unit: WorkUnit) -> dict[str, Any]:
        reference = load_array(self.baseline_path(unit))
        if reference is None:
            raise RuntimeError(f"baseline output missing for {unit}")
        images, wall_s, cpu_s = self.timed_call(runner, unit)
        stats = runner.after_call()
        record = self.finished_call_record(spec, unit, stats, wall_s, cpu_s)
        record.update(stats.extra)
        if runner.needs_counting:
            record.update(self._counted_fields(runner, unit, images))
        baseline = self.store.get(self.key(BASELINE, unit))
        base_wall = baseline.get("wall_s") if baseline else None
        base_cpu = baseline.get("cpu_s") if baseline else None
        record["speedup"] = (base_wall / wall_s) if base_wall and wall_s > 0 else None
        record["cpu_speedup"] = (base_cpu / cpu_s) if base_cpu and cpu_s else None
        record.update(self.scorer.score(reference, images))
        save_array(self.image_path(spec, unit), to_uint8(images))
        self._put(record)
        return record

    def _counted_fields(self, runner: StrategyRunner, unit: WorkUnit, timed_images: np.ndarray) -> dict[str, Any]:
        from .counting import COUNTED_SCOPE

        baseline_counts = self.load_counts(unit)
        images, counts = self.counted_call(runner, unit)
        if baseline_counts is None:
            return {
                "computed_fraction": None,
                "full_steps": None,
                "note": "computed_fraction not derived: the baseline's counting pass is missing or was non-deterministic",
            }
        if not np.array_equal(images, timed_images):
            return {
                "computed_fraction": None,
                "full_steps": None,
                "note": "computed_fraction not derived: the counting pass did not reproduce the timed output",
            }
        counted = compare_counts(counts, baseline_counts, self.steps)
        fields = {
            "computed_fraction": counted.computed_fraction,
            "full_steps": counted.full_steps,
            "computed_fraction_source": COUNTED_SCOPE,
            "calls_per_step": counted.calls_per_step,
        }
        if counted.note:
            fields["note"] = counted.note
        return fields

    def _warmup(self, runner: StrategyRunner) -> None:
        """One untimed call on the held-out warm-up seed (first-call allocations, lazy initialisation)."""
        runner.before_call()
        self._call(self.warmup_seed, self.model.conditions[0])

    def _strategy_record(self, spec: StrategySpec, status: str, reason: str) -> dict[str, Any]:
        record = self.base_record(spec, None)
        record.update(
            status=status,
            reason=reason,
            steps=None,
            full_steps=None,
            computed_fraction=None,
            wall_s=None,
            cpu_s=None,
            speedup=None,
            cpu_speedup=None,
            psnr=None,
            ssim=None,
            lpips=None,
        )
        return record

    def _put(self, record: dict[str, Any], count: bool = True) -> None:
        record["process_index"] = self.process_index
        if record.get("wall_s") is not None:
            record["timing_repeats"] = self.repeats
        if hasattr(os, "getloadavg"):  # how busy the machine was: context for wall-clock figures
            record["load_avg_1m"] = round(os.getloadavg()[0], 2)
        record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.store.put(record)
        if self.on_record is not None:
            self.on_record(record)
        if count:
            self.new_records += 1
            if self.max_runs is not None and self.new_records >= self.max_runs:
                raise RunLimitReached(f"stopped after {self.new_records} new runs (--max-runs)")
