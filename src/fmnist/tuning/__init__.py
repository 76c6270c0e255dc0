"""Hyperparameter search: the search-space file (space.py) and the Optuna storage (storage.py).

Between the engine and the workflows: it builds TrainConfigs and CNN specs, and never writes a run
folder (workflows/tune.py does).
"""
