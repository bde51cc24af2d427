"""A transformer diffusion policy with the layout of Diffusion Policy's `TransformerForDiffusion`
(Chi et al., RSS 2023; official code `real-stanford/diffusion_policy`,
`diffusion_policy/model/diffusion/transformer_for_diffusion.py` and
`policy/diffusion_transformer_lowdim_policy.py`), re-implemented from its description:

* memory = [sinusoidal time token, one `Linear(obs_dim → n_emb)` token per observation step] plus a
  learned position embedding, through the per-token MLP "encoder" (`n_cond_layers = 0`);
* trunk = a causal `nn.TransformerDecoder` (pre-norm, GELU, feed-forward 4·n_emb) over the action
  tokens; each `nn.TransformerDecoderLayer` holds the self-attention, cross-attention and
  feed-forward sub-blocks that BAC caches; a memory mask lets action token t see memory token s
  only when t ≥ s − 1 (`PolicyConfig.causal_attn=False`, the reference's other option, drops both masks);
* head = LayerNorm → Linear(n_emb → action_dim); epsilon prediction with diffusers'
  `DDPMScheduler(100, "squaredcos_cap_v2", clip_sample=True)`, one denoiser call per step.

`DiffusionTransformerPolicy.predict_action` follows the reference: it denoises a horizon-16 chunk
conditioned on the last 2 observations and returns the 8 actions to execute from index To − 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn


@dataclass
class PolicyConfig:
    """Shape of the policy and its denoiser (defaults: the reference low-dim transformer config, narrower)."""

    obs_dim: int = 6
    action_dim: int = 2
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    n_layer: int = 4
    n_head: int = 4
    n_emb: int = 64
    p_drop_emb: float = 0.0
    p_drop_attn: float = 0.01
    num_train_timesteps: int = 100
    # the reference's `causal_attn` (True in its low-dim configs): action token t attends to tokens <= t and to the
    # memory tokens the reference's `memory_mask` allows; False = full attention both ways, as the reference does
    causal_attn: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def sinusoidal_embedding(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """The reference `SinusoidalPosEmb`: [sin(t·f), cos(t·f)] with f = 10000^(−i/(dim/2 − 1))."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=timestep.device) * -(math.log(10000) / (half - 1)))
    args = timestep.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class TransformerDenoiser(nn.Module):
    """The noise predictor: `forward(sample (B, T, Da), timestep, cond (B, To, Do)) → epsilon (B, T, Da)`."""

    def __init__(self, config: PolicyConfig):
        super().__init__()
        c = config
        self.config = c
        self.input_emb = nn.Linear(c.action_dim, c.n_emb)
        self.pos_emb = nn.Parameter(torch.zeros(1, c.horizon, c.n_emb))
        self.drop = nn.Dropout(c.p_drop_emb)
        self.cond_obs_emb = nn.Linear(c.obs_dim, c.n_emb)
        self.cond_pos_emb = nn.Parameter(torch.zeros(1, 1 + c.n_obs_steps, c.n_emb))
        self.encoder = nn.Sequential(nn.Linear(c.n_emb, 4 * c.n_emb), nn.Mish(), nn.Linear(4 * c.n_emb, c.n_emb))
        layer = nn.TransformerDecoderLayer(
            d_model=c.n_emb,
            nhead=c.n_head,
            dim_feedforward=4 * c.n_emb,
            dropout=c.p_drop_attn,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers=c.n_layer)
        t, s = torch.arange(c.horizon)[:, None], torch.arange(1 + c.n_obs_steps)[None, :]
        # boolean masks: True = not allowed; None without causal attention (the reference sets both to None then)
        causal = torch.triu(torch.ones(c.horizon, c.horizon, dtype=torch.bool), 1)
        self.register_buffer("mask", causal if c.causal_attn else None, persistent=False)
        self.register_buffer("memory_mask", ~(t >= s - 1) if c.causal_attn else None, persistent=False)
        self.ln_f = nn.LayerNorm(c.n_emb)
        self.head = nn.Linear(c.n_emb, c.action_dim)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.no_grad()
    def reference_init_(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise as the reference `TransformerForDiffusion._init_weights` does: every Linear weight and
        attention input projection ~ N(0, 0.02), their biases 0, LayerNorm (1, 0), both position embeddings
        ~ N(0, 0.02). The constructor's default init differs (ours): attention input projections keep PyTorch's
        Xavier-uniform init and the position embeddings start at zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 0.02, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.MultiheadAttention):
                module.in_proj_weight.normal_(0.0, 0.02, generator=generator)
                module.in_proj_bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self.pos_emb.normal_(0.0, 0.02, generator=generator)
        self.cond_pos_emb.normal_(0.0, 0.02, generator=generator)

    def optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups as the reference `get_optim_groups`: weight decay on Linear weights and attention input
        projections only; biases, LayerNorm parameters and position embeddings are not decayed."""
        decay = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        decay |= {id(m.in_proj_weight) for m in self.modules() if isinstance(m, nn.MultiheadAttention)}
        params = list(self.parameters())
        return [
            {"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
        ]

    def forward(self, sample: torch.Tensor, timestep, cond: torch.Tensor) -> torch.Tensor:
        c = self.config
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], device=sample.device)
        timestep = timestep.reshape(-1).expand(sample.shape[0]).to(sample.device)
        time_token = sinusoidal_embedding(timestep, c.n_emb).to(sample.dtype)[:, None]
        memory = torch.cat([time_token, self.cond_obs_emb(cond)], dim=1)
        memory = self.encoder(self.drop(memory + self.cond_pos_emb))
        x = self.drop(self.input_emb(sample) + self.pos_emb)
        x = self.decoder(tgt=x, memory=memory, tgt_mask=self.mask, memory_mask=self.memory_mask)
        return self.head(self.ln_f(x))


def make_scheduler(kind: str = "ddpm", num_train_timesteps: int = 100):
    """The reference's schedulers: DDPM (squaredcos_cap_v2, clip_sample, fixed_small, epsilon) or the
    DDIM variant of its UNet workspace (set_alpha_to_one, steps_offset 0)."""
    common = dict(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        prediction_type="epsilon",
    )
    if kind == "ddpm":
        return DDPMScheduler(variance_type="fixed_small", **common)
    if kind == "ddim":
        return DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **common)
    raise ValueError(f"unknown scheduler {kind!r}; choose 'ddpm' or 'ddim'")


class MinMaxNormalizer(nn.Module):
    """The reference `LinearNormalizer` in limits mode: each dimension mapped from [min, max] to [−1, 1]."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        scale = 2.0 / (high - low).clamp_min(1e-4)
        self.register_buffer("scale", scale.float())
        self.register_buffer("offset", (-1.0 - low * scale).float())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset) / self.scale


