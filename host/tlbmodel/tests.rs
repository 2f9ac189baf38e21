// SPDX-License-Identifier: GPL-2.0

//! The exhaustive tests: the designs that must hold, the ones that must not, and checks of
//! the driver itself. Run with `--nocapture` to see the counts and the counterexamples.

use super::check::{Invariant, Load, Moment, Violation};
use super::explore::{enumerate, explore, replay, Counterexample, Report};
use super::hw::{Pte, Tag};
use super::kernel::{CpuEvent, Event, KernelEvent, Machine, Mm, UserFlush};
use super::*;
use std::println;
use std::time::Instant;

/// Explores `cfg` and checks that it holds: no violation, at least `min_states` states and
/// `min_sequences` sequences of up to `count_len` events, and closure if `closed`.
fn assert_sound(
    cfg: &Config,
    max_len: usize,
    count_len: usize,
    closed: bool,
    min_states: usize,
    min_sequences: u128,
) -> Report {
    let t = Instant::now();
    let r = explore(cfg, max_len, None, count_len);
    println!(
        "{}: up to {} events: {} states ({} expanded, deepest {}), {} events applied, \
         closed: {}, {} sequences of 1..={} events, {} violations, {:?}",
        cfg.name,
        r.max_len,
        r.states,
        r.expanded,
        r.depth,
        r.transitions,
        r.closed,
        r.sequences,
        count_len,
        r.violating,
        t.elapsed()
    );
    if let Some(c) = &r.counterexample {
        panic!("{} is unsound:\n{}", cfg.name, c.text);
    }
    assert_eq!(r.violating, 0);
    assert_eq!(r.closed, closed, "closure of {}", cfg.name);
    assert!(
        r.states >= min_states,
        "{}: only {} states",
        cfg.name,
        r.states
    );
    assert!(
        r.sequences >= min_sequences,
        "{}: only {} sequences",
        cfg.name,
        r.sequences
    );
    r
}

/// The shortest counterexample of `cfg` that `target` accepts, within `max_len` events.
fn find(cfg: &Config, max_len: usize, target: &dyn Fn(&Violation) -> bool) -> Counterexample {
    let r = explore(cfg, max_len, Some(target), 0);
    let c = r
        .counterexample
        .unwrap_or_else(|| panic!("{}: no counterexample of the expected kind", cfg.name));
    println!(
        "{}: counterexample of {} events after {} states:\n{}",
        cfg.name,
        c.events.len(),
        r.states,
        c.text
    );
    c
}

/// A full (not nonsensitive) dynamic PCID.
fn full_pcid(tag: Tag) -> Option<u16> {
    match tag {
        Tag::Pcid(p) if p != 0 && !tag.is_asi() => Some(p),
        _ => None,
    }
}

fn entry_is(v: &Violation, pte: Pte) -> bool {
    v.entry.is_some_and(|e| e.pte == pte)
}

/// A stale entry of `pte` in a full PCID, made usable by a NOFLUSH CR3 load for `why`.
fn stale_after_noflush(v: &Violation, pte: Pte, why: Load) -> bool {
    v.invariant == Invariant::Stale
        && entry_is(v, pte)
        && full_pcid(v.tag).is_some()
        && v.moment == Moment::Load { why, noflush: true }
}

#[test]
fn pcid_off_design_is_sound() {
    // The whole reachable graph: the design holds for sequences of any length.
    let r = assert_sound(&PCID_OFF, 64, 12, true, 2_430, 479_083_609_667_078);
    assert!(r.depth >= 10);
    // The same with CR4.PGE toggles instead of INVPCID for flush_tlb_all().
    let no_invpcid = Config {
        name: "pcid-off without INVPCID",
        invpcid: false,
        ..PCID_OFF
    };
    assert_sound(&no_invpcid, 64, 0, true, 2_430, 0);
}

