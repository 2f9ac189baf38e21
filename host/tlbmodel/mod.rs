// SPDX-License-Identifier: GPL-2.0

//! A host model of the x86-64 TLB, driven by the kernel's TLB-flush algorithm
//! (`arch/x86/mm/tlb.c` of Linux 7.3.4) and by ASI's CR3 switches, checked exhaustively.
//!
//! QEMU TCG and Bochs flush their whole TLB on every CR3 write and have no PCIDs, so no test
//! under an emulator can see a stale TLB entry left in a PCID that is loaded again with
//! CR3_NOFLUSH. This module can: it runs the kernel's flush decisions against a TLB that keeps
//! everything the SDM allows it to keep, on two CPUs, over every sequence of events up to a
//! length, and checks after every step that no CPU can use a translation it must not use.
//!
//! # The parts
//!
//! - [`hw`]: one CPU's TLB and paging-structure caches, tagged by PCID or global, with CR3
//!   (root and PCID), CR4.PCIDE and CR4.PGE. MOV to CR3 with and without NOFLUSH (PCIDE=1: the
//!   new PCID's non-global entries and paging-structure caches, or nothing; PCIDE=0: every
//!   non-global entry and paging-structure cache), INVLPG (the VA in the current PCID, global
//!   entries of the VA whatever their PCID, the current PCID's paging-structure caches),
//!   INVPCID types 0 to 3 and the CR4.PGE toggle (everything). The caches are always full:
//!   after every CR3 write and every flush, and at the end of every event, each online CPU
//!   caches every translation its current tables give, and any cached entry of its current
//!   PCID, or global, counts as used (speculation may use it at any time). Invalidations do
//!   only what the SDM requires. Real hardware caches a subset of this, so a stale entry
//!   the model can use is one a real CPU may use, and a design the model accepts is safe on
//!   any CPU that follows the SDM.
//! - [`kernel`]: tlb.c as 7.3 implements it, each function cited by line: `kern_pcid()`
//!   (116-150), `build_cr3()` and `build_cr3_noflush()` (161-184), `clear_asid_other()`
//!   (192-216), `choose_new_asid()` (225-275), `invalidate_user_asid()` (545-563, PTI only, so
//!   a no-op), `load_new_mm_cr3()` (565-583), `switch_mm_irqs_off()` (783-972, both the
//!   same-mm lazy path and the switch), `initialize_tlbstate_and_flush()` (1058-1094),
//!   `flush_tlb_func()` (1103-1274: wrong mm, init_mm, the lazy CPU's switch to init_mm,
//!   the generation checks, partial INVLPG against full flush, the `tlb_gen` update),
//!   `should_flush_tlb()` (1276-1312) and `native_flush_tlb_multi()` (1326-1356, lazy CPUs
//!   skipped unless tables are freed), `init_flush_tlb_info()` (1374-1399, the 33-page
//!   ceiling), `flush_tlb_mm_range()` (1401-1440), `flush_tlb_all()` (1442-1458),
//!   `flush_tlb_kernel_range()` with `do_kernel_range_flush()` (1479-1517),
//!   `flush_tlb_one_kernel()` (1544-1571, PTI-only `invalidate_other`),
//!   `native_flush_tlb_one_user()` (1576-1600), `native_flush_tlb_global()` (1610-1635),
//!   `native_flush_tlb_local()` (1640-1653), `__flush_tlb_all()` (1663-1679) and
//!   `arch_tlbbatch_flush()` (1682-1713); from tlbflush.h, `enter_lazy_tlb()` (190-196),
//!   `inc_mm_tlb_gen()` (367-376), `arch_tlbbatch_add_pending()` (378-385) and
//!   `__native_tlb_flush_global()` (518-522). CPU offline is `sched_force_init_mm()`
//!   (kernel/sched/core.c:8452-8466); online is INIT, head_64.S's CR4.PGE toggle (203-233)
//!   and `initialize_tlbstate_and_flush()` (from cpu_init(), cpu/common.c:2508).
//!   `TLB_NR_DYN_ASIDS` (6 in tlbflush.h:67) is [`Config::nr_asids`], 2 (3 in one run): with
//!   init_mm, A and B competing for 2 slots, every path of `choose_new_asid()` is taken (a
//!   slot that is current and loaded with NOFLUSH, one that is behind and flushed, a miss that
//!   evicts round-robin) and a non-current slot can keep an mm's entries while the CPU runs
//!   another, which is what B1 and B2 need. More slots only keep more mms cached at once;
//!   `tracked_design_with_three_asids_is_sound` checks 3 to 6 events.
//! - [`asi`]: ASI's `__asi_enter_user()`, `asi_load_full()` (once `asi_leave()`) and
//!   `__asi_exit()`, `__asi_switch_mm()` and `asi_cr3()`, the hooks of the series in
//!   `load_new_mm_cr3()`, `flush_tlb_func()`'s lazy path and `initialize_tlbstate_and_flush()`,
//!   `make_sensitive()` and `make_nonsensitive()`; and the tracked design (stretch goal), whose
//!   rules R1 to R5 are written down in [`asi`], and whose R1, R2 and R4 it takes from the
//!   kernel's `pcid_rules.rs`.
//! - [`check`]: the invariants. [`explore`]: the exhaustive driver.
//!
//! # Memory
//!
//! mm A (two threads, one user page whose PTE changes and whose PTE table can be freed), mm B,
//! init_mm. Each user mm has a full PGD (PCID `kern_pcid(asid)`) and a nonsensitive one (the
//! same PCID with ASI's bit) sharing the user half. The kernel half is the same in all PGDs
//! except the direct map: one page (D) whose direct-map PTE CPA toggles, and one page (S)
//! with an always-present PTE in the kernel's direct map, a PTE in ASI's direct map that
//! `make_sensitive()` clears, and a global vmalloc alias. The direct map is non-global under
//! ASI (global in the weakened design that keeps it so, and without ASI).
//!
//! # Events
//!
//! Each step is one event on one CPU (per CPU: switch to A, switch to B, switch to a kernel
//! thread, return to user = ASI enter, #PF on a kernel address = ASI exit, A changes its user
//! PTE and calls `flush_tlb_mm_range()` for one page, for all, and either of those with
//! `freed_tables`, go offline, come online), or one kernel event that any online CPU may run
//! (CPA of one direct-map page with a one-page flush, CPA of many pages with `flush_tlb_all()`,
//! page S allocated for user data (`make_sensitive()`), `vfree()` of S's vmalloc alias with
//! the lazy purge, the purge's flush, S vmalloc'ed again, S reused by the kernel
//! (`make_nonsensitive()`), reclaim unmapping A's page with `arch_tlbbatch_flush()`). A
//! switch made while the CPU is in the nonsensitive space is the restricted switch of
//! `__asi_switch_mm()` when the design has it. Events whose effect is nil (a switch between
//! two threads of the mm already running, a second `enter_lazy_tlb()`, entering when already
//! in) are left out. The initial state has both CPUs running threads of A with full TLBs;
//! `boot_state_is_reachable` shows the boot state is reachable from it.
//!
//! # Invariants (see [`check`])
//!
//! Checked for a CPU right after each of its CR3 loads, and for every online CPU at the end of
//! each event, over the entries it may use (current PCID and global): (I1) no entry read from a
//! PTE that changed since, except A's user page on a CPU lazily running a kernel thread on A
//! (tlb.c's contract) and the vmalloc alias until the lazy purge (vmalloc's contract); no entry
//! or paging-structure entry of A's user half on another mm's tables; no paging-structure entry
//! pointing to A's freed PTE table, lazy CPUs included; (I2) on a nonsensitive PGD, no entry
//! that maps page S while S holds user data. Each flush completes within the event that
//! changed the PTE, so nothing stale may remain usable after an event; an entry in a PCID that
//! is not current is checked when that PCID is loaded.
//!
//! # Exploration (see [`explore`])
//!
//! Breadth-first over states, each state (the whole [`kernel::Machine`], a machine and its
//! mirror image with the CPUs swapped counted once) expanded once at its first depth, so the
//! first counterexample is a shortest one, and the number of sequences covered is counted
//! exactly over the explored graph (`search_counts_what_plain_enumeration_counts` checks both
//! against a plain enumeration of every sequence of up to 4 events). Results, debug profile,
//! `cargo test --quiet tlbmodel -- --nocapture` on this 2-core machine while a kernel build
//! ran next to it:
//!
//! - `PCID_OFF` (the fix of 733a6de): the graph closes at depth 13 with 2,430 states and
//!   30,482 transitions: no violation for sequences of **any** length; 479,083,609,667,078
//!   sequences of 1 to 12 events. Also closed and sound with CR4.PGE toggles instead of
//!   INVPCID.
//! - `UPSTREAM` (7.3 without ASI, PCIDs, global kernel mappings): closes at depth 27 with
//!   87,118 states, no violation: the model of tlb.c raises no false alarm.
//! - `TRACKED` (PCIDs and NOFLUSH, the design the kernel implements since "x86/mm/asi: Track
//!   stale PCIDs of both address spaces and use PCIDs again", whose rules the model takes from
//!   the kernel's own `pcid_rules.rs`): no violation in 7,625,841,382
//!   sequences of 1 to 8 events (601,092 states); with 3 ASIDs, none in 29,926,707 sequences
//!   of 1 to 6. The kernel tells the flavour of the current PCID for R1 by ASI's flag rather
//!   than by CR3's PCID bit; the two differ only inside ASI's CR3 code, where no flush runs
//!   (interrupts are off and NMIs do not flush), and events are atomic here.
//! - `MAIN` (d55f5f5, as reviewed, on PCID hardware): B1 in 3 events, M5 in 3, B2 in 5; B1
//!   but no B2 up to 7 events without the restricted switch.
//! - `MAIN_REVIEW_FIXES` (PCIDs kept, ASI's CR3 writes still flushing, the review's fixes for
//!   B1, B2 (option a) and M5): no violation in 479,037,456 sequences of 1 to 7 events
//!   (112,947 states); without any one of the three fixes it fails again.
//! - Each weakened design fails in 3 events with the failure it is meant to show (the tests
//!   say which); the tracked design fails without any one of its rules, in 3 to 5 events.
//!
//! The whole module takes 8.5 to 13 s of wall time here, depending on the load of the kernel
//! build beside it; the TRACKED run is the longest (6.5 to 11 s), and depth 9 would take it
//! about four times longer.
//!
//! # Simplifications, and why they hide none of the bugs looked for
//!
//! - One flush at a time: every event, flush IPIs included, completes before the next one
//!   starts; no NMI inside ASI's enter/exit and no IPI during a switch (`LOADED_MM_SWITCHING`).
//!   So `f->new_tlb_gen` is always the mm's `tlb_gen` and a context's lag is 0, 1 or "2 or
//!   more". This keeps every decision that ASI changes (which PCID a flush reaches, which CR3
//!   is written with or without NOFLUSH) and every ordering of those decisions across events;
//!   it leaves out tlb.c's own handling of concurrent flushes of one mm, which ASI does not
//!   change, and the NMI windows of ASI's CR3 code, reviewed by hand (review §1.4).
//! - `mm_cpumask()` and `trim_cpumask` are not modelled: a CPU in the mask that runs another
//!   mm returns at tlb.c:1131-1135 without flushing, so the CPUs a flush of A reaches are those
//!   running A. A's user flushes come from a thread of A or from reclaim; the one path that
//!   would differ (a kernel thread lazily on A, alone in the mask, flushing A locally) only
//!   adds a switch to init_mm, the path the freed-tables flush already takes.
//! - One page per kind of address (user, CPA'd direct map, sensitive page with both its
//!   direct-map PTEs and its vmalloc alias), one freeable page-table page, 4 KiB pages only:
//!   each flush path treats every address of a kind alike, and a range flush is modelled by
//!   the path it takes (up to 33 pages one INVLPG each, beyond that `flush_tlb_all()`). mm B
//!   has no changing user mapping: entries of A found on B's tables stand for the converse.
//! - Not modelled: INVLPGB and global ASIDs (ASI turns INVLPGB off), PTI (exclusive with
//!   ASI), LAM, SME, paravirt flushes (ASI refuses a paravirt remote flush since 733a6de),
//!   `use_temporary_mm()` (text_poke, EFI: it is `switch_mm_irqs_off()`, modelled), IBPB and
//!   other non-TLB side effects of a switch, huge pages and CPA splits (M3).
//! - An offline CPU keeps its TLB (as a CPU parked in MWAIT may) and no flush reaches it
//!   (IPIs go to online CPUs) until the startup code flushes everything when it comes back:
//!   the pessimistic choice.
//! - The direct-map PTE of D is one PTE for both spaces: CPA writes the kernel's and ASI's
//!   `mirror()` copies it in the same step. `make_sensitive()`'s batch of extra pages is
//!   modelled only by the flush it chose: MAIN takes the ranged path, the weaker one.
//! - The state is merged where nothing observable differs: a fresh entry next to a stale one
//!   of the same tag and PTE, fields that are dead (the saved full CR3 while not restricted,
//!   an offline CPU's TLB and ASID state, which coming online rewrites), and the two CPUs'
//!   mirror images. `packing_is_exact` checks that the state index tells states apart.

