"""What the dLLM zoo trainings share: LLaDA's SFT loss, the learning-rate shape, held-out exact match
with stepwise decoding, resumable checkpoints and the zoo folder layout (weights, hub config, manifest).

The loss (:func:`sft_loss`) is the masked-diffusion SFT loss of the model's family:

* LLaDA (Nie et al. 2025, "Large Language Diffusion Models", and the ``GUIDELINES.md`` of ML-GSAI/LLaDA):
  the prompt is never masked, every answer token is masked with probability ``p = (1 - eps) t + eps``
  with ``t ~ U(0, 1)`` per row, and the cross-entropy of the masked tokens is divided by ``p`` and by the
  answer length; the logit at position ``j`` predicts token ``j``.
* Dream (Ye et al. 2025, "Dream 7B"; the SFT trainer of the Dream repository, ``fsdp_sft_trainer.py`` with
  its default ``time_reweighting="original"``, and ``q_sample``): every answer token is masked with
  probability ``t ~ U(0, 1)`` per row, the model's logits are shifted as at sampling time (the raw logit
  at ``j - 1`` predicts token ``j``), and the cross-entropy of the masked tokens, weighted by ``1 / t``, is
  divided by the number of masked tokens.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..core.atomic import atomic_write
from ..zoo.weights_io import read_json, sha256_of, write_json
from .hub_config import FAMILIES

logger = logging.getLogger(__name__)

MASK_EPS = 1e-3


def model_family(model) -> str:
    """``"dream"`` for a Dream-architecture model (shifted logits), else ``"llada"``."""
    from .dream import DreamModel

    return "dream" if isinstance(model, DreamModel) else "llada"


def sft_loss(
    model,
    prompts: torch.Tensor,
    answers: torch.Tensor,
    generator: torch.Generator,
    mask_id: int,
    return_predictions: bool = False,
    family: str = "llada",
    full_mask_rows: float = 0.0,
    full_mask: torch.Tensor | None = None,
):
    """The SFT loss of ``family`` (module docstring) with a fixed answer length; with ``return_predictions``
    also the argmax prediction of every answer token and which ones were masked (free progress signals).

    ``full_mask_rows`` (ours, default 0: the papers' loss) sets ``t = 1`` in that share of the rows, so their
    whole answer is masked: no answer token can then be read off its visible neighbours, only looked up.
    ``full_mask`` (bool ``[gen_length]``, default all) narrows what those rows mask to its positions (e.g.
    only the values of an answer that echoes each key before its value).

    ``family="dream"`` reads the prediction for answer position ``j`` from the raw logit at ``j - 1``
    (the last prompt token predicts the first answer token), exactly as Dream's sampler re-aligns them."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    batch, gen_length = answers.shape
    prompt_length = prompts.shape[1]
    t = torch.rand(batch, 1, generator=generator)
    full_rows = None
    if full_mask_rows > 0:
        full_rows = torch.rand(batch, 1, generator=generator) < full_mask_rows
        t = torch.where(full_rows, torch.ones_like(t), t)
    p_mask = (1 - MASK_EPS) * t + MASK_EPS if family == "llada" else t
    masked = torch.rand(batch, gen_length, generator=generator) < p_mask
    if full_rows is not None and full_mask is not None:
        masked = torch.where(full_rows, full_mask.view(1, -1), masked)
    noisy_answers = torch.where(masked, torch.full_like(answers, mask_id), answers)
    logits = model(torch.cat([prompts, noisy_answers], dim=1)).logits
    if family == "dream":
        logits = logits[:, prompt_length - 1 : prompt_length - 1 + gen_length]
    else:
        logits = logits[:, prompt_length:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), answers.reshape(-1), reduction="none").view(
        batch, gen_length
    )
    weighted = (ce * masked / p_mask).sum()
    # Dream divides by the masked-token count (a batch with none would be 0/0 there; here it is 0)
    loss = weighted / (batch * gen_length) if family == "llada" else weighted / masked.sum().clamp_min(1)
    if not return_predictions:
        return loss
    return loss, logits.detach().argmax(-1), masked


def lr_factor(step: int, warmup: int, total: int, final: float = 0.05) -> float:
    """Linear warm-up, then linear decay to ``final`` of the peak rate."""
    if step < warmup:
        return (step + 1) / warmup
    return 1.0 - (1.0 - final) * (step - warmup) / max(1, total - warmup)


