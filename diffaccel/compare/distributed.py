"""Scale-out: `accelerate launch -m diffaccel compare ...` splits the work across processes.

Each process takes every n-th (seed, conditioning) unit (`units[index::count]`), runs the baseline and all
strategies on its units, and writes its own shard of results; after a barrier the main process merges the
shards into one `results.jsonl` and renders the table, grid and plot. Process index and count come from
accelerate's `PartialState`, so any accelerate launch (CPU processes, one GPU per process) works; without a
launcher it is one process and nothing is initialised.

Launch commands (accelerate 1.15): on GPUs `accelerate launch --multi_gpu --num_processes N -m diffaccel
compare --device cuda ...`; on CPUs `accelerate launch --multi_gpu --num_processes N -m diffaccel compare
--device cpu ...` (it starts N processes through torch's elastic launcher; with `--device cpu` we ask
`PartialState(cpu=True)`, which joins them in a gloo process group) or, equivalently, `torchrun
--nproc_per_node N -m diffaccel compare ...`. Note that `accelerate launch --cpu --num_processes N` starts
only ONE process unless an MPI hostfile is configured.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Processes:
    index: int = 0
    count: int = 1
    state: Any = None

    @classmethod
    def detect(cls, device: str = "cpu") -> Processes:
        """accelerate's process layout when launched by accelerate/torchrun, else a single process."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=device == "cpu")
        if state.num_processes <= 1:
            raise RuntimeError(
                f"WORLD_SIZE={os.environ['WORLD_SIZE']} but accelerate formed no process group (device {device!r}); "
                "see diffaccel.compare.distributed for launch commands"
            )
        return cls(state.process_index, state.num_processes, state)

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def shard_name(self) -> str | None:
        return None if self.count == 1 else f"{self.index}-of-{self.count}"

    def split(self, units: Sequence) -> list:
        return list(units[self.index :: self.count])

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def device(self, requested: str) -> str:
        """With several GPU processes each uses its own device (accelerate assigns it)."""
        if self.state is not None and requested == "cuda":
            return str(self.state.device)
        return requested
