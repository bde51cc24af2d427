"""`diffaccel compare`: how much faster, for how much quality lost against the full-step run of the same seed.

    from diffaccel.compare import CompareSettings, run_compare
    outcome = run_compare(CompareSettings(model="flux-photos", strategies=["taylorseer:interval=4", "diffusers:fbc"]))
    for row in outcome.rows: print(row.tag, row.speedup.mean, row.psnr.mean)

Modules: `specs` (parsing strategy specs), `models` (what `--model` means), `prompts`, `store`
(atomic results.jsonl, cached arrays), `runners` (how each row attaches), `peer_table` and `peers/` (peers
register themselves in the table), `counting` (work counted for peers), `harness` (the timed and scored loop),
`distributed` (accelerate scale-out), `report` (the table), `render` (grid and plot), `output` (run folders and
the outcome), `dllm` (dispatch for diffusion language models), `run` (the job).
"""

from . import peers  # each peer registers itself in `peer_table` on import
from .output import CompareOutcome, OutputExistsError
from .run import CompareSettings, run_compare
from .specs import BASELINE, StrategySpec, parse_spec, parse_spec_list, split_spec_list

__all__ = [
    "BASELINE",
    "CompareOutcome",
    "CompareSettings",
    "OutputExistsError",
    "StrategySpec",
    "parse_spec",
    "peers",
    "parse_spec_list",
    "run_compare",
    "split_spec_list",
]
