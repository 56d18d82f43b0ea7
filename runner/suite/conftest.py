"""`python3 -m pytest runner/suite` without ./kpc: the runner's package on
sys.path (no PYTHONPATH needed, from any directory), kpc's options
(--kpc-slow, --kpc-jobs, --kpc-no-build), and, unless `./kpc run` brought
its own, the session of every case on this machine (kpc/pytest_plugin.py)."""

import os
import sys

RUNNER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if RUNNER not in sys.path:
    sys.path.insert(0, RUNNER)
sys.dont_write_bytecode = True

from kpc import pytest_plugin  # noqa: E402


def pytest_addoption(parser):
    pytest_plugin.add_options(parser)


def pytest_configure(config):
    pytest_plugin.configure_direct(config)
