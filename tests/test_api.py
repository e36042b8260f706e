"""The Python front door gives the same objects and results as the CLI."""
import numpy as np
import torch

import rlcore

TINY = ("agent.policy_hidden=[32]", "agent.value_hidden=[32]", "data.transitions=3000",
        "env.dataset=hopper-pd-noisy",
        "trainer.eval_episodes=2", "trainer.progress=false")


def test_make_update_act_without_the_cli():
    setup = rlcore.make("odice", "hopper", *TINY, seed=3)
    assert setup.cfg.seed == 3 and isinstance(setup.agent, rlcore.Agent)
    # O-DICE's locomotion preprocessing: r * 1000 / (max return - min return)
    returns = setup.dataset.episode_returns()
    factor = 1000 / (returns.max() - returns.min())
    np.testing.assert_allclose(setup.buffer.storage["rewards"][:100].numpy(),
                               setup.dataset.rewards[:100] * factor, rtol=1e-5)
    metrics = setup.agent.update(setup.agent.sample(setup.buffer, 64))
    assert all(torch.isfinite(v) for v in metrics.values())
    action = setup.agent.act(torch.zeros(1, 5, setup.dataset.obs_dim))   # [seeds, n, obs]
    assert action.shape == (1, 5, 3) and action.abs().max() <= 1
    result = setup.evaluate(episodes=2)
    assert set(result) >= {"return_mean", "score_mean"} and result["episodes"] == 2


def test_train_from_python_matches_the_cli_run(tmp_path):
    [a] = rlcore.train("odice", "hopper", *TINY, "trainer.steps=30", "trainer.eval_every=30",
                     run_dir=str(tmp_path / "a"))
    from rlcore.cli import main
    assert main(["train", "agent=odice", "env=hopper", *TINY, "trainer.steps=30",
                 "trainer.eval_every=30", f"run_dir={tmp_path / 'b'}"]) == 0
    import json
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a.last_score == b["last_score"] and a.steps == 30
    assert {"odice", "sac", "iql"} <= set(rlcore.list_agents()) and "hopper-pd-noisy" in rlcore.list_datasets()
