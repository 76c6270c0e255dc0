"""A pytest plugin for `make mutation` (loaded with `-p mutmut_hits`): it makes mutmut's map from mutated
functions to tests complete.

mutmut records, per test, the mutated functions called in the test process, then runs only those tests
against a function's mutants. Two kinds of call escape it, and tests that would kill a mutant are then
never run against it:
- calls in `fmnist` subprocesses: sitecustomize.py beside this file writes them to $FMNIST_MUTATION_HITS,
  and they are added here;
- calls while a module- or session-scoped fixture is set up (a training run several tests read): mutmut
  credits them to the first test only; here they are credited to every test that uses the fixture.
The time a test spends setting up its fixtures is added to its recorded duration, which mutmut's
per-mutant timeout is computed from.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_fixture_hits: dict[tuple[str, str], set[str]] = {}  # (fixture name, where it is defined) → calls


def _collecting() -> bool:
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def _calls() -> set[str]:
    """The functions called so far: in this process, and in subprocesses that have exited."""
    from mutmut.state import state

    folder = os.environ.get("FMNIST_MUTATION_HITS")
    for path in Path(folder).glob("*.hits") if folder else ():
        state()._stats.update(path.read_text(encoding="utf-8").split())
        path.unlink()
    return state()._stats


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if not _collecting() or fixturedef.scope == "function":
        return (yield)
    calls = _calls()
    before = set(calls)
    calls.clear()
    try:
        return (yield)
    finally:
        calls = _calls()
        _fixture_hits[fixturedef.argname, fixturedef.baseid] = set(calls)
        calls.update(before)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    if _collecting() and call.when == "setup":
        from mutmut.state import state

        state().duration_by_test[item.nodeid] += call.duration


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    if _collecting():
        calls = _calls()
        for (name, defined_in), hits in _fixture_hits.items():
            if name in item.fixturenames and item.nodeid.startswith(defined_in):
                calls.update(hits)
