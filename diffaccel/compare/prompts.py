"""Prompt lists for text-to-image/video models: a small built-in set, and `--prompts FILE` readers.

Accepted files (the formats of the prompt sets caching papers report on):

* `.txt`: one prompt per non-empty line (lines starting with `#` are comments);
* `.tsv` / `.csv`: the column named `prompt` (any case, e.g. PartiPrompts' `Prompt`), else the first column;
* `.json`: a list of strings, a list of objects with a `prompt` (or `prompt_en`, as in VBench) field, or an
  object with a `prompts` list.

For class-conditional models the same file lists class names or ids.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

# Written for diffaccel, in DrawBench-like categories (colour, counting, composition, text, style, scene).
BUILTIN_PROMPTS = (
    "a photo of a red fox sitting in fresh snow",
    "three blue cups on a wooden table",
    "a lighthouse on a cliff at sunset, oil painting",
    "a cat wearing a tiny knitted hat, studio portrait",
    "a street sign that says DIFFUSION",
    "an astronaut riding a bicycle on the moon",
    "a bowl of ramen seen from above, high detail",
    "a watercolor of a sailboat on a calm lake",
)

_PROMPT_KEYS = ("prompt", "prompt_en", "text", "caption")


def read_prompts(path: str | Path) -> list[str]:
    """The prompts in `path` (see the module docstring); an empty result is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--prompts file not found: {path}")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        prompts = _from_json(json.loads(text), path)
    elif suffix in (".tsv", ".csv"):
        prompts = _from_table(text, "\t" if suffix == ".tsv" else ",")
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    prompts = [p.strip() for p in prompts if p and p.strip()]
    if not prompts:
        raise ValueError(f"--prompts file {path} holds no prompts")
    return prompts


def _from_json(data, path: Path) -> list[str]:
    if isinstance(data, dict):
        if "prompts" not in data:
            raise ValueError(f"{path}: a JSON object needs a 'prompts' list")
        data = data["prompts"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of prompts")
    prompts = []
    for item in data:
        if isinstance(item, (str, int)):
            prompts.append(str(item))
        elif isinstance(item, dict):
            key = next((k for k in _PROMPT_KEYS if k in item), None)
            if key is None:
                raise ValueError(f"{path}: entry {item!r} has none of the fields {_PROMPT_KEYS}")
            prompts.append(str(item[key]))
        else:
            raise ValueError(f"{path}: cannot read a prompt from {item!r}")
    return prompts


def _from_table(text: str, delimiter: str) -> list[str]:
    rows = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if row and any(c.strip() for c in row)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    for key in _PROMPT_KEYS:
        if key in header:
            column = header.index(key)
            return [row[column] for row in rows[1:] if len(row) > column]
    return [row[0] for row in rows]
