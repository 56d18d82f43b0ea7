"""README's "Cases by area" lists every case with its metadata summary, so
a new case cannot land unlisted (regenerate the list from the metadata)."""

import os

from kpc import cases, paths


def test_readme_lists_every_case_with_its_summary():
    with open(os.path.join(paths.ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## Cases by area"):]
    section = section[:section.index("\n## ", 1)]
    missing = [c.id for c in cases.load_all().values() if f"- `{c.id}` — {c.summary}\n" not in section + "\n"]
    assert not missing, f"README's case list lacks (or has a stale summary for): {', '.join(missing)}"
