"""Masked-token accuracy of a predictor that does no lookup, only elimination (the record for the kv-filler logs).

When every record is queried once, the answer is a permutation of the prompt's values, so a model that knows
the prompt's values and sees the unmasked answer tokens can guess among the values not yet used. Under LLaDA's
SFT masking (each answer token masked with probability t, t uniform) that guess scores this accuracy.

    PYTHONPATH=<repo> OMP_NUM_THREADS=1 python elimination_baseline.py
"""

from collections import Counter

import torch

from diffaccel.dllm.tasks.kv import KeyValueTask

ROWS = 2000


def elimination_accuracy(task: KeyValueTask, generator: torch.Generator) -> float:
    prompts, answers = task.batch(ROWS, generator)
    hits = total = 0.0
    for row in range(ROWS):
        values = [x for x in prompts[row, 1 : -task.gen_length - 1].tolist() if task.n_keys <= x < task.first_filler]
        t = torch.rand(1, generator=generator).item() * (1 - 1e-3) + 1e-3
        masked = torch.rand(task.gen_length, generator=generator) < t
        left = Counter(values)
        left.subtract(answers[row, ~masked].tolist())
        pool = sum(max(0, c) for c in left.values())
        for token in answers[row, masked].tolist():
            hits, total = hits + max(0, left[token]) / pool, total + 1
    return hits / total


if __name__ == "__main__":
    generator = torch.Generator().manual_seed(0)
    for records in (32, 48):
        task = KeyValueTask(records, 32, records, 64, n_filler=8, n_filler_symbols=32)
        print(f"{records} records, {records} key symbols: {elimination_accuracy(task, generator):.3f}")
