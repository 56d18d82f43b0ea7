"""Case metadata: what the launcher would refuse, and what would silently
skip or mis-time a case, is refused when the TOML loads (one bad case must
not turn every run of the plan into an error)."""

import os
import re

import pytest

from conftest import make_case
from kpc import cases, launch, paths

HEADER = "/usr/include/linux/capability.h"


@pytest.fixture
def case_dir(tmp_path, monkeypatch):
    """write(toml_text) -> the loaded Case (or the CaseError), in a private cases/."""
    monkeypatch.setattr(paths, "CASES", str(tmp_path))
    (tmp_path / "signals").mkdir()
    (tmp_path / "signals" / "demo.cc").write_text("")

    def write(text, name="demo"):
        path = tmp_path / "signals" / f"{name}.toml"
        path.write_text('summary = "s"\n' + text)
        return cases.load_case(str(path))
    return write


@pytest.mark.skipif(not os.path.exists(HEADER), reason=f"{HEADER} not installed (linux-libc-dev)")
def test_the_capability_names_are_the_kernels():
    with open(HEADER) as f:
        names = set(re.findall(r"^#define (CAP_[A-Z_]+)\s+\d+\s*$", f.read(), re.M))
    assert cases.CAPABILITIES == names


@pytest.mark.parametrize("text", ["timeout = 3600", "timeout = 0.001\nhang_ms = 1", "timeout = 2\nhang_ms = 2000",
                                  "timeout = 1", "hang_ms = 10000", "timeout = 0.5\nhang_ms = 400",
                                  "[requires]\ncaps = [\"CAP_SYS_ADMIN\", \"CAP_CHECKPOINT_RESTORE\"]",
                                  "[requires]\nkernel = \">=6.1.2\""])
def test_the_limits_themselves_load(case_dir, text):
    case = case_dir(text)
    assert 1 <= case.timeout_ms <= 3_600_000 and 0 < case.hang_ms <= case.timeout_ms


@pytest.mark.parametrize("text, message", [
    ("timeout = inf", "timeout must be seconds"),
    ("timeout = nan", "timeout must be seconds"),
    ("timeout = -1", "timeout must be seconds"),
    ("timeout = 0", "timeout must be seconds"),
    ("timeout = 0.0004", "timeout must be seconds"),              # 0 ms for the launcher
    ("timeout = 3600.5", "timeout must be seconds"),
    ("timeout = 1e10", "timeout must be seconds"),
    ("timeout = 99999999999999999999999999999999999", "timeout must be seconds"),
    ("hang_ms = 0", "hang_ms must be more than 0"),
    ("hang_ms = -5", "hang_ms must be more than 0"),
    ("hang_ms = 99999999999", "at most the timeout (10000 ms)"),
    ("timeout = 1\nhang_ms = 1001", "at most the timeout (1000 ms)"),
    ("timeout = 0.5", "the default is 1000: set hang_ms"),
    ("hang_grace_ms = -1", "hang_grace_ms must be 0 to the timeout (10000 ms"),
    ("hang_grace_ms = 10001", "hang_grace_ms must be 0 to the timeout (10000 ms"),
    ("hang_grace_ms = \"5\"", "hang_grace_ms"),
    ("[requires]\ncaps = [\"CAP_SYS_ADMNI\"]", "unknown capability 'CAP_SYS_ADMNI'"),
    ("[requires]\ncaps = [\"cap_sys_admin\"]", "unknown capability"),
    ("[requires]\nkernel = \">=5.x\"", "requires.kernel"),
    ("[requires]\nkernel = \">=5.3.1.2\"", "requires.kernel"),
    ("[requires]\nkernel = \"5.3\"", "requires.kernel"),
    ("probe = \"../../../../../bin/true\"", "probe '../../../../../bin/true' is not a plain name"),
])
def test_bad_metadata_is_refused_when_it_loads(case_dir, text, message):
    with pytest.raises(cases.CaseError) as e:
        case_dir(text)
    assert message in str(e.value) and "demo.toml" in str(e.value)


def test_a_case_id_is_a_plain_name(case_dir, tmp_path):
    (tmp_path / "signals" / "Bad-Id.cc").write_text("")
    with pytest.raises(cases.CaseError, match="case id 'Bad-Id' is not a plain name"):
        case_dir("", name="Bad-Id")


@pytest.mark.parametrize("text, want", [(">=5.3", (5, 3, 0)), (" >=6.1.2 ", (6, 1, 2)), (">=7", (7, 0, 0))])
def test_kernel_requirements_parse_whole(text, want):
    assert cases.parse_kernel_requirement(text) == want


@pytest.mark.parametrize("text", [">=5.x", ">=5.3-rc1", "> =5.3", ">=", "<=5.3", ">=5.3 or so"])
def test_kernel_requirements_that_are_not_versions_are_refused(text):
    with pytest.raises(ValueError):
        cases.parse_kernel_requirement(text)


def test_the_launcher_is_given_whole_milliseconds():
    case = make_case()
    for seconds, ms in ((5.0, 5000), (0.0015, 2), (3600, 3_600_000), (0.3, 300)):
        case.timeout_s = seconds
        entry = launch.plan_entry("r", case, "", "host")
        assert entry["timeout_ms"] == ms and isinstance(entry["timeout_ms"], int)
