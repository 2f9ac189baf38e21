#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Add up the results of one `scripts/asi test` run and print the closing line.

Arguments are result files: a `cargo test` log (its "test result:" lines) or a
JSON file written by `kunit.py parse --json` (KUnit, or kselftests in KTAP form).
A JSON file that is missing or holds no test counts as one failure: a run that
produced no results has failed. Exits 1 if anything failed.
"""

import json
import re
import sys

CARGO = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")


def leaves(group):
    for case in group.get("test_cases", []):
        yield case["status"]
    for sub in group.get("sub_groups", []):
        yield from leaves(sub)


def main(paths):
    passed = failed = skipped = 0
    for path in paths:
        if path.endswith(".json"):
            try:
                with open(path) as f:
                    statuses = list(leaves(json.load(f)))
            except (OSError, ValueError) as e:
                print(f"asi: results: {path}: {e}", file=sys.stderr)
                statuses = []
            if not statuses:
                print(f"asi: results: no tests in {path}", file=sys.stderr)
                failed += 1
            passed += statuses.count("PASS")
            skipped += statuses.count("SKIP")
            failed += sum(s not in ("PASS", "SKIP") for s in statuses)
        else:
            found = False
            with open(path) as f:
                for line in f:
                    m = CARGO.match(line.strip())
                    if m:
                        found = True
                        passed += int(m[1])
                        failed += int(m[2])
                        skipped += int(m[3])
            if not found:
                print(f"asi: results: no cargo test result in {path}", file=sys.stderr)
                failed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
