"""CPL: Contrastive Preference Learning (Hejna, Sharma, Rafailov, Finn, Niekum, Knox, Sadigh;
ICLR 2024), as the authors' code computes it (jhejna/cpl: research/algs/cpl.py, cpl_kl.py,
configs/mw_state_{dense,sparse}/).

Preferences follow the regret model: sigma+ is preferred over sigma- with probability
sigma(sum_t A*(s+_t, a+_t) - sum_t A*(s-_t, a-_t)) (eq. 2). In maximum-entropy RL the optimal
advantage is A*(s, a) = alpha log pi*(a|s) (eq. 3), so the likelihood is a function of the policy
alone and preferences are learned without a reward or a value function (eq. 5):

    L_CPL(pi) = -E log  exp(sum_t alpha log pi(a+_t|s+_t))
                        / (exp(sum_t alpha log pi(a+_t|s+_t)) + exp(lambda sum_t alpha log pi(a-_t|s-_t)))

with the conservative bias lambda in (0, 1] (eq. 6, `contrastive_bias`): with A(sigma) =
alpha sum_t log pi(a_t|s_t), L = softplus(lambda A(sigma-) - A(sigma+)). A soft label y (1: the
second segment preferred) weighs both orders: y l(2 > 1) + (1 - y) l(1 > 2) (biased_bce_with_logits).

The state configs' policy is deterministic, read as a unit-variance Gaussian: log pi(a|s) =
-||pi(s) - a||^2. Training is staged (cpl.py train_step): `bc_steps` updates of BC,
L_BC = -mean log pi over the segments, then a fresh Adam whose learning rate warms up linearly
over `warmup_steps` (10k), on L_CPL + bc_coeff L_BC. CPL-KL (`variant: kl`, cpl_kl.py) uses
log pi - log pi_ref, pi_ref the BC-pretrained policy, frozen and without dropout.

Defaults (mw_state_dense/cpl.yaml): alpha 0.1, lambda 0.5, bc_coeff 0, bc_steps 200k of 500k,
Adam 1e-4, batch 96 comparisons of 64 steps; the actor [512, 512] with dropout 0.25, tanh output,
orthogonal init. CPL-KL: alpha 0.2, lambda 0.75; CPL-BC: lambda 1, bc_coeff 1.
Departure: the authors walk the segments in shuffled epochs; pairs are drawn with replacement here.
"""
from __future__ import annotations

import copy

import torch
from torch.nn import functional as F
from tensordict import TensorDict

from rlcore.agent import Spec, apply_gradients, seed_mean
from rlcore.data.preferences import PreferenceAgent, preference_policy, preferred_mean, segment_log_prob
from rlcore.registry import register_agent
from rlcore.schema import choice, count, fraction, number, optional


def biased_bce_with_logits(adv1: torch.Tensor, adv2: torch.Tensor, label: torch.Tensor,
                           bias: float) -> tuple[torch.Tensor, torch.Tensor]:
    """y softplus(bias adv1 - adv2) + (1 - y) softplus(bias adv2 - adv1), y = 1 preferring the
    second segment; per seed: (loss [S], accuracy [S] = mean 1[(adv2 > adv1) == round(y)])."""
    loss = label * F.softplus(bias * adv1 - adv2) + (1 - label) * F.softplus(bias * adv2 - adv1)
    accuracy = ((adv2 > adv1) == torch.round(label)).float()
    return seed_mean(loss), seed_mean(accuracy)


@register_agent("cpl")
class CPL(PreferenceAgent):
    config_schema = {"contrastive_bias": fraction(low_open=True), "bc_coeff": number(0),
                     "bc_data": choice("all", "pos"), "bc_steps": count(0),
                     "warmup_steps": count(0), "variant": choice("cpl", "kl"),
                     "cpl_lr": optional(number(0)),
                     "dropout": number(0, 1, high_open=True)}

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.policy = preference_policy(spec, cfg)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)
        if cfg.variant == "kl":
            self.reference = copy.deepcopy(self.policy).requires_grad_(False).eval()
        self.register_buffer("step", torch.zeros(()))

    def phase_starts(self) -> list[int]:
        return [self.cfg.bc_steps]

    def begin_phase(self, step: int) -> None:
        """At bc_steps: a fresh Adam (its state cleared; learning rate `cpl_lr`, by default the
        pretraining's `lr` as in the authors' code), and CPL-KL's reference is the BC-pretrained
        policy."""
        phase = self.phase
        super().begin_phase(step)
        if phase == 0 and self.phase == 1:
            self.policy_opt.state.clear()
            for group in self.policy_opt.param_groups:
                group["lr"] = self.cfg.cpl_lr if self.cfg.cpl_lr is not None else self.cfg.lr
            if self.cfg.variant == "kl":
                self.reference.load_state_dict(self.policy.state_dict())

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.variant == "kl":
            self.reference.eval()               # the reference never drops units
        return self

    def bc_loss(self, lp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """-mean log pi over all segments, or over the preferred ones (`bc_data: pos`)."""
        if self.cfg.bc_data == "all":
            return seed_mean(-lp)
        return preferred_mean(-lp, labels)

    def losses(self, batch: TensorDict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_CPL, L_BC, accuracy), each [S]: eq. 6 on A(sigma) = alpha sum_t log pi(a_t|s_t)
        (minus pi_ref's for CPL-KL), and the BC term."""
        cfg = self.cfg
        lp = segment_log_prob(self.policy, batch)                          # [S, B, 2, L]
        bc_loss = self.bc_loss(lp, batch["labels"])
        if cfg.variant == "kl" and self.phase == 1:        # the reference exists from the stage on
            with torch.no_grad():
                reference_lp = segment_log_prob(self.reference, batch)
            lp = lp - reference_lp
        advantage = cfg.alpha * lp.sum(-1)                                  # [S, B, 2]
        cpl_loss, accuracy = biased_bce_with_logits(advantage[..., 0], advantage[..., 1],
                                                    batch["labels"], cfg.contrastive_bias)
        return cpl_loss, bc_loss, accuracy

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        cpl_loss, bc_loss, accuracy = self.losses(batch)
        if self.phase == 0:                                                # BC pretraining
            loss, lr_scale = bc_loss, None
        else:                                      # a fresh Adam, its lr warming up from 0 (LambdaLR)
            loss = cpl_loss + cfg.bc_coeff * bc_loss
            lr_scale = ((self.step - cfg.bc_steps) / max(cfg.warmup_steps, 1)).clamp(0.0, 1.0)
        params = list(self.policy.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.policy_opt, lr_scale)
        self.step += 1
        return {"bc_loss": bc_loss.detach(), "cpl_loss": cpl_loss.detach(), "accuracy": accuracy}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy(obs)