def stepwise_exact_match(
    model, task, count: int, block_length: int, mask_id: int, batch_size: int = 64, seed: int = 1234
) -> float:
    """Exact-match rate on ``task.held_out(count, seed)`` with stepwise decoding: one token per step, greedy,
    the family's confidence (LLaDA ``low_confidence``; Dream ``maskgit_plus`` on shifted logits), semi-AR
    blocks of ``block_length``, in batches of ``batch_size`` rows."""
    from .sampler import MaskedDiffusionSampler, SamplingConfig

    config = getattr(model, "config", None)
    sampler = MaskedDiffusionSampler(
        model,
        family=model_family(model),
        mask_id=mask_id,
        eos_id=getattr(config, "eos_token_id", None),
        eot_id=getattr(config, "eot_token_id", None),
    )
    sampling = SamplingConfig(gen_length=task.gen_length, steps=task.gen_length, block_length=block_length)
    prompts, answers = task.held_out(count, seed=seed)
    right = 0
    with torch.no_grad():
        for start in range(0, count, batch_size):
            rows = slice(start, start + batch_size)
            out = sampler.generate(prompts[rows], sampling)
            right += int(task.exact_match(out[:, prompts.shape[1] :], answers[rows]).sum())
    return right / count


def command_line(module: str, argv: list[str] | None) -> str:
    return f"python -m {module} " + shlex.join(argv if argv is not None else sys.argv[1:])


