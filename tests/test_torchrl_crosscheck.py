"""rlcore's IQL, TD3+BC and BC losses beside TorchRL's objectives (IQLLoss, TD3BCLoss, BCLoss) on
identical parameters and one batch: equal values and equal gradients wherever the two define
the same quantity. Skipped when the `torchrl` extra is not installed."""
import pytest
import torch
from tensordict import TensorDict
from torch import nn

torchrl = pytest.importorskip("torchrl")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")   # TorchRL's notes on target nets
from tensordict.nn import TensorDictModule  # noqa: E402
from torchrl.modules import ProbabilisticActor  # noqa: E402
from torchrl.modules.distributions import IndependentNormal  # noqa: E402
from torchrl.objectives import BCLoss, IQLLoss, TD3BCLoss, ValueEstimators  # noqa: E402

from rlcore.agent import Spec  # noqa: E402
from rlcore.config import load_config  # noqa: E402
from rlcore.agent.nets import EnsembleLinear  # noqa: E402
from rlcore.training.trainer import build_agent  # noqa: E402

OBS, ACT, B = 5, 2, 32


def rlcore_agent(name: str, *overrides):
    cfg = load_config([f"agent={name}", "agent.hidden=[16,16]", *overrides])
    return build_agent(cfg, Spec(OBS, ACT), torch.device("cpu"), seeds=[0])


def linears(mlp) -> list[EnsembleLinear]:
    return [m for m in mlp.modules() if isinstance(m, EnsembleLinear)]