mod asi;
mod check;
mod explore;
mod hw;
mod kernel;
mod tests;

/// How `make_sensitive()` flushes after clearing ASI's direct-map PTE.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SensitiveFlush {
    /// Not at all.
    None,
    /// `flush_kernel_range()` of the direct-map page (`make_sensitive()` at d55f5f5).
    Range,
    /// `flush_tlb_all()`.
    All,
}

/// The rules of the tracked design (see [`asi`]), each of which can be dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Tracking {
    /// R1.
    pub(super) twin_on_local_flush: bool,
    /// R2.
    pub(super) twin_on_new_asid: bool,
    /// R3.
    pub(super) invalidate_other: bool,
    /// R4's check of `ctxs[]` on enter and exit.
    pub(super) enter_exit_check_gen: bool,
}

/// A design: the kernel's configuration and ASI's choices.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Config {
    /// For messages.
    pub(super) name: &'static str,
    /// ASI is on.
    pub(super) asi: bool,
    /// X86_FEATURE_PCID, and so CR4.PCIDE.
    pub(super) pcid: bool,
    /// X86_FEATURE_INVPCID: `__flush_tlb_all()` uses INVPCID type 2, else toggles CR4.PGE.
    pub(super) invpcid: bool,
    /// TLB_NR_DYN_ASIDS.
    pub(super) nr_asids: usize,
    /// The direct map is global.
    pub(super) direct_map_global: bool,
    /// A switch while restricted stays restricted (main's `__asi_switch_mm()`).
    pub(super) restricted_switch: bool,
    /// Weakened: the exit writes the full CR3 with NOFLUSH.
    pub(super) exit_noflush: bool,
    /// `make_sensitive()`'s flush.
    pub(super) make_sensitive: SensitiveFlush,
    /// Weakened: the nonsensitive direct map keeps mapping sensitive pages.
    pub(super) ns_keeps_sensitive: bool,
    /// The tracked design (stretch goal), with PCIDs.
    pub(super) tracking: Option<Tracking>,
    /// The review's fix for B1: `flush_tlb_one_kernel()` sets `invalidate_other` under ASI
    /// too, and `clear_asid_other()` works without PTI.
    pub(super) b1_fix: bool,
    /// The review's fix (a) for B2: a restricted switch makes the previous ASID's context
    /// stale (`ctxs[prev_asid].tlb_gen = 0`), so its next load flushes.
    pub(super) b2_fix: bool,
}

