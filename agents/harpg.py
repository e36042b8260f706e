"""(N)-HARPG: Hessian-aided recursive policy gradient (Fatkhullin, Barakat, Kireeva, He,
ICML 2023, Algorithm 2; STORMHess_optimizer.py and algos STORMHess of their code).

1. Sample tau_t at theta_t, g_t = grad Phi(tau_t, theta_t).
2. For t >= 1: q_t ~ U[0, 1], theta^_t = q_t theta_t + (1 - q_t) theta_{t-1}; a fresh batch tau^_t
   of `hessian_batch_steps` at theta^_t; the second-order correction
       v_t = B(tau^_t, theta^_t) (theta_t - theta_{t-1}),   B = grad^2 Phi + grad Phi grad log p^T
   (a Hessian-vector product, rlcore.agent.policy_gradient; `likelihood_term` picks the scaling).
3. Recursive momentum: d_t = (1 - eta_t)(d_{t-1} + v_t) + eta_t g_t,   d_0 = g_0.
4. N-HARPG: theta_{t+1} = theta_t + gamma_t d_t / ||d_t||;  HARPG: theta_t + gamma_t d_t.
Schedules: eta_t = eta_0 2 / (t + 2); gamma_t = gamma_0 2 / (t + 2) normalised,
gamma_0 (2 / (t + 2))^(1/2) not.
"""
from __future__ import annotations

import torch

from rlcore.agent.policy_gradient import PolicyGradientAgent, Sampler
from rlcore.registry import register_agent


@register_agent("harpg")
class HARPG(PolicyGradientAgent):
    normalized = False

    def step_size(self, t: int) -> float:
        if self.normalized:
            return self.cfg.gamma_0 * 2 / (t + 2)
        return self.cfg.gamma_0 * (2 / (t + 2)) ** 0.5

    def momentum(self, t: int) -> float:
        return self.cfg.eta_0 * 2 / (t + 2)

    def iterate(self, sample: Sampler):
        t = self.next_iteration()
        batch = sample(self.cfg.batch_steps)            # at theta_t
        g = self.gradient(batch)
        eta = self.momentum(t)
        metrics = {}
        if t == 0 or eta == 1:
            self.direction.copy_(g)
        else:
            theta, previous = self.theta, self.previous
            q = torch.rand((), device=theta.device)
            between = q * theta + (1 - q) * previous
            self.theta = between
            hessian_batch = sample(self.cfg.hessian_batch_steps)   # at theta^_t
            self.theta = theta
            correction = self.hessian_vector_product(hessian_batch, between, theta - previous)
            self.direction.add_(correction).mul_(1 - eta).add_(eta * g)
            metrics["correction_norm"] = correction.norm()
        norm = self.ascend(self.step_size(t), normalized=self.normalized)
        return {**self.finish(batch, g, norm, self.step_size(t), eta), **metrics}


@register_agent("nharpg")
class NHARPG(HARPG):
    normalized = True
