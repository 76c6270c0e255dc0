"""A training run end to end: fit, evaluate the final model on the test set, write the run folder
(model.safetensors, metrics.json, the evaluation files) and draw its figures and report.html.

Under torchrun every process calls `train` with its `world`; they train together (engine/trainer.py),
and rank 0 alone evaluates and writes: the run folder is the one a single process writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fmnist.data.dataset import Dataset, load_dataset
from fmnist.engine import distributed
from fmnist.engine.config import TrainConfig
from fmnist.engine.distributed import World
from fmnist.engine.evaluate import Evaluation, evaluate_logits, evaluate_model
from fmnist.engine.progress import NullProgress, Progress
from fmnist.engine.trainer import FitResult, fit
from fmnist.modelfile import save_model
from fmnist.runfolder import RunFolder
from fmnist.workflows.evaluate_file import write_evaluation
from fmnist.workflows.redraw import redraw


@dataclass
class RunResult:
    fit: FitResult
    metrics: dict  # what metrics.json holds
    evaluation: Evaluation  # the final model on the test set

    @property
    def out(self) -> Path:
        return self.fit.out

    @property
    def model(self):
        return self.fit.model

    @property
    def history(self) -> list[dict]:
        return self.fit.history

    @property
    def config(self) -> TrainConfig:
        return self.fit.config

    @property
    def stopped_early(self) -> bool:
        return self.fit.stopped_early


def train(config: TrainConfig, out: str | Path, dataset: Dataset | None = None, progress: Progress | None = None,
          callbacks: Sequence[Callable[[dict], None]] = (), resume: bool = False,
          world: World | None = None) -> RunResult | None:
    """Train (or with `resume`, continue) `config` into the run folder `out`, then evaluate the final
    model on the test set and write every file of the run.

    `world` (torchrun's processes, engine/distributed.py): every rank calls this and they train as one;
    rank 0 returns the result, the other ranks None."""
    run, progress = RunFolder(out), progress or NullProgress()
    main = world is None or world.main
    with ExitStack() as stack:

        def check() -> None:
            if not resume:
                run.refuse_reuse()  # before the lock creates the folder
            # One process per run: a second `--resume` of a run in training is refused.
            stack.enter_context(run.locked())
            if resume:
                run.remove_stale_parts()  # temporary files of a process that was killed while writing
            elif world is not None and world.run_id:
                run.mark_launch(world.run_id)  # torchrun's restarts of this launch continue the run

        distributed.on_main(world, check)  # rank 0 checks; a refusal stops every rank with its line
        if dataset is None:
            progress.note("loading the data")  # seconds on a small machine: say so before they pass
            dataset = load_dataset(config.data)
        fitted = fit(config, run.path, dataset, progress=progress, callbacks=callbacks, resume=resume, world=world)
        if not main:
            return None
        progress.note(f"evaluating on the {len(dataset.test):,} test images")
        if fitted.test_logits is not None:  # the last validation was this very evaluation's forward pass
            test = evaluate_logits(fitted.test_logits, dataset.test.labels, dataset.classes)
        else:
            test = evaluate_model(fitted.model, dataset.test.images, dataset.test.labels, dataset.classes,
                                  next(fitted.model.parameters()).device, config.eval_batch_size)
        metrics = run_metrics(fitted, test)
        save_model(run.model, fitted.model, fitted.architecture, dataset.classes, config=config.to_dict(),
                   metrics=metrics, image_spec=fitted.image_spec)
        run.write_metrics(metrics)
        write_evaluation(run, test, dataset.classes, dataset.test.labels, config.data, str(run.model.resolve()))
        progress.note("drawing the figures and report.html")
        redraw(run.path, dataset)
    return RunResult(fitted, metrics, test)


def run_metrics(fitted: FitResult, test: Evaluation) -> dict:
    """metrics.json: the final (or restored best) epoch's validation scores and the test scores."""
    history = fitted.history
    best_epoch = max(history, key=lambda row: row["val_accuracy"])["epoch"]
    final = next(row for row in history if row["epoch"] == best_epoch) if fitted.restored_best else history[-1]
    return {
        "model": fitted.config.model_name,
        "epochs_run": len(history),
        "stopped_early": fitted.stopped_early,
        "restored_best_epoch": fitted.restored_best,
        "val_loss": final["val_loss"],
        "val_accuracy": final["val_accuracy"],
        "best_epoch": best_epoch,
        "best_val_accuracy": max(row["val_accuracy"] for row in history),
        "test_loss": test.loss,
        "test_accuracy": test.accuracy,
        "train_seconds": sum(row["seconds"] for row in history),
        "train_images": fitted.train_images,
        "validation": fitted.val_name,
        "device": fitted.device,
        "precision": fitted.precision,  # what --precision auto chose on this machine
        "threads": fitted.threads,  # torch's intra-op CPU threads (what --threads 0 chose)
    }
