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


ACTIONS = ["ibpb", "rsb_fill", "l1d_flush", "verw"]


def ratio(always, asi):
    if asi:
        return f"{always / asi:.1f}"
    return "inf" if always else "-"


def print_actions(runs, names):
    """The mitigation actions per op of the first boot that counted them.

    ASI's required and executed actions are compared with what the always-on
    mitigations they replace would run for the same work: an IBPB on every
    kernel entry from user mode (retbleed=ibpb, spec_rstack_overflow=ibpb: as
    many as returns to user mode) for ASI's IBPBs in all; an IBPB on every
    switch to another process (spectre_v2_user=on) for ASI's IBPBs before
    user code; an L1D flush on every return to user mode for ASI's L1D
    flushes (VERW likewise, with mds=full).
    """
    for mode, res in runs:
        if not any("returns_to_user" in r for r in res.values()):
            continue
        print()
        print(f"Mitigation actions per op ({mode}): required/executed by ASI, and the "
              "always-on mitigations for the same work")
        head = f"{'workload':<18}"
        for a in ACTIONS:
            head += f" {a + ' req/exe':>19}"
        head += (f" {'ibpb@user':>9} {'returns':>9} {'mmswitch':>9}"
                 f" {'entry/ibpb':>10} {'switch/ibpb@user':>16} {'returns/l1d':>11}")
        print(head)
        total = {"returns": 0, "ibpb": 0, "ibpb_user": 0, "switches": 0, "l1d": 0}
        for name in names:
            r = res.get(name)
            if not r:
                continue
            ops = r.get("ops", 0)
            row = f"{name:<18}"
            for a in ACTIONS:
                req = per_op(r.get("required_" + a, 0), ops)
                exe = per_op(r.get("executed_" + a, 0), ops)
                row += f" {req:>9.3f}/{exe:<9.3f}"
            cur = {"returns": r.get("returns_to_user", 0), "ibpb": r.get("required_ibpb", 0),
                   "ibpb_user": r.get("required_before_user_ibpb", 0),
                   "switches": r.get("mm_switches", 0), "l1d": r.get("required_l1d_flush", 0)}
            for k, v in cur.items():
                total[k] += v
            row += (f" {per_op(cur['ibpb_user'], ops):>9.3f} {per_op(cur['returns'], ops):>9.3f}"
                    f" {per_op(cur['switches'], ops):>9.3f} {ratio(cur['returns'], cur['ibpb']):>10}"
                    f" {ratio(cur['switches'], cur['ibpb_user']):>16}"
                    f" {ratio(cur['returns'], cur['l1d']):>11}")
            print(row)
        print(f"{'all workloads':<18}" + " " * 80 +
              f" {total['ibpb_user']:>9} {total['returns']:>9} {total['switches']:>9}"
              f" {ratio(total['returns'], total['ibpb']):>10}"
              f" {ratio(total['switches'], total['ibpb_user']):>16}"
              f" {ratio(total['returns'], total['l1d']):>11}")
        print("ibpb@user: IBPBs required before user code (another process's training), the "
              "rest at exits (user training before the full address space). entry/ibpb: IBPBs "
              "of an IBPB on every kernel entry per IBPB ASI requires; switch/ibpb@user: IBPBs "
              "of spectre_v2_user=on (one per switch to another process) per IBPB ASI requires "
              "before user code; returns/l1d: L1D flushes of a flush on every return to user "
              "mode per L1D flush ASI requires (VERW alike). The totals row counts events. "
              "Executed is lower than required where the CPU lacks the action (TCG: ibpb, "
              "verw) or it is disabled.")
        return


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
                "tlb_flushes", "zeroed_pages", "refused_flips", "ns_pgds_created", "exits_page_fault", "exits_switch_mm",
                "exits_cr3_read", "exits_tlb_flush", "exits_nmi", "exits_other", "switches",
                "cr3_writes_flush", "cr3_writes_noflush"]
    short = {"user_pages_allocated": "upages", "flips_to_sensitive": "flip+",
             "flips_to_nonsensitive": "flip-", "tlb_flushes": "flush",
             "zeroed_pages": "zeroed", "refused_flips": "refused",
             "ns_pgds_created": "ns_pgds", "exits_page_fault": "x:pf",
             "exits_switch_mm": "x:swmm", "exits_cr3_read": "x:cr3",
             "exits_tlb_flush": "x:tlb", "exits_nmi": "x:nmi", "exits_other": "x:other",
             "switches": "switch", "cr3_writes_flush": "cr3:fl", "cr3_writes_noflush": "cr3:nofl"}

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
    print_actions(runs, names)
    print("Counts per op are of the ASI boot: user pages allocated, flips to and from "
          "sensitive, TLB flushes, pages zeroed on their way to nonsensitive, flips refused "
          "(the allocation failed: no TLB flush could be sent), mm tables created, and exits from the nonsensitive space "
          "by reason (x:pf page fault, x:swmm switch_mm, x:cr3 CR3 read, x:tlb TLB flush, "
          "x:nmi in an NMI, x:other), switches between processes that stay in the nonsensitive "
          "space, and ASI's CR3 writes that flushed (cr3:fl) or kept (cr3:nofl, CR3_NOFLUSH, "
          "needs PCIDs) the PCID they loaded; they count all CPUs, so other tasks add a little.")
    print("Under QEMU TCG the counts per op are the reliable figures; the times are noisy "
          "(emulated CPU, debug kernel with lockdep).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