/// Linux 7.3 without ASI, with PCIDs and a global direct map.
pub(super) const UPSTREAM: Config = Config {
    name: "upstream",
    asi: false,
    pcid: true,
    invpcid: true,
    nr_asids: 2,
    direct_map_global: true,
    restricted_switch: false,
    exit_noflush: false,
    make_sensitive: SensitiveFlush::None,
    ns_keeps_sensitive: false,
    tracking: None,
    b1_fix: false,
    b2_fix: false,
};

/// main as reviewed (d55f5f5, before 733a6de turned PCIDs off), on hardware with PCIDs: the
/// direct map non-global, every ASI CR3 write without NOFLUSH, the restricted switch, and
/// `make_sensitive()`'s ranged flush.
pub(super) const MAIN: Config = Config {
    name: "main",
    asi: true,
    direct_map_global: false,
    restricted_switch: true,
    make_sensitive: SensitiveFlush::Range,
    ..UPSTREAM
};

/// The fix of 733a6de: no PCIDs while ASI is on (CR4.PCIDE=0), `make_sensitive()` always uses
/// `flush_tlb_all()`; everything else as on main.
pub(super) const PCID_OFF: Config = Config {
    name: "pcid-off",
    pcid: false,
    make_sensitive: SensitiveFlush::All,
    ..MAIN
};

