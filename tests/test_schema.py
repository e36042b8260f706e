"""The declared config schema: every shipped config passes, every key has a rule, and the rules
reject what they should."""
import pytest
from omegaconf import OmegaConf

from rlcore.config import group_options, load_config
from rlcore.errors import ConfigError
from rlcore.schema import count, fraction, number, rule_for, sizes, validate


@pytest.mark.parametrize("agent", group_options("agent"))
def test_every_shipped_agent_env_config_passes_and_every_key_has_a_rule(agent):
    for env in group_options("env"):
        load_config([f"agent={agent}", f"env={env}"])   # validate raises on a key without a rule


def test_a_key_without_a_rule_is_reported():
    cfg = load_config(["agent=bc"])
    OmegaConf.set_struct(cfg, False)
    cfg.agent.mystery = 3
    with pytest.raises(ConfigError, match=r"agent.mystery=3 has no rule"):
        validate(cfg)


def test_every_bad_key_is_listed_in_one_error():
    with pytest.raises(ConfigError) as exc:
        load_config(["agent=iql", "trainer.steps=0", "agent.expectile=1.0", "agent.tau=0"])
    message = str(exc.value)
    for part in ("trainer.steps=0", "agent.expectile=1.0: must be a number in (0, 1)",
                 "agent.tau=0: must be a number in (0, 1]"):
        assert part in message


def test_rules():
    assert count(1).accepts(3) and not count(1).accepts(0) and not count(1).accepts(2.0)
    assert not count(0).accepts(True)                       # a bool is not a count
    assert fraction(low_open=True).accepts(1.0) and not fraction(low_open=True).accepts(0.0)
    assert not number(0).accepts(float("nan")) and number().accepts(-3)
    assert sizes().accepts([256, 256]) and not sizes().accepts([256, 0]) and not sizes().accepts(5)
    assert rule_for("agent.critic_lr") is rule_for("agent.vae_lr")      # the shared pattern
    assert rule_for("agent.critic_lr").accepts(0.0) and not rule_for("agent.critic_lr").accepts(-1e-4)
    assert rule_for("agent.lam") is None and rule_for("agent.lam", {"lam": count()}) is not None
