"""The run folder's files (fmnist.runfolder): names, round trips, refusals, and nothing half-written.

`fmnist report` redraws every figure from these files and `--resume` continues from them, so what is
written must read back exactly; the training tests write them through real runs, these in milliseconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmnist import runfolder
from fmnist.errors import FmnistError
from fmnist.runfolder import RunFolder, write_json


def _files(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_file_names(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert (run.config, run.model, run.checkpoints, run.resume_state, run.checkpoint("a.safetensors"), run / "x.png") == (
        tmp_path / "run" / "config.yaml", tmp_path / "run" / "model.safetensors", tmp_path / "run" / "checkpoints",
        tmp_path / "run" / "checkpoints" / "resume.safetensors", tmp_path / "run" / "checkpoints" / "a.safetensors",
        tmp_path / "run" / "x.png")
    assert runfolder.checkpoint_name("baseline", 3, 0.91236) == "baseline-epoch-03-val_acc-0.9124.safetensors"
    assert runfolder.checkpoint_name("fast", 12, 1.0) == "fast-epoch-12-val_acc-1.0000.safetensors"


def test_labels_fingerprint_is_stable_across_dtypes():
    """evaluation.json records it and `fmnist report` compares it with the test labels it finds: it must not
    change between versions or with the labels' dtype."""
    expected = "7c4cec7a82e1aa578a08e41043044a9bfed3839e107aef17f4bf292878784259"
    assert runfolder.labels_sha256(np.array([3, 1, 2], dtype=np.uint8)) == expected
    assert runfolder.labels_sha256([3, 1, 2]) == expected and runfolder.labels_sha256([3, 2, 1]) != expected


def test_a_run_starts_once(tmp_path):
    run = RunFolder(tmp_path / "runs" / "a")  # parents are created
    assert run.read_config_text() is None and run.read_history() is None and run.read_metrics() is None
    run.start("model: dense\n")
    assert run.read_config_text() == "model: dense\n" and _files(run.path) == ["config.yaml"]
    with pytest.raises(FmnistError) as caught:
        run.start("model: other\n")
    assert str(caught.value) == f"{run.path}: already holds a run; continue it with --resume or choose another --out"
    assert run.read_config_text() == "model: dense\n"
    made = RunFolder(tmp_path / "made-by-hand")  # an --out folder created beforehand, still empty
    made.path.mkdir()
    made.start("model: dense\n")
    assert made.read_config_text() == "model: dense\n"


def test_history_is_written_to_6_digits_and_read_back(tmp_path):
    run = RunFolder(tmp_path)
    rows = [{"epoch": 1, "loss": 0.123456789, "accuracy": 0.5, "val_loss": 0.4, "val_accuracy": 0.75, "lr": 0.01,
             "seconds": 12.3456789, "note": "not a column"},
            {"epoch": 2, "loss": 0.1, "accuracy": 0.625, "val_loss": 0.5, "val_accuracy": 1, "lr": 1e-05, "seconds": 3}]
    run.write_history(rows)
    assert (tmp_path / "history.csv").read_bytes() == (  # bytes: "\n" line ends, as csv.writer's "\r\n" are not
        b"epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n"
        b"1,0.123457,0.5,0.4,0.75,0.01,12.3457\n"
        b"2,0.1,0.625,0.5,1,1e-05,3\n")
    assert run.read_history() == [
        {"epoch": 1, "loss": 0.123457, "accuracy": 0.5, "val_loss": 0.4, "val_accuracy": 0.75, "lr": 0.01,
         "seconds": 12.3457},
        {"epoch": 2, "loss": 0.1, "accuracy": 0.625, "val_loss": 0.5, "val_accuracy": 1.0, "lr": 1e-05, "seconds": 3.0}]
    assert [type(row["epoch"]) for row in run.read_history()] == [int, int]
    # Every epoch is validated: a row without its validation figures is damage, not a short epoch.
    run.write_history([{"epoch": 1, "loss": 0.1, "accuracy": 0.625, "lr": 1e-05, "seconds": 3}])
    with pytest.raises(FmnistError) as caught:
        run.read_history()
    assert str(caught.value) == f"{tmp_path / 'history.csv'}: line 2: a value is missing"


