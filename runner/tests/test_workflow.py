"""The GitHub Actions workflow is valid YAML, its jobs fit together, and
every ./kpc command in it parses with kpc's own argument parser for every
matrix value (a renamed option breaks this test, not the CI)."""

import itertools
import os
import re
import shlex

import pytest

from kpc import cli, kernels, paths, runtimes

yaml = pytest.importorskip("yaml", reason="python3-yaml is not installed (.ci/run installs it)")
WORKFLOW = os.path.join(paths.ROOT, ".github", "workflows", "kpc.yml")


@pytest.fixture(scope="module")
def wf():
    with open(WORKFLOW, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_jobs_fit_together(wf):
    jobs = wf["jobs"]
    assert {"distros", "kernels", "runtimes", "report"} <= set(jobs)
    assert set(jobs["report"]["needs"]) == {"distros", "kernels", "runtimes"}
    # every job uploads under a name the report job downloads
    pattern = jobs["report"]["steps"][1]["with"]["pattern"]
    assert pattern == "results-*"
    for name in ("distros", "kernels", "runtimes"):
        uploads = [s for s in jobs[name]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
        assert uploads and uploads[0]["with"]["name"].startswith("results-")
        for step in jobs[name]["steps"]:
            assert ("run" in step) != ("uses" in step), step
    assert "--privileged" in jobs["distros"]["container"]["options"]
    assert "/dev/kvm" in jobs["kernels"]["container"]["options"]


def test_matrix_values_are_ones_kpc_knows(wf):
    for k in (k for spec in wf["jobs"]["kernels"]["strategy"]["matrix"]["kernels"] for k in spec.split(",")):
        assert any(kernels._matches(k, v, s) for v, s in (("5.10.223-1", "bullseye"), ("6.1.176-1", "bookworm"),
                                                          ("6.12.117-1", "trixie"), ("7.2.13-1", "sid"))), k
    assert set(wf["jobs"]["kernels"]["strategy"]["matrix"]["arch"]) == set(kernels.ARCHES)
    for rt in wf["jobs"]["runtimes"]["strategy"]["matrix"]["runtime"]:
        assert rt in runtimes.KNOWN


def _kpc_commands(job):
    matrix = job.get("strategy", {}).get("matrix", {})
    keys = list(matrix)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(matrix[k] for k in keys))] or [{}]
    for step in job["steps"]:
        for line in step.get("run", "").splitlines():
            line = line.strip()
            if not line.startswith("./kpc "):
                continue
            for combo in combos:
                text = re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: str(combo[m.group(1)]), line)
                text = re.sub(r"\$\([^)]*\)", "a.json b.json", text)  # command substitution: some files
                assert "${{" not in text, text
                yield shlex.split(text)[1:]


def test_every_kpc_command_parses(wf):
    parser = cli.parser()
    seen = 0
    for name, job in wf["jobs"].items():
        for argv in _kpc_commands(job):
            args = parser.parse_args(argv)  # SystemExit (exit 2) on an unknown option
            assert args.func is not None
            seen += 1
    assert seen >= 6
