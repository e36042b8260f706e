"""The declared schema every composed config is checked against, before anything is built or
written: each key a user can override has a rule (type and range), and a bad value fails with
one line naming the key, the value and what is valid.

Rules for the engine's keys and the agent keys several agents share live here; a key only one
agent has is declared by that agent class (`config_schema = {"lam": fraction(...)}`).
tests/test_schema.py checks that every key of every shipped agent x env config has a rule.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from rlcore.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    valid: str                          # what is valid, as the error message says it
    accepts: Callable[[Any], bool]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def count(minimum: int = 1) -> Rule:
    return Rule(f"an integer >= {minimum}", lambda v: _is_int(v) and v >= minimum)


def number(low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Rule:
    """A real number in [low, high], with either end open or absent."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    if low is None and high is None:
        valid = "a number"
    elif high is None:
        valid = f"a number {'>' if low_open else '>='} {low:g}"
    elif low is None:
        valid = f"a number {'<' if high_open else '<='} {high:g}"
    else:
        valid = f"a number in {left}{low:g}, {high:g}{right}"

    def accepts(v) -> bool:
        if not _is_number(v) or v != v:
            return False
        if low is not None and (v < low or (low_open and v == low)):
            return False
        return high is None or not (v > high or (high_open and v == high))
    return Rule(valid, accepts)


def positive() -> Rule:
    return number(0, None, low_open=True)


def fraction(low_open: bool = False, high_open: bool = False) -> Rule:
    return number(0, 1, low_open, high_open)


def choice(*options) -> Rule:
    valid = str(options[0]) if len(options) == 1 else "one of " + ", ".join(map(str, options))
    return Rule(valid, lambda v: v in options)


def flag() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def text() -> Rule:
    return Rule("a string", lambda v: isinstance(v, str) and v != "")


def sizes() -> Rule:
    return Rule("a list of integers >= 1, e.g. [256,256]",
                lambda v: isinstance(v, (list, ListConfig)) and all(_is_int(x) and x >= 1 for x in v))


def mapping() -> Rule:
    return Rule("a mapping", lambda v: isinstance(v, (dict, DictConfig)))


def optional(rule: Rule) -> Rule:
    return Rule(f"null or {rule.valid}", lambda v: v is None or rule.accepts(v))


def either(*rules: Rule) -> Rule:
    return Rule(" or ".join(r.valid for r in rules), lambda v: any(r.accepts(v) for r in rules))


def seed_list() -> Rule:
    return either(Rule("null", lambda v: v is None), count(1),
                  Rule("a list of integers >= 0",
                       lambda v: isinstance(v, (list, ListConfig)) and len(v) > 0
                       and all(_is_int(x) and x >= 0 for x in v)))