/// All the rules of the tracked design (R5 is `make_sensitive: All`).
pub(super) const ALL_RULES: Tracking = Tracking {
    twin_on_local_flush: true,
    twin_on_new_asid: true,
    invalidate_other: true,
    enter_exit_check_gen: true,
};

/// The tracked design (stretch goal): PCIDs, deferred-flush masks, NOFLUSH on enter, exit and
/// restricted switch whenever the masks allow it.
pub(super) const TRACKED: Config = Config {
    name: "tracked",
    make_sensitive: SensitiveFlush::All,
    tracking: Some(ALL_RULES),
    ..MAIN
};

/// main with PCIDs and the fixes the review proposes: B1's `invalidate_other`, B2's option (a)
/// and M5's `flush_tlb_all()`; every ASI CR3 write still flushes.
pub(super) const MAIN_REVIEW_FIXES: Config = Config {
    name: "main with the review's fixes",
    make_sensitive: SensitiveFlush::All,
    b1_fix: true,
    b2_fix: true,
    ..MAIN
};

/// Weakened: no PCIDs, but the direct map stays global. Must fail: a global entry survives
/// every CR3 write, so the full direct map's entry of a page that became sensitive is usable
/// in the nonsensitive space (I2).
pub(super) const PCID_OFF_GLOBAL_DIRECT_MAP: Config = Config {
    name: "pcid-off, global direct map",
    direct_map_global: true,
    ..PCID_OFF
};

