"""Test-only transcriptions of the published samplers' numerics.

LLaDA: ``generate.py`` of ML-GSAI/LLaDA; Dream: ``_sample`` / ``sample_tokens`` of Dream's
``generation_utils.py``; Fast-dLLM v1: ``get_transfer_index`` and the cached loops of NVlabs/Fast-dLLM
``llada/generate.py``. They follow the original control flow, dtypes and RNG call order (softmax in the
logits' dtype for LLaDA and Dream, float64 for Fast-dLLM; ``torch.topk`` on the tensor the original
passes; global RNG) so that our shared sampler core can be compared with them token for token,
including when confidences tie exactly.
"""

import torch
import torch.nn.functional as F


def ref_add_gumbel_noise(logits, temperature):
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits, dtype=torch.float64)
    return logits.exp() / (-torch.log(noise)) ** temperature


def ref_get_num_transfer_tokens(mask_index, steps):
    mask_num = mask_index.sum(dim=1, keepdim=True)
    base = mask_num // steps
    remainder = mask_num % steps
    out = torch.zeros(mask_num.size(0), steps, dtype=torch.int64) + base
    for i in range(mask_num.size(0)):
        out[i, : remainder[i]] += 1
    return out


@torch.no_grad()
def ref_llada_generate(
    model,
    prompt,
    steps,
    gen_length,
    block_length,
    temperature=0.0,
    cfg_scale=0.0,
    remasking="low_confidence",
    mask_id=14,
    logits_eos_inf=False,
    eos_id=13,
    confidence_eos_eot_inf=False,
    eot_id=None,
):
    x = torch.full((prompt.shape[0], prompt.shape[1] + gen_length), mask_id, dtype=torch.long)
    x[:, : prompt.shape[1]] = prompt.clone()
    prompt_index = x != mask_id
    num_blocks = gen_length // block_length
    steps = steps // num_blocks
    for num_block in range(num_blocks):
        lo = prompt.shape[1] + num_block * block_length
        block_mask_index = x[:, lo : lo + block_length] == mask_id
        num_transfer_tokens = ref_get_num_transfer_tokens(block_mask_index, steps)
        for i in range(steps):
            mask_index = x == mask_id
            if cfg_scale > 0.0:
                un_x = x.clone()
                un_x[prompt_index] = mask_id
                logits = model(torch.cat([x, un_x], dim=0)).logits
                logits, un_logits = torch.chunk(logits, 2, dim=0)
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            else:
                logits = model(x).logits
            if logits_eos_inf:
                logits[:, :, eos_id] = -torch.inf
            logits_with_noise = ref_add_gumbel_noise(logits, temperature)
            x0 = torch.argmax(logits_with_noise, dim=-1)
            if confidence_eos_eot_inf:  # the original's chained assignment: EOS into the noisy logits
                logits_with_noise[:, :, eos_id] = -torch.inf
                logits[:, :, eot_id] = -torch.inf
            if remasking == "low_confidence":
                p = F.softmax(logits, dim=-1)  # in the logits' dtype
                x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
            else:
                x0_p = torch.rand((x0.shape[0], x0.shape[1]))
            x0_p[:, lo + block_length :] = -float("inf")
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -float("inf"))
            transfer_index = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(confidence.shape[0]):
                _, select_index = torch.topk(confidence[j], k=int(num_transfer_tokens[j, i]))
                transfer_index[j, select_index] = True
            x[transfer_index] = x0[transfer_index]
    return x


def ref_sample_tokens(logits, temperature=0.0, margin_confidence=False, neg_entropy=False):
    if temperature > 0:
        logits = logits / temperature
    probs = torch.softmax(logits, dim=-1)  # in the logits' dtype
    if temperature > 0:
        x0 = torch.distributions.Categorical(probs=probs).sample()
        confidence = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if margin_confidence:
        sorted_probs, _ = torch.sort(probs, dim=-1, descending=True)
        confidence = sorted_probs[:, 0] - sorted_probs[:, 1]
    if neg_entropy:
        confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    return confidence, x0


