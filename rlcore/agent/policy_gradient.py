"""What the policy-gradient agents share (Fatkhullin, Barakat, Kireeva, He, ICML 2023, and the
garage fork their experiments ran on): stochastic MLP policies, garage's linear feature baseline,
the REINFORCE/GPOMDP surrogate, the flat parameter vector the methods step in, and the
Hessian-vector product of (N)-HARPG.

An on-policy agent does not learn from a buffer: each training step is one iteration, and
`iterate(sample)` draws the episodes its method needs, `sample(batch_steps)` at the policy's
current parameters (rlcore.data.episodes), then steps. Every quantity the methods combine
(gradient, momentum, extrapolation, normalisation) lives on the flat vector theta of all policy
parameters, so a norm is over the whole vector, as in the authors' optimizers.

Surrogate (garage's VPG loss, negated for ascent), over the batch's valid timesteps:
    Phi(theta) = 1/n sum_{i,t} log pi_theta(a_it | s_it) A_it,   A_it = sum_k gamma^k r_i,t+k - b(s_it)
with b the linear baseline fitted on the previous iteration's episodes (zero at first) and no
advantage centring (run_PG.py: center_adv=False). Its gradient g = grad Phi is the GPOMDP
estimate scaled by 1/(mean episode length), as in garage.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from rlcore.agent import Agent, Spec
from rlcore.agent.nets import MLP
from rlcore.data.episodes import EpisodeBatch
from rlcore.errors import UserError
from rlcore.schema import choice, count, flag, positive

Sampler = Callable[[int], EpisodeBatch]


class TrainingDiverged(UserError, FloatingPointError):
    """The iterates left the finite numbers: the step size is too large for the task."""

POLICY_GRADIENT_RULES = {"batch_steps": count(1), "gamma_0": positive(), "eta_0": positive(),
                         "init_std": positive(), "max_envs": count(1), "momentum": flag(),
                         "hessian_batch_steps": count(1),
                         "likelihood_term": choice("batch_mean", "trajectory", "authors", "none")}


def garage_init(net: MLP) -> MLP:
    """garage's MLP init: Xavier-uniform weights, zero biases."""
    for layer in net.net:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return net


class GaussianMLPPolicy(nn.Module):
    """garage's GaussianMLPPolicy: a tanh MLP mean and a state-independent learned log-std
    (init log(init_std), floored at log 1e-6)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], init_std: float):
        super().__init__()
        self.mean = garage_init(MLP(obs_dim, hidden, action_dim, activation=nn.Tanh))
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_std)))

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        log_std = self.log_std.clamp_min(math.log(1e-6))
        return torch.distributions.Independent(
            torch.distributions.Normal(self.mean(obs), log_std.exp(), validate_args=False), 1,
            validate_args=False)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a | s)."""
        return self.distribution(obs).log_prob(actions)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        mean = self.mean(obs)
        if deterministic:
            return mean
        return mean + self.log_std.clamp_min(math.log(1e-6)).exp() * torch.randn_like(mean)


class SoftmaxMLPPolicy(nn.Module):
    """A categorical policy: softmax over a tanh MLP's outputs."""

    def __init__(self, obs_dim: int, actions: int, hidden: Sequence[int]):
        super().__init__()
        self.logits = garage_init(MLP(obs_dim, hidden, actions, activation=nn.Tanh))

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Categorical(logits=self.logits(obs), validate_args=False)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.distribution(obs).log_prob(actions)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.logits(obs).argmax(-1) if deterministic else self.distribution(obs).sample()


def discounted_returns(batch: EpisodeBatch, discount: float) -> torch.Tensor:
    """sum_k gamma^k r_{t+k} within each episode [N, T] (0 on padding)."""
    rewards = batch.rewards * batch.mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + discount * running
        out[:, t] = running
    return out


