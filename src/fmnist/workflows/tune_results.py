"""What a study's output folder holds at the end: tune.json, best.yaml, figures and report.html; and the
two views of a study the workers need while it runs (the budget count, the progress line)."""

from __future__ import annotations

import optuna
import yaml
from optuna.trial import TrialState

from fmnist._io import write_text_atomic
from fmnist.engine.config import config_from_dict, dump_config
from fmnist.report.tune_report import draw_tune_report
from fmnist.runfolder import write_json
from fmnist.tuning.storage import hide_password

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def budget_state(study: optuna.Study) -> tuple[int, int, int]:
    """(trials counted against the budget, WAITING, RUNNING). Every trial counts once, whatever its
    state, except a stale trial that was retried: its retry stands in for it."""
    trials = study.get_trials(deepcopy=False)
    retried = {number for trial in trials for number in trial.system_attrs.get("retry_history", [])}
    used = sum(1 for trial in trials if trial.number not in retried)
    waiting = sum(1 for trial in trials if trial.state == TrialState.WAITING)
    running = sum(1 for trial in trials if trial.state == TrialState.RUNNING)
    return used, waiting, running


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no trial has completed yet
        return None


def trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial, metric: str) -> str:
    """`trial 3 complete  val_accuracy 0.8120  lr=0.0031 batch_size=64  best 0.8120 (trial 3)`"""
    params = " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                      for key, value in trial.params.items())
    if trial.state == TrialState.FAIL:
        head = f"trial {trial.number} failed: {trial.user_attrs.get('fail_reason', 'no reason recorded')}"
    elif trial.state == TrialState.PRUNED:
        value = f"  {metric} {trial.value:.4f}" if trial.value is not None else ""
        head = f"trial {trial.number} pruned after epoch {len(trial.intermediate_values)}{value}"
    else:
        head = f"trial {trial.number} complete  {metric} {trial.value:.4f}"
    best = _best(study)
    tail = f"  best {best.value:.4f} (trial {best.number})" if best is not None else ""
    return f"{head}  {params}{tail}"


def trial_record(trial: optuna.trial.FrozenTrial) -> dict:
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value, "params": trial.params,
            "epochs": len(trial.intermediate_values), "fail_reason": trial.user_attrs.get("fail_reason"),
            "retry_of": trial.system_attrs.get("failed_trial"),
            "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start else None}


def write_results(study: optuna.Study, job, seconds: float, final: dict | None = None,
                  figures: tuple | None = None) -> tuple[dict, tuple]:
    """tune.json, best.yaml (a complete train config), figures and report.html in job.out; `final`: the
    test scores of best.yaml trained on all training images (--final); `figures`: the ones an earlier
    call drew, not drawn again. Returns (what tune.json holds, the figures)."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    best = _best(study)
    summary = {
        "study": job.study, "storage": hide_password(job.url), "metric": job.metric,
        "direction": study.direction.name.lower(), "sampler": job.sampler, "pruner": job.pruner,
        "budget": job.budget, "workers": job.workers, "space": job.space.describe(),
        "fixed": job.base.to_dict(), "seconds": seconds,
        "finished": sum(1 for trial in trials if trial.state in FINISHED), "counts": counts,
        "trials": [trial_record(trial) for trial in trials],
        "best": None, "final": final,
    }
    if best is not None:
        config = config_from_dict(best.user_attrs["config"], origin=f"trial {best.number}")
        config.extra = {**config.extra, "tuned": {"study": job.study, "trial": best.number, job.metric: best.value}}
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                           "config": config.to_dict()}
        write_text_atomic(job.out / "best.yaml",
                          f"# fmnist tune: study {job.study!r}, trial {best.number}, {job.metric} {best.value:.6f}\n"
                          f"# reproduce it: fmnist train --config best.yaml\n" + dump_config(config))
    write_json(job.out / "tune.json", summary)
    _, figures = draw_tune_report(job.out, study, summary, yaml.safe_dump(job.space.describe(), sort_keys=False),
                                  figures)
    return summary, figures
