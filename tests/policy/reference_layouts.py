"""Policies with the layouts of Diffusion Policy's reference modules, written here (not imported) so
that the duck-typed adapters are tested on classes diffaccel has never seen by name."""

import math

import torch
from diffusers import DDPMScheduler
from torch import nn


def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    args = t.float().reshape(-1)[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], -1)


class RefTransformerForDiffusion(nn.Module):
    """`TransformerForDiffusion` layout: time + obs memory tokens, causal pre-norm decoder."""

    def __init__(self, action_dim=2, obs_dim=4, horizon=8, n_obs=2, n_emb=16, n_layer=2):
        super().__init__()
        self.n_emb = n_emb
        self.input_emb = nn.Linear(action_dim, n_emb)
        self.pos_emb = nn.Parameter(torch.randn(1, horizon, n_emb) * 0.02)
        self.cond_obs_emb = nn.Linear(obs_dim, n_emb)
        self.encoder = nn.Sequential(nn.Linear(n_emb, 4 * n_emb), nn.Mish(), nn.Linear(4 * n_emb, n_emb))
        layer = nn.TransformerDecoderLayer(
            n_emb, 2, 4 * n_emb, 0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, n_layer)
        self.register_buffer("mask", torch.triu(torch.full((horizon, horizon), float("-inf")), 1))
        self.ln_f = nn.LayerNorm(n_emb)
        self.head = nn.Linear(n_emb, action_dim)

    def forward(self, sample, timestep, cond):
        t = torch.as_tensor(timestep).reshape(-1).expand(sample.shape[0])
        memory = torch.cat([_time_embedding(t, self.n_emb)[:, None], self.cond_obs_emb(cond)], 1)
        x = self.decoder(tgt=self.input_emb(sample) + self.pos_emb, memory=self.encoder(memory), tgt_mask=self.mask)
        return self.head(self.ln_f(x))


class ConditionalResidualBlock1D(nn.Module):
    """FiLM-conditioned residual block of `ConditionalUnet1D`."""

    def __init__(self, cin, cout, cond_dim):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1), nn.GroupNorm(2, cout), nn.Mish()),
                nn.Sequential(nn.Conv1d(cout, cout, 3, padding=1), nn.GroupNorm(2, cout), nn.Mish()),
            ]
        )
        self.cond_encoder = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.residual_conv = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, cond):
        scale, bias = self.cond_encoder(cond).unsqueeze(-1).chunk(2, 1)
        out = self.blocks[1](scale * self.blocks[0](x) + bias)
        return out + self.residual_conv(x)


class ConditionalUnet1D(nn.Module):
    """`ConditionalUnet1D` layout: down / mid / up module lists of conditional residual blocks."""

    def __init__(self, input_dim=2, global_cond_dim=8, dims=(8, 16), dsed=8):
        super().__init__()
        self.dsed = dsed
        self.step_encoder = nn.Sequential(nn.Linear(dsed, 2 * dsed), nn.Mish(), nn.Linear(2 * dsed, dsed))
        cond_dim = dsed + global_cond_dim
        all_dims = [input_dim, *dims]
        in_out = list(zip(all_dims[:-1], all_dims[1:]))
        self.down_modules = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        ConditionalResidualBlock1D(i, o, cond_dim),
                        ConditionalResidualBlock1D(o, o, cond_dim),
                        nn.Conv1d(o, o, 3, 2, 1) if k < len(in_out) - 1 else nn.Identity(),
                    ]
                )
                for k, (i, o) in enumerate(in_out)
            ]
        )
        self.mid_modules = nn.ModuleList([ConditionalResidualBlock1D(dims[-1], dims[-1], cond_dim) for _ in range(2)])
        self.up_modules = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        ConditionalResidualBlock1D(2 * i, o, cond_dim),
                        ConditionalResidualBlock1D(o, o, cond_dim),
                        nn.ConvTranspose1d(o, o, 4, 2, 1),
                    ]
                )
                for o, i in reversed(in_out[1:])
            ]
        )
        self.final_conv = nn.Conv1d(dims[0], input_dim, 1)

    def forward(self, sample, timestep, global_cond=None):
        x = sample.moveaxis(-1, -2)
        t = torch.as_tensor(timestep).reshape(-1).expand(sample.shape[0])
        cond = torch.cat([self.step_encoder(_time_embedding(t, self.dsed)), global_cond], -1)
        skips = []
        for res1, res2, down in self.down_modules:
            x = res2(res1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for mid in self.mid_modules:
            x = mid(x, cond)
        for res1, res2, up in self.up_modules:
            x = up(res2(res1(torch.cat([x, skips.pop()], 1), cond), cond))
        return self.final_conv(x).moveaxis(-1, -2)


class RefPolicy(nn.Module):
    """The reference policies' sampling loop around a noise predictor `model`."""

    def __init__(self, model, obs_as_global=False, horizon=8, action_dim=2):
        super().__init__()
        self.model = model
        self.noise_scheduler = DDPMScheduler(100, beta_schedule="squaredcos_cap_v2", clip_sample=True)
        self.obs_as_global, self.horizon, self.action_dim = obs_as_global, horizon, action_dim

    @torch.no_grad()
    def predict_action(self, obs_dict, generator=None, num_inference_steps=None):
        obs = obs_dict["obs"]
        cond = obs.flatten(1) if self.obs_as_global else obs
        traj = torch.randn(obs.shape[0], self.horizon, self.action_dim, generator=generator)
        self.noise_scheduler.set_timesteps(num_inference_steps or 100)
        for t in self.noise_scheduler.timesteps:
            out = self.model(traj, t, cond)
            traj = self.noise_scheduler.step(out, t, traj, generator=generator).prev_sample
        return {"action": traj[:, 1:5], "action_pred": traj}


def reference_transformer_policy(seed=0):
    torch.manual_seed(seed)
    return RefPolicy(RefTransformerForDiffusion()).eval()


def reference_unet_policy(seed=0):
    torch.manual_seed(seed)
    return RefPolicy(ConditionalUnet1D(), obs_as_global=True).eval()
