#!/usr/bin/python3
"""Rewrite README.md's case list and course path from the case metadata
(runner/kpc/readme.py). Run it after adding a case or changing a summary
or a [lab] section; `--check` only reports."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

from kpc import readme  # noqa: E402

sys.exit(readme.main())
