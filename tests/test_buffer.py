"""Buffer samplers: shapes, episode boundaries, timeouts, goals from the same episode's future."""
import numpy as np
import pytest
import torch

from rlcore.training.buffer import Buffer
from tests.conftest import episodes_dataset

LENGTHS = [5, 12, 3, 20, 9]


def make_buffer(lengths=LENGTHS, terminal_last=None, seed=0):
    ds = episodes_dataset(lengths, terminal_last=terminal_last)
    return ds, Buffer.from_dataset(ds, seed=seed)


def episode_of(step):
    return np.searchsorted(np.cumsum(LENGTHS), step, side="right")


def test_transitions_have_shapes_and_rows_stay_aligned():
    ds, buf = make_buffer()
    b = buf.sample(256)
    assert b["observations"].shape == (256, 3) and b["actions"].shape == (256, 2)
    assert b["rewards"].shape == (256,) and b["terminals"].shape == (256,)
    idx = b["observations"][:, 0].long()
    torch.testing.assert_close(b["next_observations"][:, 0], idx.float() + 0.5)
    torch.testing.assert_close(b["rewards"], torch.as_tensor(ds.rewards)[idx])


def test_sampling_is_reproducible_from_the_generator_state():
    _, buf = make_buffer()
    state = buf.rng_state()
    first = buf.sample(64)["observations"]
    buf.set_rng_state(state)
    torch.testing.assert_close(buf.sample(64)["observations"], first)


def test_segments_stay_inside_one_episode_and_never_cross_a_timeout():
    _, buf = make_buffer()
    seg = buf.sample_segments(512, length=4)
    assert seg.batch_size == torch.Size([512, 4])
    steps = seg["observations"][..., 0].long()
    assert torch.all(steps[:, 1:] - steps[:, :-1] == 1)                  # consecutive
    episodes = seg["observations"][..., 1]
    assert torch.all(episodes == episodes[:, :1])                        # one episode each
    # a timeout may only be the segment's last step
    assert torch.all(seg["timeouts"][:, :-1] == 0)
    # episode 2 has 3 steps: it can never host a 4-step segment
    assert not torch.any(episodes == 2)


def test_segments_cover_every_valid_start():
    _, buf = make_buffer()
    starts = set(buf.sample_segments(4000, length=4)["observations"][:, 0, 0].long().tolist())
    ends = np.cumsum(LENGTHS)
    valid = {t for t in range(sum(LENGTHS)) if t + 4 <= ends[episode_of(t)]}
    assert starts == valid


def test_segment_longer_than_any_episode_is_a_clear_error():
    _, buf = make_buffer()
    with pytest.raises(ValueError, match="no episode has 21 steps"):
        buf.sample_segments(8, length=21)


def test_segment_pairs_shape():
    _, buf = make_buffer()
    pair = buf.sample_segment_pairs(16, length=3)
    assert pair.batch_size == torch.Size([16, 2, 3])


def test_nstep_returns_match_a_loop_and_stop_at_episode_end():
    ds, buf = make_buffer(terminal_last=[True, False, True, False, True])
    gamma, n = 0.9, 4
    b = buf.sample_nstep(512, n=n, discount=gamma)
    ends = np.cumsum(LENGTHS)
    for row in range(512):
        t = int(b["observations"][row, 0])
        end = ends[episode_of(t)]
        m = min(n, end - t)
        expected = sum(gamma ** k * ds.rewards[t + k] for k in range(m))
        assert int(b["n_steps"][row]) == m
        assert abs(float(b["n_step_return"][row]) - expected) < 1e-4
        assert float(b["next_observations"][row, 0]) == t + m - 1 + 0.5
        done = ds.terminals[t + m - 1]
        assert abs(float(b["bootstrap"][row]) - gamma ** m * (1 - done)) < 1e-6


@pytest.mark.parametrize("strategy", ["uniform", "geometric"])
def test_relabelled_goals_come_from_the_same_episodes_future(strategy):
    _, buf = make_buffer()
    b = buf.sample_goals(2048, strategy=strategy, discount=0.8)
    t = b["observations"][:, 0]
    goal_step = b["goals"][:, 0] - 0.5                       # goal = s' of step j, tagged j + .5
    assert torch.all(goal_step >= t)                         # future (s_{j+1}, j >= t)
    assert torch.all(b["goals"][:, 1] == b["observations"][:, 1])  # same episode
    torch.testing.assert_close(b["goal_steps"].float(), goal_step - t + 1)


def test_uniform_goals_reach_the_episode_end_and_geometric_goals_are_near():
    _, buf = make_buffer([50])
    uni = buf.sample_goals(4000, "uniform")["goal_steps"].float()
    geo = buf.sample_goals(4000, "geometric", discount=0.5)["goal_steps"].float()
    assert geo.mean() < 2.5 < uni.mean()                     # Geom(0.5) has mean 2
    t = buf.sample_goals(4000, "uniform")
    assert torch.any(t["goals"][:, 0] == 49.5)               # the last state is reachable


def test_append_and_wrap_keep_episodes_in_time_order():
    ds = episodes_dataset([6, 6, 6])
    buf = Buffer(3, 2, capacity=10)
    arrays = {k: torch.as_tensor(v) for k, v in ds.arrays().items()}
    buf.add({k: v[:6] for k, v in arrays.items()})
    assert len(buf) == 6
    buf.add({k: v[6:18] for k, v in arrays.items()})        # 18 > 10: oldest 8 overwritten
    assert len(buf) == 10
    seen = set(buf.sample(1000)["observations"][:, 0].long().tolist())
    assert seen == set(range(8, 18))
    seg = buf.sample_segments(500, length=3)
    steps = seg["observations"][..., 0].long()
    assert torch.all(steps[:, 1:] - steps[:, :-1] == 1)
    assert torch.all(seg["observations"][..., 1] == seg["observations"][:, :1, 1])


def test_add_rejects_missing_keys():
    buf = Buffer(3, 2, capacity=10)
    with pytest.raises(KeyError, match="rewards"):
        buf.add({"observations": torch.zeros(1, 3)})