@torch.no_grad()
def ref_dream_sample(
    model,
    input_ids,
    max_new_tokens,
    steps,
    alg,
    temperature=0.0,
    eps=1e-3,
    mask_id=30,
    transfers=None,
    alg_temp=None,
    one_per_step=False,
):
    # one_per_step (not in the original): commit exactly one token per step instead of the timestep counts
    # (our stepwise schedule with steps == max_new_tokens); everything else is the transcription
    x = F.pad(input_ids, (0, max_new_tokens), value=mask_id)
    timesteps = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        mask_index = x == mask_id
        logits = model(x).logits
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        mask_logits = logits[mask_index]
        t, s = timesteps[i], timesteps[i + 1]
        if alg == "origin":
            p_transfer = 1 - s / t if i < steps - 1 else 1
            x0 = torch.zeros_like(x[mask_index], dtype=torch.long) + mask_id
            transfer_index_t_s = torch.rand(*x0.shape) < p_transfer
            _, x0[transfer_index_t_s] = ref_sample_tokens(mask_logits[transfer_index_t_s], temperature=temperature)
            x[mask_index] = x0.clone()
            if transfers is not None:
                transfers.append(int(transfer_index_t_s.sum()))
        else:
            confidence, x0 = ref_sample_tokens(
                mask_logits, temperature, margin_confidence=alg == "topk_margin", neg_entropy=alg == "entropy"
            )
            num_mask_token = mask_index.sum() / mask_index.shape[0]
            number_transfer_tokens = int(num_mask_token * (1 - s / t)) if i < steps - 1 else int(num_mask_token)
            if one_per_step:
                number_transfer_tokens = 1
            full_confidence = torch.full_like(x, -torch.inf, dtype=logits.dtype)
            full_confidence[mask_index] = confidence
            if transfers is not None:
                transfers.append(number_transfer_tokens)
            if number_transfer_tokens > 0:
                if alg_temp is None or alg_temp == 0:
                    _, transfer_index = torch.topk(full_confidence, number_transfer_tokens)
                else:
                    full_confidence = F.softmax(full_confidence / alg_temp, dim=-1)
                    transfer_index = torch.multinomial(full_confidence, num_samples=number_transfer_tokens)
                x_ = torch.zeros_like(x, dtype=torch.long) + mask_id
                x_[mask_index] = x0.clone()
                row_indices = torch.arange(x.size(0)).unsqueeze(1).expand_as(transfer_index)
                x[row_indices, transfer_index] = x_[row_indices, transfer_index]
    return x


def ref_fast_dllm_transfer(logits, mask_index, x, num_transfer_tokens, threshold=None):
    """Fast-dLLM v1 ``get_transfer_index`` at temperature 0 with low-confidence remasking."""
    x0 = torch.argmax(logits, dim=-1)
    p = F.softmax(logits.to(torch.float64), dim=-1)
    x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, -float("inf"))
    transfer_index = torch.zeros_like(x0, dtype=torch.bool)
    if threshold is not None:
        num_transfer_tokens = mask_index.sum(dim=1, keepdim=True)
    for j in range(confidence.shape[0]):
        _, select_index = torch.topk(confidence[j], k=int(num_transfer_tokens[j]))
        transfer_index[j, select_index] = True
        if threshold is not None:
            for k in range(1, int(num_transfer_tokens[j])):
                if confidence[j, select_index[k]] < threshold:
                    transfer_index[j, select_index[k]] = False
    return x0, transfer_index


@torch.no_grad()
def ref_fast_dllm_generate(model, prompt, gen_length, block_length, steps, cache="none", threshold=None, mask_id=14):
    """Fast-dLLM v1 ``generate`` / ``generate_with_prefix_cache`` / ``generate_with_dual_cache`` at
    temperature 0: the commits and the forward count (``nfe``). The caches are replaced by full forwards
    whose logits are sliced to the positions the cached forward returns, which is exact for the commit
    rule whenever the cached logits equal the full ones (one-layer models, or tests of the loop only)."""
    x = torch.full((1, prompt.shape[1] + gen_length), mask_id, dtype=torch.long)
    x[:, : prompt.shape[1]] = prompt.clone()
    num_blocks = gen_length // block_length
    steps = steps // num_blocks
    nfe = 0
    for num_block in range(num_blocks):
        start = prompt.shape[1] + num_block * block_length
        end = start + block_length
        num_transfer_tokens = ref_get_num_transfer_tokens(x[:, start:end] == mask_id, steps)
        if cache == "none":
            i = 0
            while True:
                nfe += 1
                mask_index = x == mask_id
                logits = model(x).logits
                mask_index[:, end:] = 0
                x0, transfer_index = ref_fast_dllm_transfer(
                    logits, mask_index, x, num_transfer_tokens[:, i] if threshold is None else None, threshold
                )
                x[transfer_index] = x0[transfer_index]
                i += 1
                if (x[:, start:end] == mask_id).sum() == 0:
                    break
            continue
        logits = model(x).logits
        mask_index = x == mask_id
        mask_index[:, end:] = 0
        x0, transfer_index = ref_fast_dllm_transfer(
            logits, mask_index, x, num_transfer_tokens[:, 0] if threshold is None else None, threshold
        )
        x[transfer_index] = x0[transfer_index]
        nfe += 1
        i = 1
        hi = x.shape[1] if cache == "prefix" else end
        while True:
            nfe += 1
            mask_index = x[:, start:hi] == mask_id
            mask_index[:, block_length:] = 0
            logits = model(x).logits[:, start:hi]
            x0, transfer_index = ref_fast_dllm_transfer(
                logits, mask_index, x[:, start:hi], num_transfer_tokens[:, i] if threshold is None else None, threshold
            )
            x[:, start:hi][transfer_index] = x0[transfer_index]
            if (x[:, start:end] == mask_id).sum() == 0:
                break
            i += 1
    return x, nfe