/// Weakened: no PCIDs, but `make_sensitive()` flushes only its direct-map page. Must fail (M5):
/// the global vmalloc alias that `vfree()` left to the lazy purge still maps the page, in the
/// nonsensitive space too (I2).
pub(super) const PCID_OFF_RANGED_SENSITIVE: Config = Config {
    name: "pcid-off, ranged make_sensitive() flush",
    make_sensitive: SensitiveFlush::Range,
    ..PCID_OFF
};

/// Weakened: no PCIDs, and `make_sensitive()` does not flush at all. Must fail: ASI's own
/// direct-map entry of the page stays in the TLB of a CPU in the nonsensitive space (I1, I2).
pub(super) const PCID_OFF_NO_SENSITIVE_FLUSH: Config = Config {
    name: "pcid-off, make_sensitive() without flush",
    make_sensitive: SensitiveFlush::None,
    ..PCID_OFF
};

/// Weakened: no PCIDs, but the nonsensitive direct map keeps sensitive pages mapped. Must fail:
/// no flush can help when the tables themselves map user data (I2 with a current entry).
pub(super) const PCID_OFF_NS_KEEPS_SENSITIVE: Config = Config {
    name: "pcid-off, nonsensitive tables keep sensitive pages",
    ns_keeps_sensitive: true,
    ..PCID_OFF
};

/// Weakened: PCIDs and the restricted switch, and the exit writes CR3 with NOFLUSH. Must fail:
/// a user flush made while restricted reached only the nonsensitive PCID, and the exit
/// reloads the full one with its stale entry (I1).
pub(super) const PCID_EXIT_NOFLUSH: Config = Config {
    name: "pcid, exit with NOFLUSH",
    exit_noflush: true,
    ..MAIN
};
