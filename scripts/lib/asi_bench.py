#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Compare the asi_bench output of several boots, one table per run.

  asi_bench.py MODE=FILE [MODE=FILE ...]

Each FILE holds the lines asi_bench printed in the boot named MODE
("bench <name> ops=<n> ns=<t> <counter>=<delta> ..."). The first MODE is the
one the others are compared with in the ratio column.
"""

import sys


def parse(path):
    results = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.replace("\r", "").split()
            if len(parts) < 4 or parts[0] != "bench":
                continue
            fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            try:
                results[parts[1]] = {k: int(v) for k, v in fields.items()}
            except ValueError:
                continue
    return results


def per_op(value, ops):
    return value / ops if ops else 0.0


def main(argv):
    runs = []
    for arg in argv[1:]:
        mode, _, path = arg.rpartition("=")
        runs.append((mode, parse(path)))
    if len(runs) < 1 or not runs[0][1]:
        sys.stderr.write("asi_bench.py: no results\n")
        return 1
    base_mode, base = runs[0]
    names = list(base)
    counters = ["user_pages_allocated", "flips_to_sensitive", "flips_to_nonsensitive",
                "tlb_flushes", "domains_created", "exits_page_fault", "exits_switch_mm",
                "exits_cr3_read", "exits_tlb_flush", "exits_nmi", "exits_other"]
    short = {"user_pages_allocated": "upages", "flips_to_sensitive": "flip+",
             "flips_to_nonsensitive": "flip-", "tlb_flushes": "flush",
             "domains_created": "domains", "exits_page_fault": "x:pf",
             "exits_switch_mm": "x:swmm", "exits_cr3_read": "x:cr3",
             "exits_tlb_flush": "x:tlb", "exits_nmi": "x:nmi", "exits_other": "x:other"}

    head = f"{'workload':<18}"
    for mode, _ in runs:
        head += f" {('ops/s ' + mode):>16}"
    for mode, _ in runs[1:]:
        head += f" {(mode + '/' + base_mode):>9}"
    for mode, res in runs:
        if any(c in r for r in res.values() for c in counters):
            for c in counters:
                head += f" {(short[c] + '/op'):>10}"
            head += f"  ({mode})"
            break
    print(head)
    failed = False
    for name in names:
        row = f"{name:<18}"
        rates = []
        for mode, res in runs:
            r = res.get(name)
            if not r or not r.get("ns"):
                row += f" {'-':>16}"
                rates.append(None)
                failed = True
                continue
            rate = r["ops"] * 1e9 / r["ns"]
            rates.append(rate)
            row += f" {rate:>16.1f}"
        for rate in rates[1:]:
            row += f" {(rate / rates[0]) if rate and rates[0] else 0:>9.3f}"
        for mode, res in runs:
            r = res.get(name, {})
            if any(c in r for c in counters):
                for c in counters:
                    row += f" {per_op(r.get(c, 0), r.get('ops', 0)):>10.4f}"
                break
        print(row)
    print("Counts per op are of the ASI boot: user pages allocated, flips to and from "
          "sensitive, TLB flushes, mm tables created, and exits from the nonsensitive space "
          "by reason (x:pf page fault, x:swmm switch_mm, x:cr3 CR3 read, x:tlb TLB flush, "
          "x:nmi in an NMI, x:other); they count all CPUs, so other tasks add a little.")
    print("Under QEMU TCG the counts per op are the reliable figures; the times are noisy "
          "(emulated CPU, debug kernel with lockdep).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
