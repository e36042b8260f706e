"""Configs: Hydra composition of configs/ (shipped inside the package) plus override sweeps."""
from __future__ import annotations

import fnmatch
import itertools
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import rlcore.configs
from rlcore.errors import ConfigError
from rlcore.schema import validate

CONFIG_DIR = Path(rlcore.configs.__file__).parent


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _parse(overrides: list[str]):
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"cannot parse overrides {overrides}: {exc}") from None


def _check_groups(overrides: list[str]) -> None:
    for o in _parse(overrides):
        key = o.get_key_element()
        if key in ("agent", "env") and not o.is_sweep_override():
            value = o.value()
            if value not in group_options(key):
                raise ConfigError(f"unknown {key} {value!r}; valid {key}s: "
                                  f"{', '.join(group_options(key))}")


def load_config(overrides: list[str] = ()) -> DictConfig:
    """Compose config.yaml with Hydra overrides, then apply the agent's per-dataset values.

    Values the user set explicitly (`agent.lam=...`) win over per-dataset ones.
    """
    overrides = list(overrides)
    _check_groups(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base=None):
            cfg = compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip() and "full_key" not in ln
                 and "object_type" not in ln and not ln.startswith("    ")]
        msg = " ".join(lines[:2])
        if "Ambiguous value" in str(exc) or "sweep" in str(exc).lower():
            msg += " (a sweep like seed=0,1,2 needs multirun: rlcore train -m ...)"
        raise ConfigError(msg) from None
    finally:
        GlobalHydra.instance().clear()
    explicit = {o.get_key_element() for o in _parse(overrides)}
    apply_run_defaults(cfg, explicit)
    apply_per_dataset(cfg, explicit)
    check_config(cfg)
    return cfg


def check_config(cfg: DictConfig) -> None:
    """Every value against the declared schema (rlcore.schema plus the agent's own rules)."""
    from rlcore.registry import AGENTS                  # the registry imports the agents
    validate(cfg, AGENTS.get(cfg.agent.name).config_schema)


def apply_run_defaults(cfg: DictConfig, explicit: set[str]) -> None:
    """An agent's `run_defaults` (full keys such as `trainer.steps`) for the authors' run, e.g.
    O-DICE imitation's 500k updates on one expert trajectory; the user's overrides win."""
    for key, value in (cfg.agent.get("run_defaults") or {}).items():
        if key not in explicit:
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)   # env.dataset on an env without one


def apply_per_dataset(cfg: DictConfig, explicit: set[str]) -> None:
    per_dataset = cfg.agent.get("per_dataset") or {}
    if not per_dataset or not cfg.env.get("dataset"):
        return
    dataset = Path(str(cfg.env.dataset)).stem
    for pattern, values in per_dataset.items():
        if fnmatch.fnmatch(dataset, pattern):
            for key, value in values.items():
                if f"agent.{key}" not in explicit:
                    OmegaConf.update(cfg, f"agent.{key}", value, merge=False)


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Plain `key=value` overrides on an already-resolved config (used when resuming)."""
    for o in _parse(overrides):
        if o.is_sweep_override():
            raise ConfigError(f"{o.input_line}: sweeps cannot be combined with resume")
        key = o.get_key_element()
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"{key} is not a key of the run's config")
        OmegaConf.update(cfg, key, o.value(), merge=False)
    check_config(cfg)
    return cfg


def expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """Hydra's basic sweeper: the cartesian product of every `key=a,b,c` override."""
    axes = []
    for o in _parse(overrides):
        if o.is_sweep_override():
            axes.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(job) for job in itertools.product(*axes)]


def resolve_device(name: str) -> torch.device:
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available to torch "
                          f"{torch.__version__} here; use device=cpu or device=auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
