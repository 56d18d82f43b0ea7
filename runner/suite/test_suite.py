"""The kpc suite as pytest tests: one per run (case x variant x flavor, and
x runtime or target under `./kpc run`), each named by its run id, e.g.
`test_suite.py::sigmask_survives_execve@pidns`.

This file holds no test functions: kpc/pytest_plugin.py collects it as the
session's runs. `./kpc run` brings its session; `python3 -m pytest
runner/suite` gets one from runner/suite/conftest.py (README, "The suite
under pytest")."""
