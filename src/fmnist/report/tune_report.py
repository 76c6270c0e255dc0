"""The report of a hyperparameter search: Optuna's own matplotlib figures (optimisation history,
parameter importances, parallel coordinates, slices) and report.html with the trials table.

It draws from the study and the summary it is handed; it trains nothing. A figure Optuna cannot
draw yet (too few completed trials, a single parameter) is left out, with a line saying why.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from fmnist.report import html
from fmnist.report.plots import plt, save_figure

FIGURES = (
    ("tune-history.png", "plot_optimization_history", "Optimisation history: each trial's value and the best so far"),
    ("tune-importances.png", "plot_param_importances", "Parameter importances (fANOVA over the completed trials)"),
    ("tune-parallel.png", "plot_parallel_coordinate", "Parallel coordinates: each trial's parameters and value"),
    ("tune-slice.png", "plot_slice", "Slice plot: the value against each parameter"),
)


def draw_figures(folder: Path, study) -> tuple[list[tuple[Path, str]], list[str]]:
    """([(png, caption)], [why a figure is missing])."""
    from optuna.visualization import matplotlib as optuna_plots  # optuna's plotting imports matplotlib: here, at the end of a study

    drawn, missing = [], []
    for name, function, caption in FIGURES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning on every Optuna matplotlib figure
                axes = getattr(optuna_plots, function)(study)
            first = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
            figure = first.get_figure()
            if not figure.axes or not any(axis.has_data() for axis in figure.axes):
                plt.close(figure)
                missing.append(f"{caption.split(':')[0]}: nothing to draw yet")
                continue
            drawn.append((save_figure(figure, folder / name), caption))
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError, KeyError) as exc:
            plt.close("all")
            missing.append(f"{caption.split(':')[0]}: not drawn ({' '.join(str(exc).split())[:160]})")
    return drawn, missing


def draw_tune_report(folder: Path, study, summary: dict, space_text: str, figures: tuple | None = None) -> tuple:
    """report.html of a study's output folder, with its figures: drawn now, or `figures` as an earlier
    call returned them (the study has not changed since). Returns (report path, figures)."""
    drawn = figures if figures is not None else draw_figures(folder, study)
    figures, missing = drawn
    metric = summary["metric"]
    counts = summary["counts"]
    intro = html.markup("<p>Study <code>{}</code> in <code>{}</code>: {} sampler, {} pruner, {} ({}), budget {} "
                        "trials; {} complete, {} pruned, {} failed; {:.1f} s.</p>",
                        summary["study"], summary["storage"], summary["sampler"], summary["pruner"], metric,
                        summary["direction"], summary["budget"], counts.get("complete", 0), counts.get("pruned", 0),
                        counts.get("fail", 0), summary["seconds"])
    sections = [("Study", intro)]
    best = summary.get("best")
    if best:
        sections.append(("Best trial", html.table(
            ["trial", metric, *best["params"]],
            [[best["number"], round(best["value"], 4), *(_cell(value) for value in best["params"].values())]])))
    final = summary.get("final")
    if final:
        sections.append(("Final model", html.markup(
            "<p>best.yaml trained on all training images (<code>final/</code>, its own report in "
            "<code>final/report.html</code>): test accuracy {:.2f} %, test loss {:.4f}, {:.1f} s of training.</p>",
            final["test_accuracy"] * 100, final["test_loss"], final["train_seconds"])))
    keys = sorted({key for trial in summary["trials"] for key in trial["params"]})
    rows = [[trial["number"], trial["state"], "—" if trial["value"] is None else round(trial["value"], 4),
             trial["epochs"], *(_cell(trial["params"].get(key, "—")) for key in keys), trial["fail_reason"] or ""]
            for trial in summary["trials"]]
    sections.append(("Trials", html.table(["trial", "state", metric, "epochs", *keys, "reason"], rows)))
    sections.append(("Search space", html.pre(space_text)))
    sections += [(caption, html.figure(path, caption)) for path, caption in figures]
    if missing:
        sections.append(("Figures left out", html.pre("\n".join(missing))))
    return html.write_report(folder / "report.html", f"fmnist tune: {summary['study']}", sections), drawn


def _cell(value):
    return round(value, 6) if isinstance(value, float) else value