def save_weights(path: Path, model: torch.nn.Module, zoo_name: str) -> None:
    """``model.safetensors`` written atomically, tensors under the checkpoint's own parameter names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", "zoo_model": zoo_name}))


def write_zoo_folder(output: Path, model, zoo_name: str, task: dict[str, Any], manifest: dict[str, Any]) -> dict:
    """Weights, hub-format ``config.json`` (the checkpoint's own fields plus ``diffaccel_task``) and a
    manifest carrying the sha256 of the weights."""
    from .hub_config import write_hub_config

    weights = output / "model.safetensors"
    save_weights(weights, model, zoo_name)
    write_hub_config(output, model.config, task=task, dtype=next(model.parameters()).dtype)
    manifest = {**manifest, "torch_version": torch.__version__, "sha256": {"model.safetensors": sha256_of(weights)}}
    write_json(output / "manifest.json", manifest)
    return manifest


def resume_progress(args, checkpoint: Checkpoint, model, optimizer, generator) -> tuple[int, dict[str, Any]]:
    """``(steps done, progress record)``: restored from ``checkpoint`` with ``--resume`` or ``--from-checkpoint``,
    ``(0, {})`` for a fresh run. The record holds what the training saved beside the state (recent losses,
    training time, a curriculum's cap)."""
    if not (args.resume or args.from_checkpoint):
        return 0, {}
    progress = read_json(checkpoint.folder / "progress.json")
    checkpoint.check_arguments(progress)
    start_step = checkpoint.load(model, optimizer, generator)
    return start_step, progress


def add_checkpoint_arguments(parser, checkpoint_every: int) -> None:
    """The trainings' checkpoint options: how often to write one, continue from it, or turn it into a zoo folder."""
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=checkpoint_every,
        help=f"write a resumable checkpoint every this many steps (0: never; default {checkpoint_every})",
    )
    parser.add_argument("--resume", action="store_true", help="continue from <output>/checkpoint/")
    parser.add_argument(
        "--from-checkpoint",
        action="store_true",
        help="write the zoo folder from <output>/checkpoint/ (a stopped run) and evaluate it",
    )


#: options that do not change what a training run computes: they may differ between a run and its resumption
RESUMABLE_WITH_OTHER = frozenset(
    {"threads", "resume", "from_checkpoint", "evaluate_only", "output", "checkpoint_every", "probe_every", "eval_count"}
)


def run_arguments(args) -> dict[str, Any]:
    """The options that define a training run (its data, model, schedule and length): a checkpoint records them,
    and a resumption must repeat them."""
    options = {k: v for k, v in sorted(vars(args).items()) if k not in RESUMABLE_WITH_OTHER}
    return json.loads(json.dumps(options, default=str))  # as progress.json will hold them (paths as text)


class Checkpoint:
    """Resumable training state in ``folder``: model and AdamW moments as safetensors, the step and the
    data generator's state, written atomically every few steps so a stopped run resumes where it was.
    ``arguments`` (:func:`run_arguments`) are saved beside it, so that a resumption with other options (another
    learning rate, task or length) fails instead of silently continuing a different run."""

    def __init__(self, folder: Path, arguments: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.arguments = arguments

    @property
    def exists(self) -> bool:
        return (self.folder / "state.safetensors").is_file()

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        extra: dict[str, Any],
    ) -> None:
        tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        opt_state = optimizer.state_dict()
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().contiguous().clone()
        tensors["generator"] = generator.get_state()
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(
            self.folder / "state.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"step": str(step)})
        )
        arguments = {} if self.arguments is None else {"arguments": self.arguments}
        write_json(self.folder / "progress.json", {"step": step, **arguments, **extra})

    def check_arguments(self, progress: dict[str, Any]) -> None:
        """Raise if the run that wrote ``progress`` had other options than this one (checkpoints written before
        the options were recorded cannot be checked: a warning says so)."""
        if self.arguments is None:
            return
        saved = progress.get("arguments")
        if saved is None:
            logger.warning("%s records no options (an older checkpoint): cannot check that they match", self.folder)
            return
        differ = {k for k in saved.keys() | self.arguments.keys() if saved.get(k) != self.arguments.get(k)}
        if differ:
            changes = ", ".join(
                f"--{k.replace('_', '-')}: {saved.get(k)!r} -> {self.arguments.get(k)!r}" for k in sorted(differ)
            )
            raise ValueError(
                f"the checkpoint in {self.folder} was written by a run with other options ({changes}); resume with "
                "the same options, or start a new run from its weights with --init-from"
            )

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
        """Restore everything; returns the number of steps already done."""
        from safetensors import safe_open

        tensors = load_file(str(self.folder / "state.safetensors"))
        model.load_state_dict(
            {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True
        )
        opt_state = optimizer.state_dict()
        restored: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                restored.setdefault(int(index), {})[name] = value
        opt_state["state"] = restored
        optimizer.load_state_dict(opt_state)
        generator.set_state(tensors["generator"])
        with safe_open(str(self.folder / "state.safetensors"), framework="pt") as handle:
            return int(handle.metadata()["step"])


def add_position_arguments(parser, max_positions: int = 1024) -> None:
    """The position options :func:`tiny_llada` reads: ``--positions``, ``--max-positions``, ``--rope-theta``."""
    parser.add_argument(
        "--positions",
        choices=("rope", "learned"),
        default="rope",
        help="rope (LLaDA's checkpoints) or learned absolute positions instead (LLaDA's rope=False)",
    )
    parser.add_argument("--max-positions", type=int, default=max_positions, help="learned positions: how many")
    parser.add_argument("--rope-theta", type=float, default=10000.0, help="RoPE base (LLaDA-8B's config: 500000)")


def tiny_llada(args, vocab_size: int, mask_id: int, eos_id: int, bos_id: int):
    """A LLaDA-architecture model of the size given by ``args`` (``d_model``, ``n_heads``, ``n_layers``, ``ff``):
    multi-head attention (as many key/value heads as query heads), RoPE base ``args.rope_theta`` (default
    10,000), EOS as padding.

    ``args.positions == "learned"``: LLaDA's ``rope=False`` instead, learned absolute positions for
    ``args.max_positions`` tokens (the key-value model: with RoPE alone, our 2-layer model did not learn
    one content lookup in 4000 steps, with learned positions in 500; docs/dllm/results/kv-curriculum)."""
    from .config import LLaDAConfig
    from .llada import LLaDAModelLM

    learned = getattr(args, "positions", "rope") == "learned"
    config = LLaDAConfig(
        d_model=args.d_model,
        n_heads=args.n_heads,
        n_kv_heads=args.n_heads,
        n_layers=args.n_layers,
        mlp_hidden_size=args.ff,
        vocab_size=vocab_size,
        embedding_size=vocab_size,
        max_sequence_length=getattr(args, "max_positions", 1024) if learned else 4096,
        rope=not learned,
        rope_theta=float(getattr(args, "rope_theta", 10000.0)),
        rms_norm_eps=1e-5,
        mask_token_id=mask_id,
        eos_token_id=eos_id,
        bos_token_id=bos_id,
        eot_token_id=None,
        pad_token_id=eos_id,
    )
    return LLaDAModelLM(config)


def tiny_dream(args, vocab_size: int, mask_id: int, eos_id: int, bos_id: int):
    """A Dream-architecture model of the size given by ``args`` (``d_model``, ``n_heads``, ``n_kv_heads``,
    ``n_layers``, ``ff``): Qwen2-style GQA with q/k/v biases, untied head, RoPE base ``args.rope_theta`` (default
    10,000, as :func:`tiny_llada`, so the two zoo twins differ only in architecture), EOS as padding."""
    from .config import DreamConfig
    from .dream import DreamModel

    config = DreamConfig(
        hidden_size=args.d_model,
        intermediate_size=args.ff,
        num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_kv_heads or args.n_heads,
        vocab_size=vocab_size,
        max_position_embeddings=4096,
        rope_theta=float(getattr(args, "rope_theta", 10000.0)),
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        mask_token_id=mask_id,
        pad_token_id=eos_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
    )
    return DreamModel(config)


def adamw(model: torch.nn.Module, lr: float) -> torch.optim.AdamW:
    """The optimiser of the dLLM trainings: AdamW with betas 0.9/0.98 and no weight decay."""
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)


def schedule_from(optimizer: torch.optim.Optimizer, args, start_step: int):
    """The :func:`lr_factor` schedule over ``args.steps`` with ``args.warmup`` at peak rate ``args.lr``, positioned
    at ``start_step`` so that a resumed run continues the same curve (create it after restoring the optimizer).

    torch's ``LambdaLR`` resumes (``last_epoch >= 0``) only from param groups that carry ``initial_lr``; a restored
    optimizer has none, so the peak rate is recorded first, and the rate of ``start_step`` is in effect on return.
    """
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, args.warmup, args.steps), last_epoch=start_step - 1
    )


