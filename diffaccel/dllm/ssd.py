"""Lossless self-speculative decoding for diffusion LMs (after arXiv 2510.04147).

The reference is greedy stepwise decoding: one token per step inside the current block, the
position with the highest confidence (ties: as the sampler's ``numerics`` select) and its argmax token. One SSD round at a
state ``x`` whose logits ``F(x)`` are known:

1. commit the reference choice ``(p*, v*)`` from ``F(x)`` -> ``s_0`` (this *is* the reference step);
2. draft the next ``N`` positions by the same confidences: ``d_j = (q_j, argmax F(x)_{q_j})``;
3. nodes ``s_j = s_{j-1} + d_j`` (a linear chain), all verified in ONE batched forward;
4. accept while the reference choice at ``s_a`` equals ``d_{a+1}``; continue from ``s_a`` with
   ``F(s_a)``, already computed.

By induction the state after every round is the reference state after as many tokens, so the output
is identical to stepwise decoding while the number of (batched) forwards drops. Drafts never cross
the block boundary. The reference choice, the proposals and the tie rule are the sampler's own
(:meth:`MaskedDiffusionSampler.propose`, :meth:`MaskedDiffusionSampler.select`), so the
equality is by construction, and tests check it token for token.

The official code is not public; this is OUR provably lossless reconstruction of the paper's method
with the plain forward as ``F``. ``adaptive=True`` is ours: after a round that accepted every draft
the chain doubles (up to ``max_draft_length``), otherwise it shrinks to ``accepted + 1``. Also ours: when
the sampler asks for windows (``sampler.logits_window``, on when wrapped), every forward of a block returns
the logits of the columns from the block start on only (:meth:`MaskedDiffusionSampler.window_for`): the
drafts and the reference choices read nothing else, and a verified sequence costs about half a full forward
on a 2-layer model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..core.errors import UnsupportedFamilyError
from ..strategies.base import StrategyConfig
from .sampler import Block, DecodeRun, MaskedDiffusionSampler, StepwiseDecoding

#: why SSD with a block cache refuses Dream (at wrap, and here for a policy installed by hand)
BLOCK_CACHE_NOT_FOR_DREAM = (
    "ssd with a block cache (fast-dllm cache='prefix' or 'dual') is supported for LLaDA-style models only: with "
    "Dream's shifted logits the positions a cached step runs differ from row to row; wrap ssd alone"
)


@dataclass
class SSDConfig(StrategyConfig):
    """Options of self-speculative decoding.

    Attributes:
        draft_length: ``N``, drafted positions verified per round (batch of ``N + 1`` sequences).
        adaptive: [ours] adapt ``N`` to the acceptance of the previous round.
        max_draft_length: upper bound for the adaptive chain.
        max_verify_rows: [ours] at most this many sequences per verification forward over the whole
            batch (each row's chain is shortened to fit, never below its reference step); ``None``
            = no bound. Verification pays while a forward's cost barely grows with its rows (memory-bound
            decoding, small batches); on a compute-bound CPU every extra row costs. A bound of at most the
            batch size leaves no room for drafts in any round, so the block is decoded stepwise (same
            forwards and tokens, no drafting work; ``accepted_per_round`` stays empty).
    """

    strategy_name: ClassVar[str] = "ssd"
    tag_fields: ClassVar[tuple[str, ...]] = ("draft_length",)

    draft_length: int = 4
    adaptive: bool = False
    max_draft_length: int = 8
    max_verify_rows: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.draft_length, int) or self.draft_length < 0:
            raise ValueError(f"draft_length must be a non-negative integer, got {self.draft_length!r}")
        if self.max_draft_length < max(1, self.draft_length):
            raise ValueError("max_draft_length must be >= draft_length and >= 1")
        if self.max_verify_rows is not None and (
            not isinstance(self.max_verify_rows, int)
            or isinstance(self.max_verify_rows, bool)
            or self.max_verify_rows < 1
        ):
            raise ValueError(f"max_verify_rows must be a positive integer or None, got {self.max_verify_rows!r}")


class SelfSpeculativeDecoding:
    """Block policy replacing stepwise decoding; output identical to it (greedy, one token/step)."""

    def __init__(self, config: SSDConfig | None = None, *, block_cache: bool = False) -> None:
        self.config = config or SSDConfig()
        #: a block-level K/V cache (Fast-dLLM's prefix / dual cache) serves the model: every block starts
        #: with the reference's own block-start forward (which refreshes the cache) for all rows, and
        #: verification batches name the row each node continues (``DecodeStep.cache_rows``)
        self.block_cache = block_cache
        self._carry: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._carry_run: int | None = None
        self._counted_run: int | None = None
        self.reference_forwards = 0  # forwards stepwise decoding runs for the last run (one per step)
        self.verification_rows = 0  # sequences the last run pushed through verification forwards

    @staticmethod
    def check(sampler: MaskedDiffusionSampler, run: DecodeRun) -> None:
        cfg = run.config
        problems = []
        if cfg.temperature != 0:
            problems.append("temperature must be 0 (SSD is lossless for greedy decoding only)")
        if cfg.schedule != "linear" or cfg.steps != cfg.gen_length:
            problems.append("the reference must commit one token per step (schedule='linear', steps == gen_length)")
        if sampler.family == "llada" and cfg.remasking != "low_confidence":
            problems.append("LLaDA remasking must be 'low_confidence'")
        if sampler.family == "dream" and (cfg.alg == "origin" or cfg.alg_temp):
            problems.append("Dream alg must be a deterministic confidence order (not 'origin', no alg_temp)")
        if problems:
            raise ValueError("ssd: " + "; ".join(problems))

    def decode_block(self, sampler: MaskedDiffusionSampler, run: DecodeRun, block: Block) -> None:
        """Decode one block for all rows in lockstep: per round, one batched forward verifies the
        chains of every row that is still inside the block (rows accept different lengths). The
        proposals, the reference choices and the chains of all rows are computed as batched tensor
        operations (one ``propose`` / ``select`` call per round for the drafts and one for the
        verified nodes), as stepwise decoding does for its batch."""
        self.check(sampler, run)
        if self.block_cache and sampler.shifted_logits:
            raise UnsupportedFamilyError(BLOCK_CACHE_NOT_FOR_DREAM)
        if self._counted_run != run.run_id:
            self._counted_run, self.reference_forwards, self.verification_rows = run.run_id, 0, 0
        self.reference_forwards += block.steps
        if self._carry_run != run.run_id or self.block_cache:  # a cache starts every block with a refresh
            self._carry, self._carry_run = {}, run.run_id
        batch, length = run.x.shape
        budget = self.config.max_verify_rows
        if budget is not None and budget <= batch:
            # every row keeps exactly its reference step each round (rows advance together, so the budget
            # never frees a draft): that is stepwise decoding, which runs the same forwards with less work
            StepwiseDecoding().decode_block(sampler, run, block)
            return
        in_block = torch.arange(length, device=run.x.device) < block.end
        states = run.x.clone()
        # the logits of the block's columns (to the end of the sequence without a cache: a block-completing
        # verification carries them into the next block) when the sampler asks for a window
        columns = sampler.window_for(run, block, to_end=not self.block_cache)
        logits: list[torch.Tensor | None] = []
        for r in range(batch):
            carried = self._carry.pop((block.index, r), None)
            same = carried is not None and torch.equal(carried[0], states[r : r + 1])
            logits.append(self.rewindow(carried[1], carried[2], columns) if same else None)
        steps_left = [block.steps] * batch  # the reference commits exactly one token per step
        draft_length = [self.config.draft_length] * batch
        # (x0, masked confidence, reference choice) at each row's current logits, when a verification
        # already computed them
        proposals: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * batch
        while True:
            open_rows = ((states == sampler.mask_id) & in_block).any(dim=1).tolist()
            steps_left = [left if open_rows[r] else 0 for r, left in enumerate(steps_left)]
            active = [r for r in range(batch) if steps_left[r] > 0]
            if not active:
                break
            need = [r for r in active if logits[r] is None]
            if self.block_cache and need and need != list(range(batch)):
                raise RuntimeError("ssd: with a block cache every row starts the block together")
            if need:  # block start (or after a block-completing commit): the reference's own forward
                fresh = self._forward(sampler, run, block, states[need], self._masks(run, need), columns=columns)
                for j, r in enumerate(need):
                    logits[r], proposals[r] = fresh[j : j + 1], None
            chosen, x0, nodes, lengths = self.draft(
                sampler, run, block, states[active], active, logits, proposals, steps_left, draft_length, columns
            )
            verify = [j for j, r in enumerate(active) if steps_left[r] > 1]
            accepted = [0] * len(active)
            if verify:
                flat_index = [(j, n) for j in verify for n in range(lengths[j])]
                flat = nodes[[j for j, _ in flat_index], [n for _, n in flat_index]]
                row_of = [active[j] for j, _ in flat_index]
                out = self._forward(
                    sampler,
                    run,
                    block,
                    flat,
                    self._masks(run, row_of),
                    rows=tuple(row_of) if self.block_cache else None,
                    verify=True,
                    columns=columns,
                )
                self.verification_rows += flat.shape[0]
                choice_pos, choice_tok, node_x0, node_confidence = self.reference_choices(
                    sampler, run, block, out, flat, columns
                )
                accepted = self.accept(chosen, x0, lengths, verify, choice_pos, choice_tok, len(active))
                first, positions = 0, choice_pos.tolist()  # flat index of the row's first node
                for j in verify:
                    at = first + accepted[j]
                    logits[active[j]] = out[at : at + 1]
                    proposals[active[j]] = (node_x0[at], node_confidence[at], positions[at])
                    first += lengths[j]
            states[active] = nodes[torch.arange(len(active)), torch.tensor(accepted)]
            for j, r in enumerate(active):
                if steps_left[r] <= 1:  # s_0 completes the row's steps: the next forward is the next block's
                    logits[r], proposals[r] = None, None
                steps_left[r] -= 1 + accepted[j]
                run.record.steps += 1
                run.record.committed_tokens += 1 + accepted[j]
                run.record.accepted_per_round.append(1 + accepted[j])
                n = lengths[j] - 1
                if self.config.adaptive and n > 0:
                    draft_length[r] = (
                        min(self.config.max_draft_length, 2 * max(1, draft_length[r]))
                        if accepted[j] == n
                        else max(1, accepted[j] + 1)
                    )
            run.step_index += 1
        run.x = states
        for r in range(batch):
            if logits[r] is not None:
                self._carry[(block.index + 1, r)] = (states[r : r + 1].clone(), logits[r], columns)

    @staticmethod
    def rewindow(logits, columns, new_columns):
        """Carried logits (over ``columns``) cut to the next block's window (``None``: every column)."""
        if columns is None or new_columns is None:
            if columns != new_columns:
                raise RuntimeError("ssd: the sampler's logits window changed within a run")
            return logits
        return logits[:, new_columns[0] - columns[0] : new_columns[1] - columns[0]]

    @staticmethod
    def accept(chosen, x0, lengths, verify, choice_pos, choice_tok, n_active) -> list[int]:
        """Accepted drafts per active row: while the reference's choice at node ``n`` (flat, in ``verify``
        row order) equals draft ``n + 1``; one set of tensor operations for all rows."""
        accepted = [0] * n_active
        width = chosen.shape[1]
        if width == 1:
            return accepted
        rows = torch.tensor(verify, device=chosen.device)
        lens = torch.tensor([lengths[j] for j in verify], device=chosen.device)
        steps = torch.arange(width - 1, device=chosen.device)
        index = ((lens.cumsum(0) - lens)[:, None] + steps[None, :]).clamp(max=choice_pos.shape[0] - 1)
        drafted_pos = chosen[rows, 1:]
        drafted_tok = x0[rows].gather(1, drafted_pos)
        match = (choice_pos[index] == drafted_pos) & (choice_tok[index] == drafted_tok) & (steps < lens[:, None] - 1)
        for j, count in zip(verify, match.long().cumprod(dim=1).sum(dim=1).tolist()):
            accepted[j] = count
        return accepted

    @staticmethod
    def _masks(run, rows):
        return None if run.attention_mask is None else run.attention_mask[rows]

    def draft(self, sampler, run, block, states, active, logits, proposals, steps_left, draft_length, columns=None):
        """For every active row at once: the reference's choice ``(p*, v*)`` and the drafted chain.

        Returns ``chosen`` ``[A, C]`` positions (first the reference's choice, then the drafts by
        confidence), ``x0`` ``[A, L]`` proposed tokens, ``nodes`` ``[A, C, L]`` with node ``j`` = the
        state with ``chosen[:, :j+1]`` written, and each row's chain length (nodes used)."""
        masked = states == sampler.mask_id
        candidates = masked & (torch.arange(states.shape[1], device=states.device) < block.end)
        fresh = [j for j, r in enumerate(active) if proposals[r] is None]
        if not fresh:  # the verification computed all of it for the accepted nodes (same logits, same rule)
            x0 = torch.stack([proposals[r][0] for r in active])
            confidence = torch.stack([proposals[r][1] for r in active])
            first = torch.tensor([proposals[r][2] for r in active], device=states.device)
        elif len(fresh) == len(active):
            x0, confidence = sampler.propose(
                torch.cat([logits[r] for r in active], dim=0), masked, run, columns=columns
            )
            confidence = torch.where(candidates, confidence, float("-inf"))
        else:
            known = next(proposals[r][1] for r in active if proposals[r] is not None)
            x0 = torch.stack([proposals[r][0] if proposals[r] is not None else states[j] for j, r in enumerate(active)])
            confidence = torch.stack(
                [proposals[r][1] if proposals[r] is not None else torch.zeros_like(known) for r in active]
            )
            if fresh:
                new_x0, new_confidence = sampler.propose(
                    torch.cat([logits[active[j]] for j in fresh], dim=0), masked[fresh], run, columns=columns
                )
                x0[fresh] = new_x0
                confidence[fresh] = torch.where(candidates[fresh], new_confidence.to(confidence.dtype), float("-inf"))
        if fresh:
            first = self.first_choices(sampler, run, block, confidence, [block.steps - steps_left[r] for r in active])
        counts = candidates.sum(dim=1).tolist()
        lengths = [1 + min(draft_length[r], steps_left[r] - 1, counts[j] - 1) for j, r in enumerate(active)]
        budget = self.config.max_verify_rows
        verified = sum(1 for r in active if steps_left[r] > 1)
        if budget is not None and verified:  # share the budget: every row its reference step, the rest in row order
            base, extra = divmod(max(budget, verified), verified)
            shares = iter(range(verified))
            lengths = [
                min(n, base + (next(shares) < extra)) if steps_left[r] > 1 else n for n, r in zip(lengths, active)
            ]
        width = max(lengths)
        chosen = first[:, None]
        if width > 1:
            ranked = torch.sort(confidence, dim=1, descending=True, stable=True).indices
            rest = ranked[ranked != first[:, None]].view(len(active), -1)
            chosen = torch.cat([chosen, rest[:, : width - 1]], dim=1)
        written = torch.ones(width, width, dtype=torch.bool, device=states.device).tril()
        write = torch.zeros(len(active), width, states.shape[1], dtype=torch.bool, device=states.device)
        write.scatter_(2, chosen[:, None, :].expand(-1, width, -1), written[None].expand(len(active), -1, -1))
        nodes = torch.where(write, x0[:, None, :], states[:, None, :])
        return chosen, x0, nodes, lengths

    @staticmethod
    def first_choices(sampler, run, block, confidence, at):
        """The reference's choice per row at its step ``at`` within the block (the columns ``torch.topk``
        sees differ at a block's first step)."""
        first = torch.empty(confidence.shape[0], dtype=torch.long, device=confidence.device)
        for starting in (True, False):
            group = [j for j, i in enumerate(at) if (i == 0) == starting]
            if group:
                bounds = sampler.selection_bounds(run, block, 0 if starting else 1)
                one = torch.ones(len(group), dtype=torch.long, device=confidence.device)
                first[group] = sampler.select(confidence[group], one, run, bounds).long().argmax(dim=1)
        return first

    def reference_choices(self, sampler, run, block, node_logits, nodes, columns=None):
        """The stepwise reference's next (position, token) at every verified node (never a block start),
        in one batched ``propose`` / ``select``. Nodes without a candidate (a chain's last node may
        complete the block) get an arbitrary choice that is never compared."""
        masked = nodes == sampler.mask_id
        candidates = masked & (torch.arange(nodes.shape[1], device=nodes.device) < block.end)
        x0, confidence = sampler.propose(node_logits, masked, run, columns=columns)
        confidence = torch.where(candidates, confidence, float("-inf"))
        live = candidates.any(dim=1)
        positions = torch.zeros(nodes.shape[0], dtype=torch.long, device=nodes.device)
        if bool(live.any()):
            one = torch.ones(int(live.sum()), dtype=torch.long, device=nodes.device)
            picked = sampler.select(confidence[live], one, run, sampler.selection_bounds(run, block, 1))
            positions[live] = picked.long().argmax(dim=1)
        return positions, x0.gather(1, positions[:, None])[:, 0], x0, confidence

    def _forward(self, sampler, run, block, batch, mask, *, rows=None, verify=False, columns=None):
        """One batched forward over exactly the sequences ``batch`` (counted as one NFE). Its batch size
        changes from round to round (rows finish, chains shorten), which is why the engine strategy declares
        ``variable_input_shapes``. A verification forward is a later step of the block (``step_in_block``
        1), never its first; ``rows`` names the run row each sequence continues, for a block cache."""
        if verify:
            step = run.make_step(sampler, block, 1, purpose="verify", cache_rows=rows)
        else:
            step = run.make_step(sampler, block, 0, purpose="step")
        return sampler.forward_logits(run, batch, step, mask, columns=columns)
