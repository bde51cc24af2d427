"""User errors of `diffaccel compare` found before anything is loaded, each as one line (exit code 2).

Everything here can be decided from the arguments and the file system alone, so a mistake costs a second
instead of a model load followed by a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
from collections.abc import Sequence
from pathlib import Path


class UsageError(ValueError):
    """A mistake in the command line; the message says what to do instead."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, with a rejected argument reported on one line (exit code 2) instead of the whole usage text."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type of counts (steps, seeds, sizes): an int >= 1, with a message that says so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def one_line(error: BaseException) -> str:
    """An error's message on one line (messages of libraries we call may span several)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def check_compare_args(args, model: str, kind: str | None) -> None:
    """`kind`: the zoo kind of `model` ("image", "video", "dllm", ...) or None for hub and testing models."""
    if args.strategies is not None and not any(s.strip() for s in args.strategies):
        raise UsageError(
            '--strategies is empty; give specs such as "taylorseer:interval=4 taocache" '
            "(see --list-strategies), or leave it out for the default set"
        )
    check_device(args.device)
    if kind is not None and (args.height is not None or args.width is not None):
        raise UsageError(
            f"--height/--width: the zoo model {model} generates at the size it was trained at; "
            "they apply to hub and testing: models"
        )
    if kind == "dllm" and args.prompts is not None:
        raise UsageError(
            f"--prompts: {model} is a diffusion language model evaluated on its own held-out "
            "problems; --prompts applies to text-to-image/video models"
        )
    for flag, value in (("--problems", args.problems), ("--batch-size", args.batch_size)):
        if kind != "dllm" and value is not None:
            raise UsageError(f"{flag} applies to diffusion language models (dLLM zoo models such as llada-addition)")
    if args.out is not None:
        check_writable_folder(Path(args.out), "--out")
    else:
        check_writable_folder(Path.cwd(), "the current folder (where diffaccel-compare/ goes; or pass --out)")


def check_device(device: str) -> None:
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    kind = device.split(":", 1)[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"--device {device}: no CUDA device is available here (torch {torch.__version__}"
            f"{', a CPU-only build' if torch.version.cuda is None else ''}); use --device cpu"
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: MPS is not available here; use --device cpu")


def check_writable_folder(folder: Path, what: str) -> None:
    """The folder exists as a folder we can write into, or can be created."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{what}: {folder} is a file, not a folder; pass a folder path")
    _check_creatable(folder, folder, what)


def _check_creatable(target: Path, folder: Path, what: str) -> None:
    """`target` (in or at `folder`) can be created: the nearest existing ancestor of `folder` is a writable folder."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what}: {existing} is a file, so {target} cannot be created")
    if not _can_create_in(existing):
        raise UsageError(f"{what}: cannot write to {existing} (permission denied or read-only); pass a writable path")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in `folder`, tried for real (permission bits do not bind root, and a
    read-only file system or /proc refuses what they allow)."""
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".diffaccel-write-check-")
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def check_output_file(path: Path, what: str = "--output") -> None:
    """A file can be written at `path`: it is not a folder, and its folder exists or can be created, writably."""
    if path.is_dir():
        raise UsageError(f"{what}: {path} is a folder; give a file name, e.g. {path / 'out.png'}")
    _check_creatable(path, path.parent, what)


def resume_command(argv: Sequence[str], out_dir: str | os.PathLike | None) -> str:
    """The command that continues an interrupted comparison: the same arguments, `--resume`, and `--out`."""
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    if out_dir is not None and "--out" not in args and not any(a.startswith("--out=") for a in args):
        args += ["--out", str(out_dir)]
    return shlex.join(["diffaccel", *args, "--resume"])
