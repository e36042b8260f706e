"""O-DICE's value gradient against the paper's formula worked by hand, and its properties."""
import copy

import pytest
import torch
from tensordict import TensorDict

from rlcore.agent import Spec, grad_dot
from rlcore.agents.odice import ODICE, bc_weight, f_star, orthogonal_gradient
from rlcore.config import load_config


def make_agent(**overrides):
    cfg = load_config([f"agent.{k}={v}" for k, v in overrides.items()]).agent
    return ODICE(Spec(obs_dim=4, action_dim=2), cfg)


def batch(n=8, seed=0, seeds=1):
    """A [seeds, n] batch (the agent contract's shape)."""
    g = torch.Generator().manual_seed(seed)
    n, m = n * seeds, n
    return TensorDict({"observations": torch.randn(n, 4, generator=g),
                       "next_observations": torch.randn(n, 4, generator=g),
                       "actions": torch.rand(n, 2, generator=g) * 2 - 1,
                       "rewards": torch.randn(n, generator=g) * 3,
                       "terminals": (torch.rand(n, generator=g) < 0.3).float()},
                      batch_size=[n]).reshape(seeds, m)


def test_f_star_is_pearson_conjugate():
    y = torch.tensor([-5.0, -2.0, -1.0, 0.0, 0.5, 3.0])
    expected = torch.where(y > -2, y + y ** 2 / 4, torch.full_like(y, -1.0))
    torch.testing.assert_close(f_star(y, "pearson_chi2"), expected)
    # conjugate: f*(y) = max_w [w y - (w - 1)^2] over w >= 0, checked on a grid
    w = torch.linspace(0, 10, 100001)[:, None]
    brute = (w * y - (w - 1) ** 2).max(0).values
    torch.testing.assert_close(f_star(y, "pearson_chi2"), brute, atol=1e-3, rtol=0)


def test_bc_weight_is_clamped_relu():
    r = torch.tensor([-3.0, 0.0, 2.0, 250.0])
    torch.testing.assert_close(bc_weight(r, "pearson_chi2", 100.0), torch.tensor([0.0, 0.0, 2.0, 100.0]))


def test_orthogonal_gradient_matches_hand_computation_on_linear_twin_v():
    """V_k(s) = w_k . s + b_k (two heads). d f*(y)/dy = max(y/2 + 1, 0), so by hand:
    g_f = lam/(2B) sum_i f*'(delta_f) (-[s_i, 1]),  g_b = lam eta/(2B) sum_i f*'(delta_b) gamma (1-d_i) [s'_i, 1],
    g_s = (1-lam)/(2B) sum_i [s_i, 1],  g = g_s + (1 - c) g_f + g_b,  c = <g_f,g_b>/||g_f||^2."""
    lam, eta, gamma = 0.6, 0.7, 0.99
    agent = make_agent(value_hidden="[]", layer_norm=False, lam=lam, eta=eta, discount=gamma)
    with torch.no_grad():  # make the target differ from the online network
        for p in agent.target_value.parameters():
            p.add_(0.1 * torch.randn_like(p))
    b = batch()
    s, s2, r, d = (b[k][0] for k in ("observations", "next_observations", "rewards", "terminals"))
    lin = agent.value.net[0]
    W, B0 = lin.weight.detach()[..., 0], lin.bias.detach()[:, 0, 0]          # [2, 4], [2]
    tW, tB = agent.target_value.net[0].weight[..., 0], agent.target_value.net[0].bias[:, 0, 0]
    v = W @ s.T + B0[:, None]                                                # [2, B]
    v2 = W @ s2.T + B0[:, None]
    vbar = (tW @ s.T + tB[:, None]).min(0).values
    vbar2 = (tW @ s2.T + tB[:, None]).min(0).values
    disc = gamma * (1 - d)
    dfs = lambda y: torch.clamp_min(y / 2 + 1, 0)                            # f*'(y)
    delta_f = r + disc * vbar2 - v
    delta_b = r + disc * v2 - vbar
    n = 2 * len(r)
    s1, s21 = torch.cat([s, torch.ones(len(r), 1)], 1), torch.cat([s2, torch.ones(len(r), 1)], 1)
    g_f = lam / n * (dfs(delta_f) @ (-s1))                                   # [2, 5]
    g_b = lam * eta / n * ((dfs(delta_b) * disc) @ s21)
    g_s = (1 - lam) / n * s1.sum(0).expand(2, 5)
    c = (g_f * g_b).sum() / (g_f * g_f).sum()
    expected = g_s + (1 - c) * g_f + g_b

    grads, metrics, _ = agent.value_gradients(b)
    got = torch.cat([grads[0][..., 0], grads[1][:, 0, :]], dim=1)            # [2, 5]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(metrics["projection_coef"], c[None])


def test_projected_backward_part_is_orthogonal_to_forward_gradient():
    agent = make_agent(value_hidden="[32,32]")
    b = batch(64)
    params = list(agent.value.parameters())
    x = agent.residuals(b)
    disc = agent.cfg.discount * (1 - b["terminals"])
    delta_f = b["rewards"] + disc * x["v_bar_next"] - x["v"]
    delta_b = b["rewards"] + disc * x["v_next"] - x["v_bar"]
    g_f = torch.autograd.grad(f_star(delta_f, "pearson_chi2").mean(), params, retain_graph=True)
    g_b = torch.autograd.grad(f_star(delta_b, "pearson_chi2").mean(), params)
    zeros = [torch.zeros_like(p) for p in params]
    grads, c = orthogonal_gradient(zeros, g_f, g_b)
    projected = [g - gf for g, gf in zip(grads, g_f)]                          # g_b - c g_f
    assert abs(float(grad_dot(g_f, g_b, 1))) > 1e-4                            # not trivially orthogonal
    cosine = grad_dot(projected, g_f, 1) / (grad_dot(projected, projected, 1)
                                            * grad_dot(g_f, g_f, 1)).sqrt()
    assert abs(float(cosine)) < 1e-5


