"""`fmnist lr-find`: the learning-rate sweep, written as lr_find.json, lr-find.png and report.html."""

from __future__ import annotations

from pathlib import Path

from fmnist.data.dataset import Dataset, load_dataset
from fmnist.engine.config import TrainConfig
from fmnist.engine.lr_find import lr_find
from fmnist.errors import FmnistError
from fmnist.report import diagnostics, html
from fmnist.runfolder import RunFolder


def find_lr(config: TrainConfig, out: str | Path, dataset: Dataset | None = None, start: float = 1e-7,
            end: float = 10.0, steps: int = 100) -> dict:
    """Sweep the learning rate for `config`'s model and optimizer; write the folder `out`; return the
    sweep (`lrs`, `losses` (smoothed), `raw_losses`, `suggestion`, `min_loss_lr`, `steps`)."""
    if steps < 10:
        raise FmnistError(f"--steps must be at least 10, got {steps}")
    dataset = dataset if dataset is not None else load_dataset(config.data)
    result = lr_find(config, dataset, start=start, end=end, steps=steps)
    run = RunFolder(out)
    run.write_lr_find({"model": config.model_name, "optimizer": config.optimizer, **result})
    figure = diagnostics.plot_lr_finder(result["lrs"], result["losses"], result["suggestion"], run / "lr-find.png",
                                        f"Learning-rate finder: {config.model_name}, {config.optimizer}",
                                        raw_losses=result["raw_losses"], lowest=result["min_loss_lr"])
    html.write_report(run / "report.html", f"fmnist lr-find: {config.model_name}",
                      [("Learning-rate finder", html.figure(figure, "Smoothed loss against learning rate"))])
    return result
