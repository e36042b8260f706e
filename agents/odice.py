"""O-DICE: DICE with orthogonal-gradient updates (Mao, Xu, Zhang, Zhan, ICLR 2024).

"ODICE: Revealing the Mystery of Distribution Correction Estimation via Orthogonal-gradient
Update". This computes what the authors' code computes (maoliyuan/ODICE-Pytorch, odice.py).

Value learning (V-DICE). With the dataset's states standing in for the initial distribution,

    min_V  (1 - lam) E_{s~D}[V(s)]  +  lam E_{(s,a,s')~D}[ f*( r + gamma V(s') - V(s) ) ]

where f is the Pearson chi-square divergence f(x) = (x - 1)^2, whose convex conjugate is
f*(y) = y w - (w - 1)^2 with w = max(y/2 + 1, 0), i.e. y + y^2/4 for y > -2 and -1 below.

The gradient of the f* term has a forward part (through V(s)) and a backward part (through
V(s')). Three rules are selectable (`gradient`, named as the authors' `--type`):
  semi_g      forward only: delta_f = r + gamma Vbar(s') - V(s), Vbar the EMA target;
  true_g      both parts: delta = r + gamma V(s') - V(s);
  orthogonal_true_g (O-DICE): g_f = grad lam E f*(delta_f), g_b = grad lam eta E f*(delta_b),
              delta_b = r + gamma V(s') - Vbar(s), and the backward part projected onto the
              normal plane of the forward one:
                  g = g_f + (g_b - c g_f),   c = <g_f, g_b> / max(||g_f||^2, 1e-10),
              plus the gradient of (1 - lam) E V(s). c is one scalar over all of a seed's
              parameters (one c per seed when seeds are stacked).
With eta = 0 the orthogonal rule is the semi-gradient rule.

Policy extraction: weighted behaviour cloning,
    min_pi  E_D[ min(ReLU(delta_f), 100) * -log pi(a|s) ],
the ReLU of the (detached) forward residual standing where the paper's (f')^{-1} would be:
the authors' code uses max(delta, 0) for this f, and so does this file.

Twin V (`twin_v`): two heads, each with its own residual; means run over both heads, the
target is the min of the target heads, and the BC weight averages the heads' weights.

Where this departs from the authors' code (numerically equal up to rounding):
- g_b comes from its own autograd pass rather than (accumulated grad - g_f);
- c stays on the device (the authors call .item(), a host sync every step);
- log pi is the closed-form diagonal-Gaussian density (same value as MultivariateNormal);
- twin heads are one ensemble-shaped network (same init and math as two MLPs);
- data: the authors load d4rl.qlearning_dataset, which drops each time-limit step; rlcore keeps
  it when the file has next_observations (its true s', not bootstrapped past: timeouts are not
  terminals), and the reward range uses episodes split at terminals or timeouts.
The paper's per-dataset lam/eta (its Appendix D) could not be retrieved here; the defaults
are the authors' CLI defaults (lam 0.6, eta 1.0).

Imitation (`odice_il`, main_odice_il.py): the same update on one expert trajectory alone
(`env.expert_episodes=1`), every reward set to 0. Given a mix with suboptimal data instead,
nothing (no reward, no label) marks the expert's transitions, so it warns: that is ReCOIL's
setting, not this one's.
"""
from __future__ import annotations

import copy
import warnings

import torch
from tensordict import TensorDict

from rlcore.agent import Agent, Spec, apply_gradients, grad_dot, scale_per_seed, seed_mean
from rlcore.training.buffer import Buffer
from rlcore.agent.nets import MLP, GaussianPolicy, polyak_update
from rlcore.agent.objectives import effective_batch_share
from rlcore.registry import register_agent
from rlcore.schema import choice, flag, fraction, number

GRADIENT_RULES = ("orthogonal_true_g", "true_g", "semi_g")  # the authors' --type names
DIVERGENCES = ("pearson_chi2", "reverse_kl")


def f_star(y: torch.Tensor, f: str) -> torch.Tensor:
    """Convex conjugate f*(y)."""
    if f == "reverse_kl":
        return torch.exp(y - 1)
    w = torch.clamp_min(y / 2 + 1, 0.0)  # w* = argmax_w  w y - f(w)
    return y * w - (w - 1) ** 2


def bc_weight(residual: torch.Tensor, f: str, clip: float) -> torch.Tensor:
    """Policy weight from the TD residual, clamped at `clip` (authors' f_prime_inverse)."""
    w = torch.exp(residual - 1) if f == "reverse_kl" else torch.relu(residual)
    return torch.clamp_max(w, clip)


def orthogonal_gradient(g_state, g_forward, g_backward, seeds: int = 1):
    """g_state + g_f + (g_b - c g_f), c = <g_f, g_b> / max(||g_f||^2, 1e-10): the backward
    gradient projected onto the normal plane of the forward one, per seed. Returns (grads, c [S])."""
    c = grad_dot(g_forward, g_backward, seeds) / torch.clamp_min(
        grad_dot(g_forward, g_forward, seeds), 1e-10)
    grads = [gs + scale_per_seed(1 - c, gf) + gb
             for gs, gf, gb in zip(g_state, g_forward, g_backward)]
    return grads, c


