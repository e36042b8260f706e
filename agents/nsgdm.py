"""Normalised policy gradient with momentum (Cutkosky and Mehta's normalised SGD with momentum
on the GPOMDP estimate), the normalised baseline of Fatkhullin et al. (ICML 2023):

    d_t = (1 - eta_t) d_{t-1} + eta_t g_t,   d_0 = g_0
    theta_{t+1} = theta_t + gamma_t d_t / ||d_t||
    gamma_t = 2 gamma_0 / (t + 2),   eta_t = eta_0 (2 / (t + 2))^(2/3)      (SGDM_optimizer.py)

N-PG-IGT is this plus the extrapolated sampling point, so the two differ by IGT alone.
`momentum: false` is what the authors' run_PG.py ran under the name `nsgdm` (its README calls
it normalised SGD: the optimizer's moving average is off): d_t = g_t and
gamma_t = gamma_0 (2 / (t + 2))^(2/3).
"""
from __future__ import annotations

from rlcore.agent.policy_gradient import PolicyGradientAgent, Sampler
from rlcore.registry import register_agent


@register_agent("nsgdm")
class NormalizedMomentumPG(PolicyGradientAgent):
    def step_size(self, t: int) -> float:
        if self.cfg.momentum:
            return 2 * self.cfg.gamma_0 / (t + 2)
        return self.cfg.gamma_0 * (2 / (t + 2)) ** (2 / 3)

    def momentum(self, t: int) -> float:
        return self.cfg.eta_0 * (2 / (t + 2)) ** (2 / 3) if self.cfg.momentum else 1.0

    def iterate(self, sample: Sampler):
        t = self.next_iteration()
        batch = sample(self.cfg.batch_steps)
        g = self.gradient(batch)
        eta = self.momentum(t)
        self.average_in(g, eta, t)
        norm = self.ascend(self.step_size(t), normalized=True)
        return self.finish(batch, g, norm, self.step_size(t), eta)
