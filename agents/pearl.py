"""PEARL: Zero-shot Cross-task Preference Alignment and Robust Reward Learning (Liu, Du, Bai, Lyu,
Li, ICML 2024; arXiv 2306.03615). There is no public code; every choice the paper leaves open is
named here and configurable.

1. Cross-task Preference Alignment (CPA, section 4.1) makes the target task's labels from a
   source task's, through a Gromov-Wasserstein coupling of the two tasks' segments. It is a data
   step, rlcore.data.transfer, chosen by the env: `env.source=<a Meta-World env>` (its module docstring
   gives the equations and choices). Any preference agent learns from transferred labels; `pearl`
   is the paper's pairing of them with step 2.
2. Robust Reward Learning (RRL, section 4.2): the reward is a Gaussian,
   r(s, a) ~ N(mu_psi(s, a), sigma_psi(s, a)^2), sampled with the reparameterisation trick,
   r = mu + sigma * eps. The Bradley-Terry likelihood is taken on the segments' summed sampled
   rewards against the (soft) transferred labels,
       L_BT = CE(z, sigmoid(sum_t r(s2_t, a2_t) - sum_t r(s1_t, a1_t))),
   plus a regulariser that pulls the uncertainty toward a set value sigma_0,
       L_sigma = mean_t KL(N(mu, sigma^2) || N(mu, sigma_0^2))
               = mean_t [log(sigma_0 / sigma) + sigma^2 / (2 sigma_0^2) - 1/2],
   L = L_BT + `sigma_weight` * L_sigma. The sampled rewards make a confident logit costly where
   the labels disagree, so noisy transferred labels pull the model less than a point estimate.
3. Downstream: IQL on the reward mean mu_psi (the engine's IQL through P-IQL's pipeline,
   agents/piql.py: the reward model trains for `reward_steps`, IQL beside it and after).

Choices the paper leaves open (stated, configurable): mu is P-IQL's reward network unchanged and
sigma = softplus(g(s, a)) + 1e-4 comes from a second network of the same shape (one network with
two outputs shares mu's last bias with sigma's: that bias has an exactly zero Bradley-Terry
gradient, and Adam turns the float noise of that zero into lr-sized random steps); sigma_0 = `sigma` (0.1 per step: a 64-step segment's summed noise
then has std 0.8, one logit unit); `sigma_weight` 1; one noise sample per step and update; the
downstream reward is the mean, not a sample. The paper's reward model was a (robust) Preference
Transformer; here it is P-IQL's MLP, so that PEARL and the Bradley-Terry baseline differ only in
RRL.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict
from torch.nn import functional as F

from rlcore.agent import Spec, apply_gradients, seed_mean
from rlcore.agents.piql import PIQL
from rlcore.agent.nets import MLP
from rlcore.registry import register_agent
from rlcore.schema import number, positive


def rrl_loss(mu: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor, labels: torch.Tensor,
             sigma_0: float, sigma_weight: float) -> tuple[torch.Tensor, dict]:
    """RRL's loss per seed [S] for rewards [S, B, 2, L] and labels [S, B] (1: the second segment
    preferred): Bradley-Terry on summed reparameterised samples, plus the KL pull of sigma to
    sigma_0 (the module docstring)."""
    returns = (mu + sigma * eps).sum(-1)
    logits = returns[..., 1] - returns[..., 0]
    bt = seed_mean(F.binary_cross_entropy_with_logits(logits, labels, reduction="none"))
    kl = torch.log(sigma_0 / sigma) + sigma.pow(2) / (2 * sigma_0 ** 2) - 0.5
    kl = kl.flatten(1).mean(1)
    accuracy = seed_mean(((logits > 0) == (labels > 0.5)).float())
    return bt + sigma_weight * kl, {"reward_loss": bt.detach(), "sigma_kl": kl.detach(),
                                    "reward_sigma": sigma.detach().flatten(1).mean(1),
                                    "reward_accuracy": accuracy}


@register_agent("pearl")
class PEARL(PIQL):
    config_schema = {**PIQL.config_schema, "sigma": positive(), "sigma_weight": number(0)}

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)                 # reward_model: mu_psi, IQL's reward
        self.sigma_model = MLP(spec.obs_dim + spec.action_dim, cfg.hidden, 1, seeds=spec.seeds,
                               squeeze=True, orthogonal_init=1.0)
        self.reward_opt = torch.optim.Adam([*self.reward_model.parameters(),
                                            *self.sigma_model.parameters()], lr=cfg.reward_lr)

    def gaussian(self, batch: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
        """mu_psi(s, a) and sigma_psi(s, a) = softplus(g(s, a)) + 1e-4."""
        x = torch.cat([batch["observations"], batch["actions"]], -1)
        return self.reward_model(x), F.softplus(self.sigma_model(x)) + 1e-4

    def reward_step(self, batch: TensorDict) -> tuple[torch.Tensor, dict]:
        """One RRL step (eq. above); the mean rewards it predicted (detached)."""
        mu, sigma = self.gaussian(batch)
        loss, metrics = rrl_loss(mu, sigma, torch.randn_like(mu), batch["labels"],
                                 self.cfg.sigma, self.cfg.sigma_weight)
        params = [*self.reward_model.parameters(), *self.sigma_model.parameters()]
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.reward_opt)
        return mu.detach(), metrics
