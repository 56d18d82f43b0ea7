"""The coverage catalogue (kpc/catalogue.py) and the `catalogue` key of case
metadata: the table reproduces the study's counts, a misspelt id is refused
when the case loads, and bench/coverage.py counts what the cases claim."""

import os
import subprocess
import sys

import pytest

from kpc import cases, catalogue, paths


def test_the_catalogue_reproduces_the_studys_counts():
    assert len(catalogue.CATALOGUE) == 120
    for area, totals in catalogue.STUDY_TOTALS.items():
        items = [b for b in catalogue.CATALOGUE.values() if b.area == area]
        got = {s: sum(1 for b in items if b.score(s)) for s in catalogue.SUITES}
        assert got == totals, area


def test_ids_are_well_formed_and_match_their_area():
    prefix = {"S": "signals/creation", "P": "pidns", "R": "reaping/pidfd", "D": "reaping/pidfd", "F": "fuse"}
    for bid, b in catalogue.CATALOGUE.items():
        assert catalogue.ID.match(bid) and b.id == bid
        assert b.area == prefix[bid[0]], bid
        assert len(b.scores) == len(catalogue.SUITES) and set(b.scores) <= set("Yp.")


@pytest.fixture
def case_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CASES", str(tmp_path))
    (tmp_path / "reaping").mkdir()
    (tmp_path / "reaping" / "demo.cc").write_text("")

    def write(text):
        path = tmp_path / "reaping" / "demo.toml"
        path.write_text('summary = "s"\n' + text)
        return cases.load_case(str(path))
    return write


def test_a_case_names_the_behaviours_it_observes(case_dir):
    assert case_dir('catalogue = ["R06", "D03"]').catalogue == ["R06", "D03"]
    assert case_dir("").catalogue == []


@pytest.mark.parametrize("text, message", [
    ('catalogue = ["R6"]', "unknown behaviour id 'R6'"),
    ('catalogue = ["X01"]', "unknown behaviour id 'X01'"),
    ('catalogue = ["r06"]', "unknown behaviour id 'r06'"),
    ('catalogue = ["R06", "R06"]', "listed twice"),
    ('catalogue = "R06"', "'catalogue' must be a list of strings"),
    ('catalogue = [6]', "'catalogue' must be a list of strings"),
])
def test_a_misspelt_catalogue_id_is_refused(case_dir, text, message):
    with pytest.raises(cases.CaseError) as e:
        case_dir(text)
    assert message in str(e.value) and "demo.toml" in str(e.value)


def test_the_coverage_script_counts_what_the_cases_claim():
    claimed = {i for c in cases.load_all().values() for i in c.catalogue}
    out = subprocess.run([sys.executable, os.path.join(paths.ROOT, "bench", "coverage.py"), "--missing"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"kpc covers {len(claimed)}/120 catalogue behaviours")
    listed = {line.split()[0] for line in out.split("not observed by any case:\n", 1)[1].splitlines() if line}
    assert listed == set(catalogue.CATALOGUE) - claimed
    # the peers' headline figures, as the study gives them (with partial checks)
    total = next(line for line in out.splitlines() if line.startswith("all "))
    assert total.split()[4:7] == ["48", "(42)", "42"] and "56 (48)" in total