def test_eta_zero_reduces_to_semi_gradient():
    torch.manual_seed(1)
    ortho = make_agent(gradient="orthogonal_true_g", eta=0.0, value_hidden="[32,32]")
    semi = make_agent(gradient="semi_g", value_hidden="[32,32]")
    semi.load_state_dict(ortho.state_dict())
    b = batch(32)
    g_o, _, r_o = ortho.value_gradients(b)
    g_s, _, r_s = semi.value_gradients(b)
    for a, s in zip(g_o, g_s):
        torch.testing.assert_close(a, s, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(r_o, r_s)


def test_true_gradient_differs_from_semi_when_next_states_matter():
    ortho = make_agent(gradient="true_g", value_hidden="[32,32]")
    semi = make_agent(gradient="semi_g", value_hidden="[32,32]")
    semi.load_state_dict(ortho.state_dict())
    b = batch(32)
    g_t, _, _ = ortho.value_gradients(b)
    g_s, _, _ = semi.value_gradients(b)
    assert max(float((a - s).abs().max()) for a, s in zip(g_t, g_s)) > 1e-4


def test_policy_loss_is_twin_averaged_weighted_bc():
    agent = make_agent(policy_hidden="[16]")
    b = batch(16)
    residual = torch.randn(1, 2, 16) * 5
    residual[0, 0, 0] = 500.0  # clamped at 100
    nll = -agent.policy.log_prob(b["observations"], b["actions"]).detach()[0]
    w = residual[0].clamp_min(0).clamp_max(100)
    expected = (0.5 * (w[0] + w[1]) * nll).mean()[None]
    metrics = agent.update_policy(b, residual)
    torch.testing.assert_close(metrics["policy_loss"], expected)


def test_gaussian_log_prob_matches_torch_distribution():
    agent = make_agent(policy_hidden="[16]")
    b = batch(16)
    with torch.no_grad():
        agent.policy.log_std.copy_(torch.tensor([-0.3, 0.4]))
    mean, log_std = agent.policy(b["observations"])
    dist = torch.distributions.MultivariateNormal(mean, scale_tril=torch.diag(log_std.exp().flatten()))
    torch.testing.assert_close(agent.policy.log_prob(b["observations"], b["actions"]),
                               dist.log_prob(b["actions"]))


def test_update_changes_parameters_and_moves_target_by_tau():
    agent = make_agent(value_hidden="[32,32]", policy_hidden="[32]")
    before = copy.deepcopy(agent.state_dict()["modules"])
    metrics = agent.update(batch(32))
    after = agent.state_dict()["modules"]
    assert set(metrics) >= {"value_loss", "policy_loss", "projection_coef"}
    assert all(torch.isfinite(v) for v in metrics.values())
    for key in before:
        if key.startswith(("value.", "policy.")):
            assert not torch.equal(before[key], after[key]), key
    # target <- (1 - tau) target + tau online(new)
    key = "value.net.0.weight"
    expected = 0.995 * before["target_" + key] + 0.005 * after[key]
    torch.testing.assert_close(after["target_" + key], expected)


@pytest.mark.parametrize("bad", ["gradient=sideways", "f=hellinger"])
def test_bad_agent_options_are_rejected_with_the_valid_ones(bad):
    key, value = bad.split("=")
    with pytest.raises(ValueError, match=f"agent.{key}='{value}': must be one of"):
        make_agent(**{key: value})


@pytest.mark.parametrize("lam", [0.4, 0.6, 0.8])
def test_lambda_sets_where_the_residual_settles(lam):
    """The authors' objective (1 - lam) V + lam f*(delta) is stationary in a shift of V where
    lam E[f*'(delta)] = 1 - lam, f*'(y) = max(0, 1 + y/2): lam alone fixes how far the residual
    sits from 0, and so which share of the batch the ReLU weight clones. On one state the
    orthogonal rule must settle there too (its backward part is parallel to the forward one
    and projected away): E delta about +1.0, -0.67 and -1.5 for lam = 0.4, 0.6 and 0.8."""
    torch.manual_seed(0)
    agent = make_agent(lam=lam, twin_v="false", value_hidden="[8]", value_lr=0.02)
    n = 512
    state = torch.randn(1, 4).expand(n, 4)
    rewards = 1.0 + 0.5 * torch.randn(n, generator=torch.Generator().manual_seed(1))
    b = TensorDict({"observations": state, "next_observations": state, "actions": torch.zeros(n, 2),
                    "rewards": rewards, "terminals": torch.zeros(n)}, batch_size=[n]).reshape(1, n)
    for _ in range(1500):
        agent.update_value(b)
        agent.target_value.load_state_dict(agent.value.state_dict())   # Vbar = V: the fixed point
    _, _, residual = agent.value_gradients(b)
    settled = (1 + residual / 2).clamp_min(0).mean()
    torch.testing.assert_close(settled, torch.tensor((1 - lam) / lam), rtol=0.01, atol=0)