def plain_copy(mlp, member: int = 0) -> nn.Sequential:
    """An nn.Sequential of nn.Linear / ReLU holding member `member` of an rlcore MLP."""
    layers = []
    for i, lin in enumerate(linears(mlp)):
        plain = nn.Linear(lin.weight.shape[1], lin.weight.shape[2])
        with torch.no_grad():
            plain.weight.copy_(lin.weight[member].T)
            plain.bias.copy_(lin.bias[member, 0])
        layers += [plain, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def torchrl_grads(loss_value, params, member: int | None = None) -> dict[str, torch.Tensor]:
    """TorchRL's gradients by flattened parameter name (one member of stacked parameters)."""
    flat = params.flatten_keys(".")
    grads = torch.autograd.grad(loss_value, list(flat.values()), retain_graph=True)
    return {k: g if member is None else g[member] for k, g in zip(flat.keys(), grads)}


def assert_grads_match(rl_mlp, rl_grads: dict, tr_grads: dict, member: int = 0):
    """rlcore's gradient of member `member` against TorchRL's for the nn.Sequential copy
    (its Linear layers sit at indices 0, 2, 4, ...)."""
    for i, lin in enumerate(linears(rl_mlp)):
        for name, mine in (("weight", rl_grads[lin.weight][member].T), ("bias", rl_grads[lin.bias][member, 0])):
            [theirs] = [g for k, g in tr_grads.items() if k.endswith(f".{2 * i}.{name}")]
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def batch():
    g = torch.Generator().manual_seed(0)
    obs, next_obs = torch.randn(B, OBS, generator=g), torch.randn(B, OBS, generator=g)
    act = torch.rand(B, ACT, generator=g) * 1.8 - 0.9      # inside rlcore's +-(1 - 1e-5) clip
    reward, done = torch.randn(B, generator=g), (torch.rand(B, generator=g) < 0.2).float()
    rl = TensorDict({"observations": obs, "actions": act, "rewards": reward,
                     "next_observations": next_obs, "terminals": done}, [B]).unsqueeze(0)
    tr = TensorDict({"observation": obs, "action": act,
                     "next": {"observation": next_obs, "reward": reward[:, None],
                              "done": done.bool()[:, None], "terminated": done.bool()[:, None]}}, [B])
    return rl, tr


class QNet(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, obs, act):
        return self.net(torch.cat([obs, act], -1))


def q_module(net):
    return TensorDictModule(QNet(net), in_keys=["observation", "action"], out_keys=["state_action_value"])


def set_stacked(params, nets):
    """Load per-member plain nets into TorchRL's stacked (vmapped) parameters."""
    flat = params.flatten_keys(".")
    for key in flat.keys():
        name = ".".join(key.split(".")[-2:])            # "<layer>.weight" of the nn.Sequential
        stacked = torch.stack([dict(n.named_parameters())[name] for n in nets])
        flat.get(key).data.copy_(stacked.detach())


def test_iql_value_actor_and_critic_losses_and_gradients_match_torchrl():
    agent = rlcore_agent("iql")
    with torch.no_grad():                       # a target critic unlike the online one
        for p in agent.target_critic.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rl, tr = batch()

    class GaussianHead(nn.Module):              # rlcore's policy: tanh mean, state-independent std
        def __init__(self, net, log_std):
            super().__init__()
            self.net, self.log_std = net, nn.Parameter(log_std.detach().clone())

        def forward(self, obs):
            mean = torch.tanh(self.net(obs))
            return mean, self.log_std.clamp(-5, 2).exp().expand_as(mean)

    head = GaussianHead(plain_copy(agent.policy.mean_net), agent.policy.log_std[0])
    actor = ProbabilisticActor(TensorDictModule(head, in_keys=["observation"], out_keys=["loc", "scale"]),
                               in_keys=["loc", "scale"], distribution_class=IndependentNormal)
    value = TensorDictModule(plain_copy(agent.value), in_keys=["observation"], out_keys=["state_value"])
    loss = IQLLoss(actor, q_module(plain_copy(agent.critic, 0)), value, num_qvalue_nets=2,
                   loss_function="l2", temperature=agent.cfg.beta, expectile=agent.cfg.expectile)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=agent.cfg.discount)
    set_stacked(loss.qvalue_network_params, [plain_copy(agent.critic, h) for h in (0, 1)])
    set_stacked(loss.target_qvalue_network_params, [plain_copy(agent.target_critic, h) for h in (0, 1)])

    # V (eq. 5): same value, same gradient for V's parameters
    mine, q_target = agent.value_loss(rl["observations"], rl["actions"])
    theirs, _ = loss.value_loss(tr.clone())
    torch.testing.assert_close(mine[0], theirs)
    value_params = list(agent.value.parameters())
    rl_grads = dict(zip(value_params, torch.autograd.grad(mine.sum(), value_params)))
    assert_grads_match(agent.value, rl_grads, torchrl_grads(theirs, loss.value_network_params))

    # pi (eq. 7) with the same V (TorchRL reads V before any step; rlcore's update passes the
    # updated V, which is the same tensor here since nothing has stepped)
    from rlcore.agents.iql import awr_loss
    with torch.no_grad():
        advantage = q_target - agent.value(rl["observations"])
    mine, _ = awr_loss(agent.policy, rl["observations"], rl["actions"], advantage,
                       agent.cfg.beta, agent.cfg.weight_clip)
    theirs, _ = loss.actor_loss(tr.clone())
    torch.testing.assert_close(mine[0], theirs)
    policy_params = list(agent.policy.mean_net.parameters())
    rl_grads = dict(zip(policy_params, torch.autograd.grad(mine.sum(), policy_params, retain_graph=True)))
    tr_grads = torchrl_grads(theirs, loss.actor_network_params)
    assert_grads_match(agent.policy.mean_net, rl_grads, tr_grads)
    [log_std_grad] = [g for k, g in tr_grads.items() if k.endswith("log_std")]
    torch.testing.assert_close(torch.autograd.grad(mine.sum(), agent.policy.log_std)[0][0], log_std_grad)

    # Q (eq. 6): the sum over the twins of each one's MSE to r + gamma (1 - d) V(s')
    with torch.no_grad():
        v_next = agent.value(rl["next_observations"])
    mine = agent.critic_loss(rl, v_next)
    theirs, _ = loss.qvalue_loss(tr.clone())
    torch.testing.assert_close(mine[0], theirs)
    critic_params = list(agent.critic.parameters())
    rl_grads = dict(zip(critic_params, torch.autograd.grad(mine.sum(), critic_params)))
    for h in (0, 1):                            # TorchRL stacks the twins on dim 0
        assert_grads_match(agent.critic, rl_grads, torchrl_grads(theirs, loss.qvalue_network_params, h),
                            member=h)