class LinearFeatureBaseline(nn.Module):
    """garage.np.baselines.LinearFeatureBaseline: ridge regression of the discounted return on
    [s, s^2, t/100, (t/100)^2, (t/100)^3, 1] with s clipped to [-10, 10]; the ridge 1e-5 grows
    tenfold (up to 5 tries) while the solution has NaNs. Predicts 0 until first fitted.
    garage solves the regularised normal equations with lstsq; an LU solve gives the same
    solution of that nonsingular system and, unlike LAPACK's lstsq here, the same bits on every
    call (a resumed run repeats the uninterrupted one exactly)."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.register_buffer("coeffs", torch.zeros(2 * obs_dim + 4, dtype=torch.float64))

    @staticmethod
    def features(batch: EpisodeBatch) -> torch.Tensor:
        obs = batch.observations.double().clamp(-10, 10)
        steps = torch.arange(obs.shape[1], device=obs.device, dtype=torch.float64) / 100.0
        steps = steps.expand(obs.shape[0], -1)[..., None]
        return torch.cat([obs, obs ** 2, steps, steps ** 2, steps ** 3, torch.ones_like(steps)], -1)

    def forward(self, batch: EpisodeBatch) -> torch.Tensor:
        return (self.features(batch) @ self.coeffs).float() * batch.mask

    @torch.no_grad()
    def fit(self, batch: EpisodeBatch, returns: torch.Tensor) -> None:
        x = self.features(batch)[batch.mask]
        y = returns.double()[batch.mask]
        gram, target = x.T @ x, x.T @ y
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        reg = 1e-5
        for _ in range(5):
            coeffs, info = torch.linalg.solve_ex(gram + reg * eye, target)
            if int(info) == 0 and not torch.isnan(coeffs).any():
                break
            reg *= 10
        self.coeffs.copy_(coeffs)


class PolicyGradientAgent(Agent):
    """The on-policy agents' base: the policy, its baseline, the iteration counter t (0 at the
    first iteration, as garage's after its first increment), the direction d_t and the previous
    point theta_{t-1}, all saved with a checkpoint."""

    on_policy = True
    multi_seed = False          # one environment stream per process: seeds run as a sweep
    config_schema = POLICY_GRADIENT_RULES

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        if spec.discrete:
            self.policy = SoftmaxMLPPolicy(spec.obs_dim, spec.action_dim, cfg.discrete_hidden)
        else:
            self.policy = GaussianMLPPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, cfg.init_std)
        self.baseline = LinearFeatureBaseline(spec.obs_dim)
        self.shapes = [(name, p.shape) for name, p in self.policy.named_parameters()]
        size = sum(p.numel() for p in self.policy.parameters())
        self.register_buffer("direction", torch.zeros(size))     # d_t
        self.register_buffer("previous", torch.zeros(size))      # theta_{t-1}
        self.iteration = -1
        self.previous_eta: float | None = None

    # -- the parameter vector ------------------------------------------------------------------
    @property
    def theta(self) -> torch.Tensor:
        return nn.utils.parameters_to_vector(self.policy.parameters()).detach()

    @theta.setter
    def theta(self, value: torch.Tensor) -> None:
        with torch.no_grad():
            nn.utils.vector_to_parameters(value, self.policy.parameters())

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for name, shape in self.shapes:
            n = math.prod(shape)
            out[name] = theta[offset:offset + n].view(shape)
            offset += n
        return out

    # -- the surrogate and its derivatives -----------------------------------------------------
    def advantages(self, batch: EpisodeBatch) -> torch.Tensor:
        """A_it = discounted return-to-go - b(s_it): no centring (center_adv=False)."""
        return (discounted_returns(batch, self.cfg.discount) - self.baseline(batch)) * batch.mask

    def surrogate(self, theta: torch.Tensor, batch: EpisodeBatch,
                  advantages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Phi(theta) (module docstring) and log pi(a_it | s_it) [N, T]."""
        logp = functional_call(self.policy, self.unflatten(theta),
                               (batch.observations, batch.actions))
        return (logp * advantages * batch.mask).sum() / batch.mask.sum(), logp

    def gradient(self, batch: EpisodeBatch, theta: torch.Tensor | None = None) -> torch.Tensor:
        """g = grad Phi at theta (default: the current parameters) on `batch`."""
        theta = self.theta if theta is None else theta
        advantages = self.advantages(batch)
        return grad(lambda p: self.surrogate(p, batch, advantages)[0])(theta)

    def hessian_vector_product(self, batch: EpisodeBatch, theta: torch.Tensor,
                               v: torch.Tensor) -> torch.Tensor:
        """B(tau, theta) v = grad^2 Phi v + grad Phi <grad log p(tau | theta), v> (the paper's
        unbiased estimate of grad^2 J v), forward-over-reverse: one jvp of the gradient, never a
        Hessian. The log-likelihood term, `likelihood_term`:
          batch_mean  grad Phi * <grad mean_it log pi(a_it|s_it), v>, the scale of the authors'
                      code (a batch-mean log-probability, not a per-trajectory sum);
          trajectory  1/n sum_i grad Phi_i <grad log p(tau_i), v>, the paper's estimator;
          authors     batch_mean with the sign of STORMHess_optimizer.py, which multiplies the
                      loss gradient by <grad of -mean log pi, v> and so subtracts the term;
          none        grad^2 Phi v alone."""
        advantages = self.advantages(batch)
        mask = batch.mask

        def gradient_and_logp(p):
            return grad(lambda q: self.surrogate(q, batch, advantages), has_aux=True)(p)

        (g, _), (hv, dlogp) = jvp(gradient_and_logp, (theta,), (v,))
        term = self.cfg.likelihood_term
        if term == "none":
            return hv
        if term in ("batch_mean", "authors"):
            slope = (dlogp * mask).sum() / mask.sum()   # <grad mean log pi, v>
            return hv + (slope if term == "batch_mean" else -slope) * g
        per_episode = (dlogp * mask).sum(1, keepdim=True)  # <grad log p(tau_i), v>
        return hv + grad(lambda p: self.surrogate(p, batch, advantages * per_episode)[0])(theta)

    # -- one iteration -------------------------------------------------------------------------
    def iterate(self, sample: Sampler) -> dict[str, torch.Tensor]:
        """One iteration of the method: sample, estimate, step. Returns its metrics."""
        raise NotImplementedError

    def next_iteration(self) -> int:
        self.iteration += 1
        return self.iteration

    def average_in(self, g: torch.Tensor, eta: float, t: int) -> None:
        """Momentum: d_t = (1 - eta_t) d_{t-1} + eta_t g_t, with d_0 = g_0."""
        if t == 0:
            self.direction.copy_(g)
        else:
            self.direction.mul_(1 - eta).add_(eta * g)

    def ascend(self, step_size: float, normalized: bool) -> torch.Tensor:
        """theta_{t+1} = theta_t + gamma d_t / ||d_t|| (or gamma d_t); theta_t becomes `previous`.
        The norm is over the whole parameter vector."""
        theta = self.theta
        norm = self.direction.norm()
        new = theta + step_size * (self.direction / norm if normalized else self.direction)
        if not torch.isfinite(new).all():
            raise TrainingDiverged(
                f"{type(self).__name__} diverged at iteration {self.iteration}: ||d_t|| = "
                f"{norm.item():.3g} takes the parameters past the finite numbers; lower "
                f"agent.gamma_0 (now {self.cfg.gamma_0})")
        self.previous.copy_(theta)
        self.theta = new
        return norm

    def finish(self, batch: EpisodeBatch, g: torch.Tensor, norm: torch.Tensor,
               step_size: float, eta: float | None = None) -> dict[str, torch.Tensor]:
        """Fit the baseline to this iteration's episodes (after the step, as garage does) and
        report the iteration."""
        self.baseline.fit(batch, discounted_returns(batch, self.cfg.discount))
        metrics = {"grad_norm": g.norm(), "direction_norm": norm,
                   "step_size": torch.tensor(step_size), "batch_episodes": torch.tensor(float(batch.episodes))}
        if eta is not None:
            metrics["momentum"] = torch.tensor(eta)
        return metrics

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions drawn from the policy at its current parameters (what `sample` runs)."""
        with torch.no_grad():
            return self.policy.act(obs, deterministic=False)

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy.act(obs, deterministic)

    def update(self, batch):
        raise TypeError(f"{type(self).__name__} is on-policy: it learns in iterate(sample), "
                        "from episodes it samples itself, not from a buffer's batches")

    def get_extra_state(self):
        return {"iteration": self.iteration, "previous_eta": self.previous_eta}

    def set_extra_state(self, state) -> None:
        self.iteration, self.previous_eta = int(state["iteration"]), state["previous_eta"]