#[test]
fn boot_state_is_reachable() {
    // The exploration starts with both CPUs running A. The state the CPUs boot in is
    // reachable from there, so the closed graph above covers every state reachable from boot.
    let to_boot = [
        Event::Cpu(0, CpuEvent::KernelThread),
        Event::Cpu(
            1,
            CpuEvent::ChangeUser(UserFlush {
                all: true,
                freed_tables: true,
            }),
        ),
        Event::Cpu(1, CpuEvent::Offline),
        Event::Cpu(1, CpuEvent::Online),
    ];
    let c = replay(&PCID_OFF, to_boot.to_vec());
    assert_eq!(
        c.states.last(),
        Some(&Machine::boot(&PCID_OFF)),
        "{}",
        c.text
    );
}

#[test]
fn upstream_tlb_c_is_sound() {
    // The model of tlb.c on its own (no ASI, PCIDs, global kernel mappings) raises no
    // false alarm, for sequences of any length.
    assert_sound(&UPSTREAM, 64, 10, true, 87_118, 472_005_185_140);
}

#[test]
fn tracked_design_is_sound() {
    assert_sound(&TRACKED, 8, 8, false, 601_092, 7_625_841_382);
}

#[test]
fn tracked_design_with_three_asids_is_sound() {
    let three = Config {
        name: "tracked, 3 ASIDs",
        nr_asids: 3,
        ..TRACKED
    };
    assert_sound(&three, 6, 6, false, 48_255, 29_926_707);
}

#[test]
fn main_with_pcid_has_b1() {
    let c = find(&MAIN, 6, &|v| {
        stale_after_noflush(v, Pte::Dm, Load::SwitchMm)
    });
    let v = c.violations.iter().find(|v| entry_is(v, Pte::Dm)).unwrap();
    let pcid = full_pcid(v.tag).unwrap();
    // The one-page CPA flush ran while that PCID was not the CPU's current one.
    let cpa = c
        .events
        .iter()
        .position(|e| *e == Event::Kernel(KernelEvent::CpaOne))
        .expect("a one-page CPA");
    assert_ne!(c.states[cpa].cpus[v.cpu].hw.cr3().pcid, pcid);
    assert_eq!(c.events.len(), 3);
}

#[test]
fn main_with_pcid_has_b2() {
    let c = find(&MAIN, 6, &|v| {
        stale_after_noflush(v, Pte::User, Load::SwitchMm)
    });
    assert_eq!(c.events.len(), 5);
    let v = c
        .violations
        .iter()
        .find(|v| entry_is(v, Pte::User))
        .unwrap();
    assert_b2_shape(&c, v.cpu);
    // The review's own sequence: the other thread of A runs on the other CPU.
    let review = [
        Event::Cpu(0, CpuEvent::ReturnToUser),
        Event::Cpu(
            1,
            CpuEvent::ChangeUser(UserFlush {
                all: false,
                freed_tables: false,
            }),
        ),
        Event::Cpu(0, CpuEvent::SwitchTo(Mm::B)),
        Event::Cpu(0, CpuEvent::Exit),
        Event::Cpu(0, CpuEvent::SwitchTo(Mm::A)),
    ];
    let c = replay(&MAIN, review.to_vec());
    println!("the review's B2 sequence:\n{}", c.text);
    assert!(c
        .violations
        .iter()
        .any(|v| v.cpu == 0 && stale_after_noflush(v, Pte::User, Load::SwitchMm)));
    assert_b2_shape(&c, 0);
    // Each event before the last one is needed: without it, no violation.
    for skip in 0..review.len() - 1 {
        let mut shorter = review.to_vec();
        shorter.remove(skip);
        let c = replay(&MAIN, shorter);
        assert!(c.violations.is_empty(), "{}", c.text);
    }
}