class DiffusionTransformerPolicy(nn.Module):
    """The policy: normaliser, noise predictor (`.model`) and scheduler (`.noise_scheduler`), as in the reference."""

    def __init__(
        self,
        config: PolicyConfig,
        obs_range: tuple[torch.Tensor, torch.Tensor] | None = None,
        action_range: tuple[torch.Tensor, torch.Tensor] | None = None,
        scheduler: str = "ddpm",
    ):
        super().__init__()
        self.config = config
        self.model = TransformerDenoiser(config)
        self.noise_scheduler = make_scheduler(scheduler, config.num_train_timesteps)
        ones_o, ones_a = torch.ones(config.obs_dim), torch.ones(config.action_dim)
        self.obs_normalizer = MinMaxNormalizer(*(obs_range or (-ones_o, ones_o)))
        self.action_normalizer = MinMaxNormalizer(*(action_range or (-ones_a, ones_a)))
        self.num_inference_steps = config.num_train_timesteps

    def use_scheduler(self, kind: str) -> None:
        """Swap the sampler ("ddpm" or "ddim") without touching the weights."""
        self.noise_scheduler = make_scheduler(kind, self.config.num_train_timesteps)

    @torch.no_grad()
    def predict_action(
        self, obs_dict: dict, generator: torch.Generator | None = None, num_inference_steps: int | None = None
    ) -> dict:
        """`obs_dict["obs"]`: (B, ≥To, obs_dim), the last To rows are used. Returns `"action"`
        (B, n_action_steps, action_dim) to execute and `"action_pred"` (B, horizon, action_dim)."""
        c = self.config
        obs = obs_dict["obs"]
        if obs.ndim != 3 or obs.shape[-1] != c.obs_dim or obs.shape[1] < c.n_obs_steps:
            raise ValueError(f"obs must be (B, >= {c.n_obs_steps}, {c.obs_dim}), got {tuple(obs.shape)}")
        device, dtype = self.pos_device_dtype()
        cond = self.obs_normalizer.normalize(obs[:, -c.n_obs_steps :].to(device, dtype))
        traj = torch.randn(
            (obs.shape[0], c.horizon, c.action_dim),
            generator=generator,
            device=generator.device if generator is not None else device,
        ).to(device, dtype)
        scheduler = self.noise_scheduler
        scheduler.set_timesteps(num_inference_steps or self.num_inference_steps)
        for t in scheduler.timesteps:
            eps = self.model(traj, t, cond)
            traj = scheduler.step(eps, t, traj, generator=generator).prev_sample
        action_pred = self.action_normalizer.unnormalize(traj)
        start = c.n_obs_steps - 1
        return {"action": action_pred[:, start : start + c.n_action_steps], "action_pred": action_pred}

    def pos_device_dtype(self):
        p = self.model.pos_emb
        return p.device, p.dtype

    def compute_loss(self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None):
        """Epsilon-prediction loss of the reference on normalised (obs window, action chunk) pairs."""
        cond = self.obs_normalizer.normalize(obs)
        x0 = self.action_normalizer.normalize(actions)
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, self.config.num_train_timesteps, (x0.shape[0],), generator=generator)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        return torch.nn.functional.mse_loss(self.model(noisy, t, cond), noise)
