#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Add up the results of one `scripts/asi test` run and print the closing line.

    asi_results.py [--upstream COLLECTION,...] FILE...

A FILE is a `cargo test` log (its "test result:" lines) or a JSON file written
by `kunit.py parse --json` (KUnit, or kselftests in KTAP form). A JSON file that
is missing or holds no test counts as one failure: a run that produced no
results has failed. A test program that reported cases and then failed by
itself (its own "not ok" line) counts as one more failure.

A kselftest JSON file can be given as LABEL=FILE, for example
asi=on=out/test-asi-on/kselftest.json. The results of the kernel's own
selftests (the kselftest collections named by --upstream) in the labelled files
are compared case by case: every case must have the same result under every
label, and is missing from none. Each difference is listed and fails the run.
A case that fails alike under every label is not ASI's doing: it is listed and
counted apart ("failed alike"), not as failed.

Every failed case that is not counted apart is named, with the file it came
from, just before the closing line: a log cut to its last lines still says
what failed.

Exits 1 if anything failed or differed.
"""

import json
import re
import sys

CARGO = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
# run_kselftest.sh names each program "selftests: COLLECTION: PROGRAM".
KSELFTEST = re.compile(r"^selftests: ([^:]+): ")
BAD = ("FAIL", "ERROR")


class Case:
    """One result: the names of the groups above it, its own name, and its
    key, which is its name at the top level and its number in a group (inside
    a program, kselftest.h names no skipped case: "ok 2 # SKIP reason")."""

    def __init__(self, path, name, number, status):
        self.path, self.name, self.status = path, name, status
        self.key = path + ((f"#{number}",) if path else (name,))

    def __str__(self):
        if not self.path:
            return self.name
        return ": ".join(self.path) + f": {self.key[-1]} {self.name}".rstrip()


def leaves(group, path=()):
    """Yields a Case for every result below group."""
    bad = 0
    for number, case in enumerate(group.get("test_cases", []), 1):
        bad += case["status"] in BAD
        yield Case(path, case["name"], number, case["status"])
    for sub in group.get("sub_groups", []):
        for case in leaves(sub, path + (sub["name"],)):
            bad += case.status in BAD
            yield case
    # kunit.py parse counts a program that fails by itself after passing
    # cases (a bad exit status, fewer cases than planned) in the group's
    # counts, not as a case.
    misc = group.get("misc", {})
    if path and misc.get("failed", 0) + misc.get("crashed", 0) > bad:
        yield Case(path, "(the program's own result)", "exit", "FAIL")


def collection(case):
    m = KSELFTEST.match(case.key[0])
    return m[1] if m else None


def read_json(path):
    try:
        with open(path) as f:
            return list(leaves(json.load(f)))
    except (OSError, ValueError) as e:
        print(f"asi: results: {path}: {e}", file=sys.stderr)
        return []


def compare(labelled, upstream):
    """Compares the upstream cases of the labelled files. Returns (differing,
    alike): lines describing the cases whose results differ, and the cases
    that fail alike under every label."""
    runs = {label: {c.key: c for c in cases if collection(c) in upstream}
            for label, cases in labelled.items()}
    differing, alike = [], []
    keys = {}
    for run in runs.values():
        keys.update(dict.fromkeys(run))
    for label, run in runs.items():
        if not run:
            differing.append(f"{label}: no results of the {', '.join(sorted(upstream))} selftests")
    # A program that did not run at all under some label is one line, not one per case.
    programs = {label: {key[0] for key in run} for label, run in runs.items()}
    for program in dict.fromkeys(key[0] for key in keys):
        missing = [label for label in runs if runs[label] and program not in programs[label]]
        if missing:
            differing.append(f"{program}: did not run with {', '.join(missing)}")
    for key in keys:
        if any(key[0] not in programs[label] for label in runs):
            continue
        cases = [run.get(key) for run in runs.values()]
        statuses = [c.status if c else "MISSING" for c in cases]
        # Skipped cases have no name: show the one a label gives.
        case = max((c for c in cases if c), key=lambda c: len(c.name))
        if len(set(statuses)) > 1:
            differing.append(f"{case}: " + ", ".join(
                f"{label} {status}" for label, status in zip(runs, statuses)))
        elif statuses[0] in BAD:
            alike.append(str(case))
    return differing, alike


def main(argv):
    upstream = set()
    paths = []
    args = iter(argv)
    for arg in args:
        if arg == "--upstream":
            upstream |= set(next(args, "").split(","))
        elif arg.startswith("--upstream="):
            upstream |= set(arg.split("=", 1)[1].split(","))
        else:
            paths.append(arg)
    upstream.discard("")

    passed = failed = skipped = 0
    labelled = {}
    bad = []  # (file, case) for every failed case
    for arg in paths:
        label, _, path = arg.rpartition("=")
        if path.endswith(".json"):
            results = read_json(path)
            if not results:
                print(f"asi: results: no tests in {path}", file=sys.stderr)
                failed += 1
            if label:
                labelled[label] = results
            statuses = [c.status for c in results]
            passed += statuses.count("PASS")
            skipped += statuses.count("SKIP")
            failed += sum(s not in ("PASS", "SKIP") for s in statuses)
            bad += [(path, c) for c in results if c.status not in ("PASS", "SKIP")]
        else:
            found = False
            with open(path) as f:
                for line in f:
                    m = CARGO.match(line.strip())
                    if m:
                        found = True
                        passed += int(m[1])
                        failed += int(m[2])
                        if int(m[2]):
                            bad.append((path, f"{m[2]} host unit tests (cargo test)"))
                        skipped += int(m[3])
            if not found:
                print(f"asi: results: no cargo test result in {path}", file=sys.stderr)
                failed += 1

    differing, alike = [], []
    if upstream and len(labelled) > 1:
        differing, alike = compare(labelled, upstream)
        labels = ", ".join(labelled)
        if alike:
            print(f"asi: results: {len(alike)} cases of the kernel's own selftests fail alike"
                  f" with {labels}; not ASI's doing, counted apart:", file=sys.stderr)
            for name in alike:
                print(f"  {name}", file=sys.stderr)
        if differing:
            print(f"asi: results: {len(differing)} results of the kernel's own selftests differ"
                  f" between {labels}:", file=sys.stderr)
            for line in differing:
                print(f"  {line}", file=sys.stderr)
    elif upstream:
        print("asi: results: --upstream needs two or more LABEL=FILE to compare", file=sys.stderr)
        failed += 1
    alike_names = set(alike)
    named = [(path, case) for path, case in bad if str(case) not in alike_names
             or collection(case) not in upstream]
    if named:
        print(f"asi: results: {len(named)} failed:", file=sys.stderr)
        for path, case in named:
            print(f"  {case} ({path})", file=sys.stderr)
    # Each label counted the cases that fail alike as failed.
    failed -= len(alike) * len(labelled)
    summary = f"{passed} passed, {failed} failed, {skipped} skipped"
    if upstream:
        summary += (f", {len(alike) * len(labelled)} failed alike in {'/'.join(labelled)},"
                    f" {len(differing)} differ")
    print(summary)
    return 1 if failed or differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
