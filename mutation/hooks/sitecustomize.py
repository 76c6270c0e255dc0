"""Only on PYTHONPATH during `make mutation` (mutation/run.py puts it there): lets mutmut see what an
`fmnist` subprocess ran.

mutmut maps each mutated function to the tests that call it by recording calls in the test process
("stats"), then runs only those tests against the function's mutants. Many tests run `fmnist` as a
subprocess; without this, a function reached only through one would count as untested, or be checked
against the wrong tests. While mutmut collects its stats (MUTANT_UNDER_TEST=stats), each Python
process started from a test writes the functions it called to $FMNIST_MUTATION_HITS/<pid>.hits on exit;
mutation/hooks/mutmut_hits.py hands them to mutmut in the test process. Any other time it does nothing.
"""

import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("FMNIST_MUTATION_HITS"):
    import atexit

    def _load_mutmut_config() -> None:
        # mutmut reads its configuration from the working directory on the first recorded call; a test
        # may run the subprocess elsewhere, so read it now from the mutation work folder.
        from mutmut.configuration import config

        here = os.getcwd()
        os.chdir(os.environ["FMNIST_MUTATION_WORK"])
        try:
            config()
        finally:
            os.chdir(here)

    def _write_hits() -> None:
        from mutmut.state import state

        if state()._stats:
            path = os.path.join(os.environ["FMNIST_MUTATION_HITS"], f"{os.getpid()}.hits")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(sorted(state()._stats)))

    _load_mutmut_config()
    atexit.register(_write_hits)