/// B2 as the review describes it: A's user PTE changed and was flushed while CPU `cpu` ran
/// restricted on A, `cpu` then switched away from A while restricted, and came back to A's
/// full PCID with NOFLUSH.
fn assert_b2_shape(c: &Counterexample, cpu: usize) {
    let change = c
        .events
        .iter()
        .position(|e| matches!(e, Event::Cpu(_, CpuEvent::ChangeUser(_))))
        .unwrap();
    let at = &c.states[change].cpus[cpu];
    assert!(at.asi.restricted && at.tlb.loaded_mm == Mm::A);
    assert!(c.events[change..].iter().enumerate().any(|(k, e)| {
        let s = &c.states[change + k].cpus[cpu];
        matches!(e, Event::Cpu(x, CpuEvent::SwitchTo(mm)) if *x == cpu && *mm != Mm::A)
            && s.asi.restricted
            && s.tlb.loaded_mm == Mm::A
    }));
    assert_eq!(
        c.events.last(),
        Some(&Event::Cpu(cpu, CpuEvent::SwitchTo(Mm::A)))
    );
}

#[test]
fn main_with_pcid_has_m5() {
    let c = find(&MAIN, 6, &|v| {
        v.invariant == Invariant::Sensitive && entry_is(v, Pte::Vmalloc) && v.tag == Tag::Global
    });
    assert!(c.events.contains(&Event::Kernel(KernelEvent::VfreeLazy)));
    assert_eq!(
        c.events.last(),
        Some(&Event::Kernel(KernelEvent::MakeSensitive))
    );
}

#[test]
fn main_without_the_restricted_switch_has_b1_but_not_b2() {
    // Before "Stay in the nonsensitive space across switches", every switch left first.
    let before = Config {
        name: "main before the restricted switch",
        restricted_switch: false,
        ..MAIN
    };
    find(&before, 6, &|v| {
        stale_after_noflush(v, Pte::Dm, Load::SwitchMm)
    });
    let b2 = |v: &Violation| entry_is(v, Pte::User);
    let r = explore(&before, 7, Some(&b2), 0);
    assert!(
        r.counterexample.is_none(),
        "{}",
        r.counterexample.unwrap().text
    );
}

#[test]
fn main_with_the_reviews_fixes_holds() {
    // PCIDs kept, every ASI CR3 write flushing, plus the fixes the review proposes for B1,
    // B2 (option a) and M5: no violation in every sequence of up to 7 events.
    assert_sound(&MAIN_REVIEW_FIXES, 7, 7, false, 112_947, 479_037_456);
    // Each of the three is needed.
    let no_b1 = Config {
        name: "main with the review's fixes but B1's",
        b1_fix: false,
        ..MAIN_REVIEW_FIXES
    };
    find(&no_b1, 6, &|v| {
        stale_after_noflush(v, Pte::Dm, Load::SwitchMm)
    });
    let no_b2 = Config {
        name: "main with the review's fixes but B2's",
        b2_fix: false,
        ..MAIN_REVIEW_FIXES
    };
    find(&no_b2, 6, &|v| {
        stale_after_noflush(v, Pte::User, Load::SwitchMm)
    });
    let no_m5 = Config {
        name: "main with the review's fixes but M5's",
        make_sensitive: SensitiveFlush::Range,
        ..MAIN_REVIEW_FIXES
    };
    find(&no_m5, 6, &|v| {
        v.invariant == Invariant::Sensitive && entry_is(v, Pte::Vmalloc)
    });
}

#[test]
fn pcid_off_with_a_global_direct_map_fails() {
    // Global entries survive CR3 writes: the full direct map's entry of a sensitive page is
    // usable in the nonsensitive space.
    let c = find(&PCID_OFF_GLOBAL_DIRECT_MAP, 6, &|v| {
        v.invariant == Invariant::Sensitive && entry_is(v, Pte::SensFull) && v.tag == Tag::Global
    });
    assert!(c
        .events
        .contains(&Event::Kernel(KernelEvent::MakeSensitive)));
}