def test_json_files_round_trip_and_a_damaged_one_is_one_line(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_metrics({"test_accuracy": 0.9, "data": tmp_path / "data"})  # a path is written as text
    assert (tmp_path / "run" / "metrics.json").read_text() == (
        '{\n  "test_accuracy": 0.9,\n  "data": "' + str(tmp_path / "data") + '"\n}\n')
    assert run.read_metrics() == {"test_accuracy": 0.9, "data": str(tmp_path / "data")}
    for content, detail in ((b'{"test_accuracy": ', "Expecting value"), (b"\xff\xfe", "not UTF-8 text")):
        (tmp_path / "run" / "metrics.json").write_bytes(content)
        with pytest.raises(FmnistError) as caught:
            run.read_metrics()
        message = str(caught.value)
        assert message.startswith(f"{tmp_path / 'run' / 'metrics.json'}: not valid JSON (") and detail in message


EVALUATION = {"test_loss": 0.5, "test_accuracy": 2 / 3, "images": 3, "labels_sha256": "ab", "classes": ["a", "b", "c"],
              "report_text": "report text\n",
              "report": {name: {"precision": 1, "recall": 0.5, "f1-score": 0.75} for name in ("a", "b", "c")},
              "confusion_matrix": [[1, 0, 0], [0, 0, 1], [0, 0, 1]]}


def test_an_evaluation_reads_back_exactly(tmp_path):
    run = RunFolder(tmp_path / "run" / "evaluation")  # parents are created
    assert not run.is_output_folder() and run.read_evaluation() is None and run.read_predictions(3, 3) is None
    labels, predictions = np.array([0, 1, 2], np.uint8), np.array([0, 2, 2], np.int32)
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.0, 0.25, 0.75]], np.float64)
    run.write_evaluation(EVALUATION, "report text\n", labels, predictions, probabilities)
    assert _files(run.path) == ["classification_report.txt", "evaluation.json", "predictions.npz"]
    assert run.is_output_folder() and run.read_evaluation() == EVALUATION
    assert (run.path / "classification_report.txt").read_text() == "report text\n"
    saved_labels, saved_predictions, saved_probabilities = run.read_predictions(3, 3)
    assert (saved_labels.dtype, saved_predictions.dtype, saved_probabilities.dtype) == (np.int64, np.int64, np.float32)
    assert saved_labels.tolist() == [0, 1, 2] and saved_predictions.tolist() == [0, 2, 2]
    assert np.array_equal(saved_probabilities, probabilities.astype(np.float32))
    # Checked against the evaluation's image and class counts.
    for images, classes in ((4, 3), (3, 4), (3, 2)):
        with pytest.raises(FmnistError) as caught:
            run.read_predictions(images, classes)
        assert str(caught.value) == (f"{run.path / 'predictions.npz'}: does not match evaluation.json "
                                     f"({images:,} images of {classes} classes)")
    # A predictions.npz holding pickled objects is refused, never unpickled.
    np.savez(run.path / "predictions.npz", labels=np.array([object()]), predictions=labels, probabilities=probabilities)
    with pytest.raises(FmnistError) as caught:
        run.read_predictions(3, 3)
    assert str(caught.value).startswith(f"{run.path / 'predictions.npz'}: damaged or not written by fmnist (")
    assert "allow_pickle=False" in str(caught.value)


def test_a_damaged_evaluation_is_one_line(tmp_path):
    run = RunFolder(tmp_path)
    for change, problem in (({"confusion_matrix": [[1, 0, 0], [0, 0, 1]]}, "the confusion matrix is not 3×3"),
                            ({"confusion_matrix": [[1, 0, 0], [0, 0, 1], [0, 1]]}, "the confusion matrix is not 3×3"),
                            ({"report": {"a": {"precision": 1, "recall": 0.5, "f1-score": 0.75}}},
                             "report.b must be an object, not NoneType"),
                            ({"test_accuracy": "high"}, "test_accuracy must be a number, not str")):
        write_json(tmp_path / "evaluation.json", {**EVALUATION, **change})
        with pytest.raises(FmnistError) as caught:
            run.read_evaluation()
        assert str(caught.value) == f"{tmp_path / 'evaluation.json'}: {problem}"


@pytest.mark.parametrize("name", ["history.csv", "cv.json", "evaluation.json", "metrics.json"])
def test_each_output_file_marks_an_output_folder(tmp_path, name):
    (tmp_path / "figures.png").write_bytes(b"")
    (tmp_path / "report.html").write_text("")
    assert not RunFolder(tmp_path).is_output_folder()
    (tmp_path / name).mkdir()  # a folder of that name is not the file
    assert not RunFolder(tmp_path).is_output_folder()
    (tmp_path / name).rmdir()
    (tmp_path / name).write_text("{}")
    assert RunFolder(tmp_path).is_output_folder()


CV_SUMMARY = {"folds": 2, "stratified": True, "seed": 0, "train_images": 100, "folds_sha256": "ab",
              "models": [{"name": "dense", "scores": [0.9, 0.8], "mean": 0.85, "std": 0.05, "n": 2, "seconds": 1.5,
                          "histories": [[{"epoch": 1, "loss": 1, "accuracy": 0.5, "val_loss": 1, "val_accuracy": 0.5}]]}]}