def optimizer_step(model: torch.nn.Module, optimizer, scheduler, loss: torch.Tensor, step: int) -> float:
    """Backward, clip the gradient norm to 1, step optimizer and schedule; returns the loss, refusing a diverged one."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    value = loss.item()
    if not math.isfinite(value):
        raise RuntimeError(f"loss diverged at step {step}")
    return value


def exact_match_into_manifest(
    model, task, manifest: dict[str, Any], eval_count: int, block_lengths: list[int], mask_id: int
) -> dict[str, Any]:
    """``manifest["eval"]``: :func:`stepwise_exact_match` on ``eval_count`` held-out prompts per block length."""
    manifest["eval"] = {}
    for block_length in block_lengths:
        acc = stepwise_exact_match(model, task, eval_count, block_length, mask_id)
        manifest["eval"][f"exact_match_stepwise_block{block_length}"] = acc
        logger.info("held-out exact match (stepwise, block %d, %d prompts): %.4f", block_length, eval_count, acc)
    manifest["eval"]["held_out_count"] = eval_count
    manifest["eval"]["held_out_seed"] = 1234
    return manifest


def training_manifest(name: str, module: str, argv: list[str] | None, args, **record: Any) -> dict[str, Any]:
    """The manifest head every dLLM training writes: name, command, seed, hyper-parameters, then ``record``."""
    hyperparameters = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "output"}
    return {
        "name": name,
        "command": command_line(module, argv),
        "seed": args.seed,
        "hyperparameters": hyperparameters,
        **record,
    }


def evaluate_only(args, module: str, load, evaluate) -> dict[str, Any]:
    """``--evaluate-only``: evaluate the weights already in ``args.output`` (``load(folder)``;
    ``evaluate(model, folder, manifest, args.eval_count)`` fills ``manifest["eval"]``) and record the result in their manifest,
    which must list those weights."""
    from ..zoo.weights_io import verify_manifest

    manifest = verify_manifest(args.output.name, root=args.output.parent)
    evaluate(load(args.output), args.output, manifest, args.eval_count)
    manifest["eval"]["command"] = f"python -m {module} --evaluate-only"
    write_json(args.output / "manifest.json", manifest)
    return manifest
