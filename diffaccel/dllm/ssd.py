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
the chain doubles (up to ``max_draft_length``), otherwise it shrinks to ``accepted + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..strategies.base import StrategyConfig
from .commit import commit
from .sampler import Block, DecodeRun, MaskedDiffusionSampler


@dataclass
class SSDConfig(StrategyConfig):
    """Options of self-speculative decoding.

    Attributes:
        draft_length: ``N``, drafted positions verified per round (batch of ``N + 1`` sequences).
        adaptive: [ours] adapt ``N`` to the acceptance of the previous round.
        max_draft_length: upper bound for the adaptive chain.
    """

    strategy_name: ClassVar[str] = "ssd"
    tag_fields: ClassVar[tuple[str, ...]] = ("draft_length",)

    draft_length: int = 4
    adaptive: bool = False
    max_draft_length: int = 8

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.draft_length, int) or self.draft_length < 0:
            raise ValueError(f"draft_length must be a non-negative integer, got {self.draft_length!r}")
        if self.max_draft_length < max(1, self.draft_length):
            raise ValueError("max_draft_length must be >= draft_length and >= 1")


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

    def reference_choice(self, sampler, run, logits, state, block) -> tuple[int, int]:
        """The stepwise reference's next (position, token) at ``state`` (not a block start) with logits
        ``F(state)``."""
        masked = state == sampler.mask_id
        x0, confidence = sampler.propose(logits, masked, run)
        candidates = masked & (torch.arange(state.shape[1], device=state.device) < block.end)
        confidence = torch.where(candidates, confidence, float("-inf"))
        position = self.first_choice(sampler, run, confidence, sampler.selection_bounds(run, block, 1))
        return position, int(x0[0, position])

    @staticmethod
    def first_choice(sampler, run, confidence: torch.Tensor, bounds=None) -> int:
        """The position the stepwise reference commits (one token per step): the sampler's own
        selection with a count of one (over the columns its ``torch.topk`` sees at that step), so ties
        go where the reference puts them."""
        one = torch.ones(1, dtype=torch.long, device=confidence.device)
        return int(sampler.select(confidence, one, run, bounds).nonzero()[0, 1])

    def decode_block(self, sampler: MaskedDiffusionSampler, run: DecodeRun, block: Block) -> None:
        """Decode one block for all rows in lockstep: per round, one batched forward verifies the
        chains of every row that is still inside the block (rows accept different lengths)."""
        self.check(sampler, run)
        if self.block_cache and sampler.shifted_logits:
            raise ValueError(
                "ssd with a block cache is supported for LLaDA-style models only (with Dream's shifted logits "
                "the positions a cached step runs differ from row to row); wrap ssd alone"
            )
        if self._counted_run != run.run_id:
            self._counted_run, self.reference_forwards, self.verification_rows = run.run_id, 0, 0
        self.reference_forwards += block.steps
        if self._carry_run != run.run_id or self.block_cache:  # a cache starts every block with a refresh
            self._carry, self._carry_run = {}, run.run_id
        batch = run.x.shape[0]
        in_block = torch.arange(run.x.shape[1], device=run.x.device) < block.end
        states = [run.x[r : r + 1].clone() for r in range(batch)]
        masks = [None if run.attention_mask is None else run.attention_mask[r : r + 1] for r in range(batch)]
        logits: list[torch.Tensor | None] = []
        for r in range(batch):
            carried = self._carry.pop((block.index, r), None)
            logits.append(carried[1] if carried is not None and torch.equal(carried[0], states[r]) else None)
        steps_left = [block.steps] * batch  # the reference commits exactly one token per step
        draft_length = [self.config.draft_length] * batch
        while True:
            for r in range(batch):
                if steps_left[r] > 0 and not ((states[r] == sampler.mask_id) & in_block).any():
                    steps_left[r] = 0
            active = [r for r in range(batch) if steps_left[r] > 0]
            if not active:
                break
            need = [r for r in active if logits[r] is None]
            if self.block_cache and need and need != list(range(batch)):
                raise RuntimeError("ssd: with a block cache every row starts the block together")
            if need:  # block start (or after a block-completing commit): the reference's own forward
                fresh = self._forward(sampler, run, block, [states[r] for r in need], [masks[r] for r in need])
                for j, r in enumerate(need):
                    logits[r] = fresh[j : j + 1]
            chains = {}
            for r in active:
                masked = states[r] == sampler.mask_id
                candidates = masked & in_block
                x0, confidence = sampler.propose(logits[r], masked, run)
                confidence = torch.where(candidates, confidence, float("-inf"))
                at = block.steps - steps_left[r]  # the reference's step within the block
                first = self.first_choice(sampler, run, confidence, sampler.selection_bounds(run, block, at))
                ranked = torch.sort(confidence, dim=1, descending=True, stable=True).indices[0]
                order = torch.cat([ranked.new_tensor([first]), ranked[ranked != first]])
                chosen = order[: 1 + min(draft_length[r], steps_left[r] - 1, int(candidates.sum()) - 1)]
                nodes = []
                for j in range(chosen.numel()):
                    transfer = torch.zeros_like(masked)
                    transfer[0, chosen[j]] = True
                    nodes.append(commit(nodes[-1] if nodes else states[r], x0, transfer))
                chains[r] = (chosen, x0, nodes)
            verify = [r for r in active if steps_left[r] > 1]
            node_logits = {}
            if verify:
                flat = [node for r in verify for node in chains[r][2]]
                flat_masks = [masks[r] for r in verify for _ in chains[r][2]]
                rows = tuple(r for r in verify for _ in chains[r][2]) if self.block_cache else None
                out = self._forward(sampler, run, block, flat, flat_masks, rows=rows, verify=True)
                self.verification_rows += len(flat)
                offset = 0
                for r in verify:
                    n_nodes = len(chains[r][2])
                    node_logits[r] = out[offset : offset + n_nodes]
                    offset += n_nodes
            for r in active:
                chosen, x0, nodes = chains[r]
                n = len(nodes) - 1
                if r not in node_logits:  # s_0 completes the block: the next forward is the next block's
                    states[r], logits[r], accepted = nodes[0], None, 0
                else:
                    accepted = 0
                    while accepted < n:
                        choice = self.reference_choice(
                            sampler, run, node_logits[r][accepted : accepted + 1], nodes[accepted], block
                        )
                        if choice != (int(chosen[accepted + 1]), int(x0[0, chosen[accepted + 1]])):
                            break
                        accepted += 1
                    states[r], logits[r] = nodes[accepted], node_logits[r][accepted : accepted + 1]
                steps_left[r] -= 1 + accepted
                run.record.steps += 1
                run.record.committed_tokens += 1 + accepted
                run.record.accepted_per_round.append(1 + accepted)
                if self.config.adaptive and n > 0:
                    draft_length[r] = (
                        min(self.config.max_draft_length, 2 * max(1, draft_length[r]))
                        if accepted == n
                        else max(1, accepted + 1)
                    )
            run.step_index += 1
        for r in range(batch):
            run.x[r] = states[r][0]
            if logits[r] is not None:
                self._carry[(block.index + 1, r)] = (states[r].clone(), logits[r])

    def _forward(self, sampler, run, block, sequences, masks, *, rows=None, verify=False):
        """One batched forward over exactly ``sequences`` (counted as one NFE). Its batch size changes
        from round to round (rows finish, chains shorten), which is why the engine strategy declares
        ``variable_input_shapes``. A verification forward is a later step of the block (``step_in_block``
        1), never its first; ``rows`` names the run row each sequence continues, for a block cache."""
        batch = torch.cat(sequences, dim=0)
        mask = None if masks[0] is None else torch.cat(masks, dim=0)
        if verify:
            step = run.make_step(sampler, block, 1, purpose="verify", cache_rows=rows)
        else:
            step = run.make_step(sampler, block, 0, purpose="step")
        return sampler.forward_logits(run, batch, step, mask)