#[test]
fn pcid_off_with_a_ranged_sensitive_flush_fails_m5() {
    // The ranged flush misses the global vmalloc alias that vfree() left to the lazy purge.
    let c = find(&PCID_OFF_RANGED_SENSITIVE, 6, &|v| {
        v.invariant == Invariant::Sensitive && entry_is(v, Pte::Vmalloc) && v.tag == Tag::Global
    });
    let vfree = c
        .events
        .iter()
        .position(|e| *e == Event::Kernel(KernelEvent::VfreeLazy))
        .unwrap();
    assert!(!c.events[vfree..].contains(&Event::Kernel(KernelEvent::Purge)));
}

#[test]
fn make_sensitive_without_a_flush_fails() {
    // ASI's own direct-map entry of the page stays in the TLB.
    find(&PCID_OFF_NO_SENSITIVE_FLUSH, 6, &|v| {
        v.invariant == Invariant::Stale && entry_is(v, Pte::SensNs)
    });
}

#[test]
fn nonsensitive_tables_that_keep_sensitive_pages_fail() {
    // No TLB is to blame: the nonsensitive tables themselves map user data.
    find(&PCID_OFF_NS_KEEPS_SENSITIVE, 6, &|v| {
        v.invariant == Invariant::Sensitive
            && v.entry.is_some_and(|e| e.pte == Pte::SensNs && !e.stale)
    });
}

#[test]
fn exit_with_noflush_fails() {
    // The full PCID missed the user flush done while restricted.
    let c = find(&PCID_EXIT_NOFLUSH, 6, &|v| {
        stale_after_noflush(v, Pte::User, Load::Exit)
    });
    assert_eq!(c.events.len(), 3);
}

#[test]
fn tracked_design_needs_each_rule() {
    let without = |t: Tracking, name| Config {
        name,
        tracking: Some(t),
        ..TRACKED
    };
    // R1: the user flush done on the nonsensitive PCID, then the exit with NOFLUSH.
    let r1 = without(
        Tracking {
            twin_on_local_flush: false,
            ..ALL_RULES
        },
        "tracked without R1",
    );
    find(&r1, 6, &|v| stale_after_noflush(v, Pte::User, Load::Exit));
    // R2: a flushed switch leaves the other flavour of the ASID stale.
    let r2 = without(
        Tracking {
            twin_on_new_asid: false,
            ..ALL_RULES
        },
        "tracked without R2",
    );
    find(&r2, 6, &|v| {
        v.invariant == Invariant::Stale && matches!(v.moment, Moment::Load { noflush: true, .. })
    });
    // R3: B1 again.
    let r3 = without(
        Tracking {
            invalidate_other: false,
            ..ALL_RULES
        },
        "tracked without R3",
    );
    find(&r3, 6, &|v| stale_after_noflush(v, Pte::Dm, Load::SwitchMm));
    // R4's generation check: the lazy CPU's exit before it switches to init_mm.
    let r4 = without(
        Tracking {
            enter_exit_check_gen: false,
            ..ALL_RULES
        },
        "tracked without R4's generation check",
    );
    find(&r4, 6, &|v| {
        v.invariant == Invariant::StaleTable
            && v.moment
                == Moment::Load {
                    why: Load::Exit,
                    noflush: true,
                }
    });
}

#[test]
fn search_counts_what_plain_enumeration_counts() {
    // The deduplicating search covers exactly the sequences a plain enumeration visits,
    // and finds the same shortest counterexample length.
    for cfg in [PCID_OFF, MAIN, TRACKED] {
        let len = 4;
        let (sequences, shortest) = enumerate(&cfg, len);
        let r = explore(&cfg, len, None, len);
        assert_eq!(r.sequences, sequences, "{}", cfg.name);
        assert_eq!(
            r.counterexample.map(|c| c.events.len()),
            shortest,
            "{}",
            cfg.name
        );
    }
}
