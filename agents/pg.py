"""Vanilla policy gradient (REINFORCE/GPOMDP with a linear baseline), the baseline of
Fatkhullin et al. (ICML 2023); `sgd` in their run_PG.py:

    g_t = grad Phi(tau_t, theta_t)                          (rlcore.agent.policy_gradient)
    theta_{t+1} = theta_t + gamma_t g_t,    gamma_t = gamma_0 (2 / (t + 2))^(2/3)
"""
from __future__ import annotations

from rlcore.agent.policy_gradient import PolicyGradientAgent, Sampler
from rlcore.registry import register_agent


@register_agent("pg")
class VanillaPG(PolicyGradientAgent):
    def step_size(self, t: int) -> float:
        return self.cfg.gamma_0 * (2 / (t + 2)) ** (2 / 3)

    def iterate(self, sample: Sampler):
        t = self.next_iteration()
        batch = sample(self.cfg.batch_steps)
        g = self.gradient(batch)
        self.direction.copy_(g)
        norm = self.ascend(self.step_size(t), normalized=False)
        return self.finish(batch, g, norm, self.step_size(t))