def test_td3bc_actor_loss_and_gradient_match_torchrl():
    agent = rlcore_agent("td3bc")
    rl, tr = batch()
    actor = TensorDictModule(nn.Sequential(plain_copy(agent.actor.net), nn.Tanh()),
                             in_keys=["observation"], out_keys=["action"])
    loss = TD3BCLoss(actor, q_module(plain_copy(agent.critic, 0)), num_qvalue_nets=2,
                     alpha=agent.cfg.alpha, bounds=(-1.0, 1.0), loss_function="l2")
    set_stacked(loss.qvalue_network_params, [plain_copy(agent.critic, h) for h in (0, 1)])
    mine, bc, lam = agent.actor_loss(rl["observations"], rl["actions"])
    theirs, meta = loss.actor_loss(tr.clone())
    torch.testing.assert_close(mine[0], theirs)
    torch.testing.assert_close(bc[0], meta["bc_loss"])
    torch.testing.assert_close(lam[0], meta["lmbd"])
    params = list(agent.actor.parameters())
    rl_grads = dict(zip(params, torch.autograd.grad(mine.sum(), params)))
    assert_grads_match(agent.actor.net, rl_grads, torchrl_grads(theirs, loss.actor_network_params))


def test_bc_loss_and_gradient_match_torchrl():
    agent = rlcore_agent("bc")
    rl, tr = batch()
    actor = TensorDictModule(nn.Sequential(plain_copy(agent.policy.net), nn.Tanh()),
                             in_keys=["observation"], out_keys=["action"])
    loss = BCLoss(actor, loss_function="l2")
    mine = ((agent.policy(rl["observations"]) - rl["actions"]).pow(2)).mean()
    theirs = loss(tr.clone())["loss_bc"]
    torch.testing.assert_close(mine, theirs)
    params = list(agent.policy.parameters())
    rl_grads = dict(zip(params, torch.autograd.grad(mine, params)))
    assert_grads_match(agent.policy.net, rl_grads, torchrl_grads(theirs, loss.actor_network_params))


def test_datasets_round_trip_through_a_torchrl_replay_buffer():
    import numpy as np

    from rlcore.training.buffer import Buffer
    from rlcore.data import from_arrays
    from rlcore.data.torchrl_bridge import from_torchrl, to_torchrl_buffer
    rng = np.random.default_rng(0)
    n = 50
    arrays = {"observations": rng.standard_normal((n, OBS)).astype(np.float32),
              "actions": rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
              "rewards": rng.standard_normal(n).astype(np.float32),
              "next_observations": rng.standard_normal((n, OBS)).astype(np.float32),
              "terminals": (np.arange(n) == 20).astype(np.float32),
              "timeouts": (np.arange(n) == n - 1).astype(np.float32)}
    dataset = from_arrays("toy", arrays)
    rb = to_torchrl_buffer(dataset, batch_size=8)
    sample = rb.sample()
    assert sample["next", "reward"].shape == (8, 1) and sample["action"].shape == (8, ACT)
    back = from_torchrl(rb)
    for key, value in dataset.arrays().items():
        np.testing.assert_array_equal(getattr(back, key), value, err_msg=key)
    buffer = Buffer.from_dataset(back)
    assert len(buffer) == n
    with pytest.raises(Exception, match="needs observation, action"):
        from_torchrl(TensorDict({"observation": torch.zeros(3, OBS)}, [3]))
