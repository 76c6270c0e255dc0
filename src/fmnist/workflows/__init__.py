"""Orchestration: the jobs a user asks for, each one function that the CLI and the Python API share.

    train_run.py      fit → evaluate on the test set → write the run folder → draw its report
    crossval.py       k-fold cross-validation of one or more configs (cv.json, fold folders, --final)
    evaluate_file.py  a model file on the test set (evaluation.json, figures, report)
    redraw.py         every figure and report.html of an output folder, from its files
    lr_find.py        the learning-rate sweep, its figure and report
    activations.py    feature maps of a model file, figure and report
    explore.py        the first look at the data
    export_file.py    a model file → ONNX, checked on the test images
    predict_files.py  predict images, optionally saving what the model saw
    serve/            the HTTP API and page (`fmnist serve`)

This is the only layer that writes output folders (through fmnist.runfolder) and the only one that
calls both the engine and fmnist.report; neither of those imports this layer.
"""
