"""N-PG-IGT: normalised policy gradient with implicit gradient transport (Fatkhullin, Barakat,
Kireeva, He, ICML 2023, Algorithm 1; NIGT_optimizer.py and algos NIGT of their code).

1. Extrapolate: theta~_t = theta_t + ((1 - eta) / eta) (theta_t - theta_{t-1}), with eta the
   *previous* iteration's eta_{t-1} (the authors' code: b = 1/eta, p = b theta_t + (1-b) theta_{t-1},
   computed before eta is updated; b = 1 at the first iteration).
2. Sample tau_t at theta~_t, g_t = grad Phi(tau_t, theta~_t): the gradient is transported to
   theta_t implicitly, without a Hessian.
3. Momentum: d_t = (1 - eta_t) d_{t-1} + eta_t g_t,   d_0 = g_0.
4. Normalised step: theta_{t+1} = theta_t + gamma_t d_t / ||d_t||, the norm over all parameters.
Schedules: gamma_t = gamma_0 2 / (t + 2),   eta_t = eta_0 (2 / (t + 2))^(4/5).
"""
from __future__ import annotations

from rlcore.agent.policy_gradient import PolicyGradientAgent, Sampler
from rlcore.registry import register_agent


@register_agent("npg_igt")
class NPGIGT(PolicyGradientAgent):
    def step_size(self, t: int) -> float:
        return self.cfg.gamma_0 * 2 / (t + 2)

    def momentum(self, t: int) -> float:
        return self.cfg.eta_0 * (2 / (t + 2)) ** (4 / 5)

    def extrapolation_point(self):
        """theta_t + ((1 - eta_{t-1}) / eta_{t-1}) (theta_t - theta_{t-1}); theta_t at t = 0."""
        theta = self.theta
        if self.previous_eta is None:
            return theta
        b = 1.0 / self.previous_eta
        return b * theta + (1 - b) * self.previous

    def iterate(self, sample: Sampler):
        t = self.next_iteration()
        theta = self.theta
        self.theta = self.extrapolation_point()
        batch = sample(self.cfg.batch_steps)            # at theta~_t
        g = self.gradient(batch)
        self.theta = theta
        eta = self.momentum(t)
        self.average_in(g, eta, t)
        norm = self.ascend(self.step_size(t), normalized=True)
        self.previous_eta = eta
        return self.finish(batch, g, norm, self.step_size(t), eta)