def test_cv_and_lr_find_files(tmp_path):
    cv = RunFolder(tmp_path / "cv" / "nested")
    assert cv.read_cv() is None
    cv.write_cv({**CV_SUMMARY, "models": []})
    cv.write_cv(CV_SUMMARY)  # written again: replaced
    assert cv.read_cv() == CV_SUMMARY and cv.is_output_folder()
    cv.write_cv({key: value for key, value in CV_SUMMARY.items() if key != "folds"})
    with pytest.raises(FmnistError) as caught:
        cv.read_cv()
    assert str(caught.value) == f"{tmp_path / 'cv' / 'nested' / 'cv.json'}: folds is missing"
    lr = RunFolder(tmp_path / "lr" / "nested")
    lr.write_lr_find({"suggested_lr": 0.1})
    lr.write_lr_find({"suggested_lr": 0.01})
    assert json.loads((tmp_path / "lr" / "nested" / "lr_find.json").read_text()) == {"suggested_lr": 0.01}
    assert _files(tmp_path) == ["cv/nested/cv.json", "lr/nested/lr_find.json"]


def test_a_damaged_history_is_one_line(tmp_path):
    run, path = RunFolder(tmp_path), tmp_path / "history.csv"
    for content, problem in [(b"epoch,loss,accuracy,lr,seconds\n1,0.1,0.5,0.01,3\n",
                              "not a history file fmnist wrote (no column val_loss, val_accuracy)"),
                             (b"epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n1,0.1,0.5,0.4,0.7,0.01,3\n"
                              b"2,x,0.5,0.4,0.7,0.01,3\n", "line 3: could not convert string to float: 'x'"),
                             (b"epoch,loss\n\xff\xfe\n", "not a text file")]:
        path.write_bytes(content)
        with pytest.raises(FmnistError) as caught:
            run.read_history()
        assert str(caught.value) == f"{path}: {problem}"


def test_metrics_are_checked_against_their_schema(tmp_path):
    run = RunFolder(tmp_path)
    write_json(tmp_path / "metrics.json", {"model": 3, "test_accuracy": 0.9})
    with pytest.raises(FmnistError) as caught:
        run.read_metrics()
    assert str(caught.value) == f"{tmp_path / 'metrics.json'}: model must be a str, not int"


@pytest.mark.parametrize("change", [
    {"labels": np.array([0.0, 1.0, 2.0])}, {"predictions": np.array([0.0, 2.0, 2.0])},  # not integers
    {"labels": np.array([-1, 1, 2])}, {"labels": np.array([0, 1, 3])},  # outside the classes
    {"predictions": np.array([-1, 2, 2])}, {"predictions": np.array([0, 2, 3])},
    {"predictions": np.array([0, 2])}, {"labels": np.array([0, 1])},  # one image short
    {"probabilities": np.full((3, 2), 0.5)},
])
def test_predictions_that_do_not_fit_the_evaluation_are_refused(tmp_path, change):
    run = RunFolder(tmp_path)
    saved = {"labels": np.array([0, 1, 2]), "predictions": np.array([0, 2, 2]), "probabilities": np.full((3, 3), 1 / 3)}
    np.savez(tmp_path / "predictions.npz", **{**saved, **change})
    with pytest.raises(FmnistError) as caught:
        run.read_predictions(3, 3)
    assert str(caught.value) == f"{tmp_path / 'predictions.npz'}: does not match evaluation.json (3 images of 3 classes)"
    np.savez(tmp_path / "predictions.npz", **saved)
    assert [array.tolist() for array in run.read_predictions(3, 3)[:2]] == [[0, 1, 2], [0, 2, 2]]


def test_an_abandoned_attempt_is_forgotten_and_stale_temporary_files_removed(tmp_path):
    run = RunFolder(tmp_path)
    (tmp_path / "config.yaml").write_text("epochs: 2\n")
    run.write_history([{"epoch": 1, "loss": 0.1, "accuracy": 0.5, "val_loss": 0.4, "val_accuracy": 0.7, "lr": 0.01,
                        "seconds": 3}])
    run.checkpoints.mkdir(parents=True)
    (run.checkpoints / "last.safetensors").write_bytes(b"weights")
    run.discard_progress()
    assert not (tmp_path / "history.csv").exists() and list(run.checkpoints.iterdir()) == []
    assert (tmp_path / "config.yaml").is_file()
    run.discard_progress()  # nothing left to forget: no error
    stale = [tmp_path / ".metrics.json.abc123.part", run.checkpoints / ".last.safetensors.x1.part"]
    for path in stale:
        path.write_bytes(b"half")
    (tmp_path / "keep.part").write_bytes(b"not ours: no leading dot")
    assert sorted(run.remove_stale_parts()) == sorted(stale)
    assert not any(path.exists() for path in stale) and (tmp_path / "keep.part").is_file()
    assert run.remove_stale_parts() == []
