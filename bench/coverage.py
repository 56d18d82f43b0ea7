#!/usr/bin/python3
"""kpc coverage of the catalogue of process-lifecycle behaviours (issue 21):
per area, how many of the catalogue's behaviours kpc's cases observe, next
to what the peer suites check (LTP, kernel selftests, gVisor, CRIU zdtm,
libfuse, as scored by the coverage study) and next to kpc when the study was
written.

kpc's figure comes from the case metadata only: a behaviour counts when some
case lists its id in `catalogue = [...]` (runner/kpc/catalogue.py holds the
catalogue). A peer's figure counts full and partial checks, as the study's
headline numbers do (LTP 48, kselftest 42, gVisor 56); the full-only figure
is in brackets.

Usage: bench/coverage.py [--missing] [--by-case]
  --missing   list the behaviours no case observes, with the peers that do
  --by-case   list each case with the ids it claims
Prints figures, asserts nothing.
"""

import argparse
import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runner"))

from kpc import cases  # noqa: E402
from kpc.catalogue import AREAS, CATALOGUE, PEERS  # noqa: E402

SHOWN_PEERS = ("LTP", "kselftest", "gVisor", "zdtm", "libfuse")


def claimed(all_cases):
    """{behaviour id: [case ids that observe it]}."""
    out = {}
    for case in all_cases.values():
        for bid in case.catalogue:
            out.setdefault(bid, []).append(case.id)
    return out


def area_rows(claims):
    """One dict per area plus the total: catalogue size, kpc now, kpc at the
    study, and each peer as (with partial, full only), and the peers' union."""
    rows = []
    for area in (*AREAS, None):
        items = [b for b in CATALOGUE.values() if area is None or b.area == area]
        row = {"area": area or "all", "catalogue": len(items),
               "kpc": sum(1 for b in items if b.id in claims),
               "kpc_study": sum(1 for b in items if b.score("kpc")),
               "union": sum(1 for b in items if any(b.score(p) for p in PEERS))}
        for p in SHOWN_PEERS:
            row[p] = (sum(1 for b in items if b.score(p)), sum(1 for b in items if b.score(p) == "full"))
        rows.append(row)
    return rows


def print_table(rows):
    head = ["area", "catalogue", "kpc now", "kpc (study)", *SHOWN_PEERS, "peers' union"]
    lines = [head]
    for r in rows:
        lines.append([r["area"], str(r["catalogue"]), str(r["kpc"]), str(r["kpc_study"]),
                      *(f"{r[p][0]} ({r[p][1]})" for p in SHOWN_PEERS), str(r["union"])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
        if n == 0 or n == len(lines) - 2:
            print("  ".join("-" * w for w in widths))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--missing", action="store_true", help="list the behaviours no case observes")
    ap.add_argument("--by-case", action="store_true", help="list each case with the ids it claims")
    args = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `bench/coverage.py | head` is no error
    try:
        all_cases = cases.load_all()
    except cases.CaseError as e:
        print(f"kpc: {e}", file=sys.stderr)
        return 2
    claims = claimed(all_cases)
    rows = area_rows(claims)
    total = rows[-1]
    print(f"kpc covers {total['kpc']}/{total['catalogue']} catalogue behaviours "
          f"({len([c for c in all_cases.values() if c.catalogue])} of {len(all_cases)} cases name some)")
    print()
    print_table(rows)
    print()
    print("peers: covered with partial checks counted (full only in brackets), as the study scored them;")
    print("kpc now: some case's metadata lists the id; kpc (study): the study's reading of kpc at ee32aae")
    gained = sorted(b for b in claims if not CATALOGUE[b].score("kpc"))
    lost = sorted(b.id for b in CATALOGUE.values() if b.score("kpc") and b.id not in claims)
    if gained:
        print(f"since the study: +{len(gained)} ({', '.join(gained)})")
    if lost:
        print(f"scored for kpc by the study but claimed by no case: {', '.join(lost)}")
    if args.missing:
        print("\nnot observed by any case:")
        for b in CATALOGUE.values():
            if b.id not in claims:
                peers = ", ".join(p for p in PEERS if b.score(p)) or "none"
                print(f"  {b.id}  {b.text}  [peers: {peers}]")
    if args.by_case:
        print("\nby case:")
        for case in all_cases.values():
            if case.catalogue:
                print(f"  {case.area}/{case.id}: {', '.join(case.catalogue)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
