"""GCDT: a goal-conditioned decision transformer, as the stitching paper trains it (Ghugare,
Geist, Berseth, Eysenbach, ICLR 2024; the authors' model.py and train_dt.py, cfgs/dt.yaml).

A context of C = 5 steps is the token sequence (g, s_1, a_1, g, s_2, a_2, ...): each of goal,
state and action embedded by a linear layer, plus a learned embedding of the position in the
context; 3 pre-LayerNorm blocks (causal self-attention, 1 head, then a 4x GELU MLP), width 128,
dropout 0.1; a final LayerNorm, and a_t = tanh(W h) read from the token of s_t, which sees the
goal and the states and actions before it but not a_t. Loss: mean squared error to the data's
actions over the context. AdamW (lr 1e-3, weight decay 1e-4) with a linear warm-up over 1,000
updates, gradient norm clipped at 0.25, batch 256.

Contexts come from rlcore.data.goals.GoalSampler.sample_contexts: a window of one trajectory and a
goal after it, or with `data.augment=temporal` a window stitched from two trajectories that
meet in a K-means cluster and a goal on the second, the paper's augmentation.
Acting keeps each episode's last C states and actions: at step t < C the context is the t + 1
steps so far, then the last C, as the authors evaluate (the current action's slot is zero; the
state token that predicts it does not attend to it).
"""
from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn

from rlcore.agent import apply_gradients, clip_grad_norm_per_seed, seed_mean
from rlcore.agent.goal import GoalAgent
from rlcore.agent.nets import EnsembleLayerNorm, EnsembleLinear
from rlcore.registry import register_agent
from rlcore.schema import count, fraction, number, positive


class CausalBlock(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)) (model.py's Block), one copy per seed."""

    def __init__(self, width: int, heads: int, dropout: float, seeds: int):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = EnsembleLayerNorm(width, seeds), EnsembleLayerNorm(width, seeds)
        self.q, self.k, self.v, self.proj = (EnsembleLinear(width, width, seeds) for _ in range(4))
        self.mlp_in, self.mlp_out = EnsembleLinear(width, 4 * width, seeds), EnsembleLinear(4 * width, width, seeds)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:        # [S, B, L, W]
        S, B, L, W = x.shape
        H, D = self.heads, W // self.heads
        h = self.ln1(x.reshape(S, B * L, W))

        def split(y):                                           # -> [S * B, H, L, D]
            return y.reshape(S, B, L, H, D).permute(0, 1, 3, 2, 4).reshape(S * B, H, L, D)

        attn = nn.functional.scaled_dot_product_attention(
            split(self.q(h)), split(self.k(h)), split(self.v(h)), is_causal=True,
            dropout_p=self.dropout if self.training else 0.0)
        attn = attn.reshape(S, B, H, L, D).permute(0, 1, 3, 2, 4).reshape(S, B * L, W)
        x = x + self.drop(self.proj(attn)).reshape(S, B, L, W)
        h = self.mlp_out(nn.functional.gelu(self.mlp_in(self.ln2(x.reshape(S, B * L, W)))))
        return x + self.drop(h).reshape(S, B, L, W)


class GoalTransformer(nn.Module):
    """model.py's DecisionTransformer with goal tokens, member-batched over seeds."""

    def __init__(self, obs_dim: int, goal_dim: int, action_dim: int, cfg, seeds: int):
        super().__init__()
        W = cfg.embed_dim
        self.position = nn.Parameter(torch.randn(seeds, 1, cfg.context, W))   # nn.Embedding init
        self.embed_goal = EnsembleLinear(goal_dim, W, seeds)
        self.embed_state = EnsembleLinear(obs_dim, W, seeds)
        self.embed_action = EnsembleLinear(action_dim, W, seeds)
        self.blocks = nn.Sequential(*(CausalBlock(W, cfg.heads, cfg.dropout, seeds)
                                      for _ in range(cfg.blocks)))
        self.final_ln = EnsembleLayerNorm(W, seeds)
        self.head = EnsembleLinear(W, action_dim, seeds)

    def forward(self, states, actions, goals) -> torch.Tensor:
        """[S, B, T, ...] each (T <= C) -> predicted actions [S, B, T, A]."""
        S, B, T, _ = states.shape

        def embed(layer, x):
            return layer(x.reshape(S, B * T, -1)).reshape(S, B, T, -1) + self.position[:, :, :T]

        tokens = torch.stack([embed(self.embed_goal, goals), embed(self.embed_state, states),
                              embed(self.embed_action, actions)], dim=3)        # [S, B, T, 3, W]
        h = self.blocks(tokens.reshape(S, B, 3 * T, -1))
        h = self.final_ln(h.reshape(S, B * 3 * T, -1)).reshape(S, B, T, 3, -1)[:, :, :, 1]
        return torch.tanh(self.head(h.reshape(S, B * T, -1))).reshape(S, B, T, -1)


@register_agent("gcdt")
class GCDT(GoalAgent):
    config_schema = {**GoalAgent.config_schema, "context": count(1), "blocks": count(1),
                     "embed_dim": count(1), "heads": count(1), "dropout": fraction(high_open=True),
                     "weight_decay": number(0), "warmup_steps": count(0), "grad_clip": positive()}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        if cfg.embed_dim % cfg.heads:
            raise ValueError(f"agent.embed_dim={cfg.embed_dim} must be a multiple of agent.heads={cfg.heads}")
        self.model = GoalTransformer(spec.obs_dim, spec.goal_dim, spec.action_dim, cfg, spec.seeds)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.register_buffer("step", torch.zeros(()))
        self.history: dict[str, list[torch.Tensor]] = {}

    def sample(self, buffer, batch_size: int) -> TensorDict:
        batch = self.goal_sampler(buffer).sample_contexts(self.spec.seeds * batch_size, self.cfg.context)
        return batch.reshape(self.spec.seeds, batch_size)

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        """L = mean (pi(g, s_1..t, a_<t) - a_t)^2 over the context (F.mse_loss)."""
        states, actions = batch["observations"], batch["actions"]
        goals = batch["goals"][:, :, None].expand(*states.shape[:3], -1)
        loss = seed_mean((self.model(states, actions, goals) - actions).pow(2))
        params = list(self.model.parameters())
        grads, norm = clip_grad_norm_per_seed(torch.autograd.grad(loss.sum(), params),
                                              self.cfg.grad_clip, self.spec.seeds)
        self.step += 1
        warmup = torch.clamp(self.step / max(self.cfg.warmup_steps, 1), max=1.0)   # LambdaLR
        apply_gradients(params, grads, self.opt, warmup)
        return {"action_loss": loss.detach(), "grad_norm": norm.detach()}

    # -- acting on each episode's history ------------------------------------------------------
    def begin_episodes(self) -> None:
        self.history = {"states": [], "actions": [], "goals": []}

    def policy_action(self, obs, goals, deterministic: bool) -> torch.Tensor:
        self.model.eval()
        if not self.history:
            self.begin_episodes()
        keep = self.cfg.context - 1
        h = {k: v[-keep:] if keep else [] for k, v in self.history.items()}
        h["states"].append(obs)
        h["goals"].append(goals)
        h["actions"].append(torch.zeros(*obs.shape[:-1], self.spec.action_dim, device=obs.device))
        stacked = {k: torch.stack(v, dim=-2) for k, v in h.items()}             # [S, N, T, d]
        action = self.model(stacked["states"], stacked["actions"], stacked["goals"])[..., -1, :]
        h["actions"][-1] = action
        self.history = h
        self.model.train()                       # updates run with dropout
        return action