@register_agent("odice_il")   # the imitation variant: same update, configs/agent/odice_il.yaml
@register_agent("odice")
class ODICE(Agent):
    config_schema = {"gradient": choice(*GRADIENT_RULES), "f": choice(*DIVERGENCES),
                     "lam": fraction(low_open=True, high_open=True), "eta": number(0),
                     "policy_weight_decay": number(0), "twin_v": flag(), "tanh_mean": flag()}

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        heads = 2 if cfg.twin_v else 1
        self.value = MLP(spec.obs_dim, cfg.value_hidden, 1, layer_norm=cfg.layer_norm,
                         seeds=spec.seeds, heads=heads, squeeze=True)  # V(s): [S, heads, B]
        self.target_value = copy.deepcopy(self.value).requires_grad_(False)
        self.policy = GaussianPolicy(spec.obs_dim, spec.action_dim, cfg.policy_hidden,
                                     tanh_mean=cfg.tanh_mean, seeds=spec.seeds)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr,
                                           weight_decay=cfg.policy_weight_decay)

    def check_data(self, buffer: Buffer) -> None:
        expert = buffer.subsets.get("expert")
        if self.cfg.get("reward_free") and expert is not None and len(expert) < len(buffer):
            warnings.warn(f"{self.cfg.name} learns without rewards, so in this mix of {len(expert)} "
                          f"expert and {len(buffer) - len(expert)} other transitions nothing tells the "
                          "expert apart: O-DICE's imitation setting is the expert episodes alone "
                          "(drop env.suboptimal); ReCOIL (agent=recoil) learns from such mixes", stacklevel=2)

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        value_metrics, residual = self.update_value(batch)
        polyak_update(self.target_value, self.value, self.cfg.tau)
        policy_metrics = self.update_policy(batch, residual)
        return {**value_metrics, **policy_metrics}

    # ---- value: the V-DICE objective with the chosen gradient rule ------------------------
    def update_value(self, batch: TensorDict) -> tuple[dict, torch.Tensor]:
        grads, metrics, policy_residual = self.value_gradients(batch)
        apply_gradients(list(self.value.parameters()), grads, self.value_opt)
        return metrics, policy_residual

    def residuals(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        """V(s), the target's min-over-heads Vbar(s), Vbar(s'), and V(s') where the rule needs it."""
        s, s_next = batch["observations"], batch["next_observations"]
        with torch.no_grad():
            v_bar = self.target_value(s).min(1, keepdim=True).values       # [S, 1, B]
            v_bar_next = self.target_value(s_next).min(1, keepdim=True).values
        x = {"v": self.value(s), "v_bar": v_bar, "v_bar_next": v_bar_next}  # v: [S, heads, B]
        if self.cfg.gradient != "semi_g":                                  # semi_g: no V(s')
            x["v_next"] = self.value(s_next)
        return x

    def value_gradients(self, batch: TensorDict):
        """Gradient of the V-DICE objective under `gradient`; returns (grads, metrics, delta)."""
        cfg, lam = self.cfg, self.cfg.lam
        r = batch["rewards"][:, None]                                      # [S, 1, B]
        discount = cfg.discount * (1.0 - batch["terminals"][:, None])
        params = list(self.value.parameters())
        x = self.residuals(batch)
        forward_residual = r + discount * x["v_bar_next"] - x["v"]          # delta_f
        metrics = {}
        if cfg.gradient == "semi_g":
            loss = seed_mean((1 - lam) * x["v"] + lam * f_star(forward_residual, cfg.f))
            grads = torch.autograd.grad(loss.sum(), params)
            policy_residual = forward_residual
        elif cfg.gradient == "true_g":
            residual = r + discount * x["v_next"] - x["v"]                  # delta
            loss = seed_mean((1 - lam) * x["v"] + lam * f_star(residual, cfg.f))
            grads = torch.autograd.grad(loss.sum(), params)
            policy_residual = residual
        else:  # orthogonal_true_g
            backward_residual = r + discount * x["v_next"] - x["v_bar"]     # delta_b
            state_loss = (1 - lam) * seed_mean(x["v"])
            forward_loss = lam * seed_mean(f_star(forward_residual, cfg.f))
            backward_loss = lam * cfg.eta * seed_mean(f_star(backward_residual, cfg.f))
            g_s = torch.autograd.grad(state_loss.sum(), params, retain_graph=True)
            g_f = torch.autograd.grad(forward_loss.sum(), params, retain_graph=True)
            g_b = torch.autograd.grad(backward_loss.sum(), params)
            grads, c = orthogonal_gradient(g_s, g_f, g_b, self.spec.seeds)
            loss = state_loss + forward_loss + backward_loss
            policy_residual = forward_residual
            metrics["projection_coef"] = c.detach()
        metrics.update(value_loss=loss.detach(), v_mean=seed_mean(x["v"].detach()),
                       residual_mean=seed_mean(policy_residual.detach()))
        return grads, metrics, policy_residual.detach()

    # ---- policy: weighted behaviour cloning --------------------------------------------------
    def update_policy(self, batch: TensorDict, residual: torch.Tensor) -> dict:
        weight = bc_weight(residual, self.cfg.f, self.cfg.weight_clip)      # [S, heads, B]
        nll = -self.policy.log_prob(batch["observations"], batch["actions"])  # [S, B]
        loss = seed_mean(weight * nll[:, None])
        params = list(self.policy.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.policy_opt)
        share = effective_batch_share(weight.mean(1))   # a transition's weight: the heads' mean
        return {"policy_loss": loss.detach(), "bc_weight_mean": seed_mean(weight),
                "weight_ess": share}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy.act(obs, deterministic)