RULES = {
    "seed": count(0),
    "seeds": seed_list(),
    "device": text(),
    "run_dir": optional(text()),
    "runs_root": text(),
    "resume": optional(text()),
    "trainer.steps": count(1),
    "trainer.log_every": count(1),
    "trainer.eval_every": count(1),
    "trainer.eval_episodes": count(1),
    "trainer.checkpoint_every": count(1),
    "trainer.keep_checkpoints": count(1),
    "trainer.progress": flag(),
    "trainer.compile": choice("auto", "eager", "compile", "cudagraphs"),
    "trainer.updates_per_call": either(choice("auto"), count(1)),
    "trainer.captured_adam": choice("foreach", "fused"),
    "trainer.matmul_precision": choice("highest", "high"),
    "data.transitions": optional(count(1)),
    "data.seed": count(0),
    "data.dir": optional(text()),
    "data.augment": choice("none", "temporal"),
    "data.augment_prob": fraction(),
    "data.clusters": optional(count(1)),
    "logger.tensorboard": either(choice("auto"), flag()),
    "logger.wandb": flag(),
    "logger.wandb_project": text(),
    "bench.updates": count(1),
    "bench.warmup": count(0),
    "bench.modes": either(choice("auto"), Rule("a list of trainer.compile modes",
                                               lambda v: isinstance(v, (list, ListConfig)))),
    "bench.updates_per_call": count(1),
    "bench.seeds": count(1),
    "bench.agents": optional(either(choice("all"), text(), Rule("a list of agent names",
                                    lambda v: isinstance(v, (list, ListConfig))))),
    "bench.transitions": count(1),
    "bench.out": text(),
    "bench.sustained": Rule("0 or an integer >= 2000",
                            lambda v: _is_int(v) and (v == 0 or v >= 2000)),
    "env.name": text(),
    "env.gym_id": text(),
    "env.family": text(),
    "env.score": text(),
    "env.max_episode_steps": count(1),
    "env.dataset": optional(text()),
    "env.on_policy_horizon": optional(count(1)),
    "env.expert_episodes": optional(count(1)),
    "env.expert_first": count(0),
    "env.suboptimal": optional(text()),
    "env.gym_kwargs": mapping(),
    "env.goal_tasks": optional(count(1)),
    "env.clusters": optional(count(1)),
    "env.labels": optional(choice("dense", "sparse")),
    "env.labeller": choice("regret", "discounted_regret", "return"),
    "env.segments": count(1),
    "env.pairs": count(1),
    "env.segment_length": count(2),
    "env.label_noise": number(0, 1, high_open=True),
    "env.oracle_steps": count(1),
    "env.source": optional(text()),
    "env.transfer": choice("cpa", "direct"),
    "env.transfer_block": count(2),
    "env.transfer_solver": choice("exact", "entropic"),
    # inventory simulators (rlcore.envs.inventory checks the values themselves)
    "env.simulator": choice("inventory"),
    "env.setting": text(),
    "env.lost_demand": flag(),
    "env.demand": mapping(),
    "env.p": positive(),
    "env.h": positive(),
    "env.lead_time": number(),
    "env.initial_inventory_periods": count(1),
    "env.warehouse": mapping(),
    "env.echelons": mapping(),
    "env.stores": count(1),
    "env.p_range": Rule("[low, high]", lambda v: isinstance(v, (list, ListConfig)) and len(v) == 2),
    "env.holding_range": Rule("[low, high]", lambda v: isinstance(v, (list, ListConfig)) and len(v) == 2),
    "env.store_lead_time_range": Rule("[low, high]", lambda v: isinstance(v, (list, ListConfig)) and len(v) == 2),
    "env.parameter_seeds": mapping(),
    "env.scenarios.*.samples": count(1),
    "env.scenarios.*.periods": count(1),
    "env.scenarios.*.ignore": count(0),
    "env.scenarios.*.seed": count(0),
    "env.scenarios.*.batch_size": count(1),
    "env.transfer_epsilon": positive(),
    "env.transfer_features": choice("state_action", "state", "action"),
    "env.transfer_steps": count(1),
    # agent keys several agents share
    "agent.name": text(),
    "agent.batch_size": count(1),
    "agent.*_lr": number(0),        # a learning rate of 0 freezes that network (ablations, tests)
    "agent.lr": number(0),
    "agent.*hidden": sizes(),
    "agent.discount": fraction(low_open=True),
    "agent.tau": fraction(low_open=True),
    "agent.normalize_obs": flag(),
    "agent.reward_free": flag(),
    "agent.online": flag(),
    "agent.reward": mapping(),
    "agent.per_dataset": mapping(),
    "agent.run_defaults": mapping(),
    "agent.lr_decay_steps": count(0),
    "agent.weight_clip": positive(),
    "agent.beta": positive(),
    "agent.expectile": fraction(low_open=True, high_open=True),
    "agent.policy_noise": number(0),
    "agent.noise_clip": number(0),
    "agent.policy_freq": count(1),
    "agent.alpha": positive(),
    "agent.*layer_norm": flag(),
    "agent.max_clip": positive(),
    "agent.temperature": positive(),
}


def _leaves(cfg: DictConfig, extra: dict | None, prefix: str = ""):
    """Full keys of the leaves, a mapping with a rule of its own counting as one leaf."""
    for key in cfg:
        full = f"{prefix}{key}"
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and rule_for(full, extra) is None:
            yield from _leaves(node, extra, full + ".")
        else:
            yield full


def rule_for(key: str, extra: dict[str, Rule] | None = None) -> Rule | None:
    table = {**RULES, **{f"agent.{k}": r for k, r in (extra or {}).items()}}
    if key in table:
        return table[key]
    for pattern, rule in table.items():
        if "*" in pattern and fnmatch.fnmatchcase(key, pattern):
            return rule
    return None


def check_rules(cfg, rules: dict[str, Rule], prefix: str = "agent.") -> None:
    """Check the keys of `cfg` that `rules` names (an agent built without load_config)."""
    problems = [f"{prefix}{key}={cfg[key]!r}: must be {rule.valid}" for key, rule in rules.items()
                if key in cfg and not rule.accepts(cfg[key])]
    if problems:
        raise ConfigError("; ".join(problems))


def validate(cfg: DictConfig, agent_schema: dict[str, Rule] | None = None) -> None:
    """Raise ConfigError listing every key whose value breaks its rule, or that has no rule."""
    problems = []
    for key in _leaves(cfg, agent_schema):
        rule = rule_for(key, agent_schema)
        try:
            value = OmegaConf.select(cfg, key)
        except Exception as exc:                                  # a broken interpolation
            problems.append(f"{key}: cannot be resolved ({exc})")
            continue
        if isinstance(value, ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if rule is None:
            problems.append(f"{key}={value!r} has no rule in the config schema (rlcore/schema.py, "
                            "or the agent's config_schema)")
        elif not rule.accepts(value):
            problems.append(f"{key}={value!r}: must be {rule.valid}")
    if problems:
        raise ConfigError("; ".join(problems))
