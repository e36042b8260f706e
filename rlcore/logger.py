"""Run logging: metrics.jsonl always, TensorBoard when installed, W&B only when asked."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rlcore.errors import UserError
from rlcore.fileio import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def progress_bar(**kwargs):
    """tqdm, redrawn at most every 30 s when stderr is a file or pipe (a log, not a flood)."""
    from tqdm.auto import tqdm
    seconds = 0.5 if sys.stderr.isatty() else 30
    return tqdm(dynamic_ncols=True, mininterval=seconds, maxinterval=max(10, 2 * seconds), **kwargs)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            break
    return rows


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Drop rows logged after `last_step` (a killed run logs past its last checkpoint)."""
    rows = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    atomic_write_text(Path(run_dir) / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in rows))


class RunLogger:
    def __init__(self, run_dir: Path, cfg: DictConfig):
        self.path = run_dir / METRICS_FILE
        self.file = open(self.path, "a")
        self.tb = self.wandb = None
        use_tb = cfg.logger.tensorboard
        if use_tb == "auto":
            use_tb = importlib.util.find_spec("tensorboard") is not None
        if use_tb:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        if cfg.logger.wandb:
            try:
                import wandb
            except ImportError:
                raise UserError("logger.wandb=true needs the wandb package: pip install wandb") from None
            self.wandb = wandb.init(project=cfg.logger.wandb_project, dir=str(run_dir),
                                    name=run_dir.name, resume="allow",
                                    config=OmegaConf.to_container(cfg, resolve=True))

    def log(self, kind: str, step: int, values: dict) -> None:
        row = {"kind": kind, "step": step, **values}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        numeric = {f"{kind}/{k}": v for k, v in values.items() if isinstance(v, (int, float))}
        if self.tb is not None:
            for key, value in numeric.items():
                self.tb.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(numeric, step=step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
