// SPDX-License-Identifier: GPL-2.0

//! ASI's CR3 switches (`arch/x86/mm/asi/asi.c`, whose CR3 code 733a6de left as the review
//! read it at d55f5f5) and the tracked design.
//!
//! On main, the nonsensitive CR3 of an mm is its full CR3 with the PCID's ASI bit set (when
//! the kernel uses PCIDs) and ASI's PGD as root. Entering, leaving and the restricted switch
//! never set CR3_NOFLUSH. The weakened designs change one thing each, and the review's fixes
//! for B1 and B2 can be added (see [`super::Config`]).
//!
//! # The tracked design (stretch goal)
//!
//! It keeps PCIDs and uses NOFLUSH on enter and exit, with PTI's own mechanisms generalised to
//! ASI's two PCID flavours. Per CPU it keeps two masks with a bit per dynamic ASID,
//! `stale_full` and `stale_ns`: "the full (nonsensitive) PCID of this ASID may hold entries
//! that a flush since missed; flush it when next loaded". The rules, each of which the model
//! checks is needed (`tracked_design_needs_each_rule`):
//!
//! - R1 (twin of a local flush, like `invalidate_user_asid()` in `native_flush_tlb_one_user()`
//!   and `native_flush_tlb_local()`): every flush that tlb.c does for the current PCID only
//!   (INVLPG in `flush_tlb_one_user()`, the CR3 rewrite of `flush_tlb_local()`) sets the bit
//!   of the current ASID in the mask of the *other* flavour: `stale_full` if the CPU runs on
//!   a nonsensitive PCID (read from the CR3 PCID's ASI bit, not from the restricted flag),
//!   else `stale_ns`.
//! - R2 (new or outdated ASID, like `invalidate_user_asid()` in `load_new_mm_cr3()`): when
//!   `load_new_mm_cr3()` is called with `need_flush`, it sets the ASID's bit in both masks
//!   before its CR3 write.
//! - R3 (other ASIDs, PTI's `invalidate_other`): `flush_tlb_one_kernel()` sets
//!   `invalidate_other` when ASI is on, not only under PTI, and `clear_asid_other()` works
//!   under ASI. The cleared `ctx_id`s make the next load of those ASIDs go through R2.
//! - R4 (NOFLUSH only when clean): every CR3 write of flavour F of ASID a (switch_mm's load,
//!   the restricted switch, enter, exit) writes NOFLUSH if and only if the bit of a in F's
//!   mask is clear and the write would otherwise be a NOFLUSH one: for switch_mm's two loads,
//!   `!need_flush`; for enter and exit, `ctxs[a]` still holds the loaded mm at its current
//!   `tlb_gen`. A write without NOFLUSH clears the bit.
//! - R5 (global entries): `make_sensitive()` always uses `flush_tlb_all()`, since vmalloc
//!   aliases are global and lazily flushed (M5); `flush_tlb_all()` leaves the masks alone.
//!
//! The enter/exit check of `ctxs[a]` in R4 matters only on a lazy CPU: it runs a kernel thread
//! on an mm whose flushes it skips (`should_flush_tlb()`), and when a freed page table makes
//! tlb.c send it the flush anyway, `flush_tlb_func()` leaves ASI before switching to init_mm;
//! that exit must flush the full PCID, which may cache a pointer to the freed table.

use super::check::Load;
use crate::pcid_rules::{self as rules, Event};

/// What `asi_pcid_rule()` (asi.c) does: applies `event` to ASID `asid`'s marks in the per-CPU
/// masks `full` and `ns` (bit n: ASID n) as the rules' table, [`rules::TABLE`], decides, and
/// returns whether a CR3 write may use CR3_NOFLUSH.
fn apply(event: Event, asid: u8, full: &mut u16, ns: &mut u16) -> bool {
    let bit = 1u16 << (asid % 16);
    let mut marks = 0u8;
    if *full & bit != 0 {
        marks |= rules::FULL;
    }
    if *ns & bit != 0 {
        marks |= rules::NS;
    }
    let d = rules::TABLE[event as usize][usize::from(marks)];
    for (mask, flag) in [(full, rules::FULL), (ns, rules::NS)] {
        if d & flag != 0 {
            *mask |= bit;
        } else {
            *mask &= !bit;
        }
    }
    d & rules::NOFLUSH != 0
}

/// The event of a CR3 write of the nonsensitive (`ns`) or full PCID that wanted CR3_NOFLUSH
/// (`keep`) or not.
fn load_event(ns: bool, keep: bool) -> Event {
    match (ns, keep) {
        (false, false) => Event::LoadFull,
        (false, true) => Event::LoadFullKeep,
        (true, false) => Event::LoadNs,
        (true, true) => Event::LoadNsKeep,
    }
}
use super::hw::{Cr3, Root, ASI_PCID_BIT};
use super::kernel::{Mm, Run};
use std::format;

impl Run<'_> {
    /// `asi_cr3()` (asi.c): the nonsensitive CR3 for the full CR3 `full`.
    fn asi_cr3(&self, full: Cr3, root: Root) -> Cr3 {
        let pcid = if self.cfg.pcid {
            full.pcid | ASI_PCID_BIT
        } else {
            full.pcid
        };
        Cr3 { root, pcid }
    }

    /// Whether `ctxs[asid]` holds `mm` at its current generation.
    fn up_to_date(&self, c: usize, asid: u8, mm: Mm) -> bool {
        let ctx = self.m.cpus[c].tlb.ctxs[usize::from(asid)];
        ctx.ctx_id == Some(mm) && ctx.behind == 0
    }

    /// Rule R4: whether a CR3 write of the given flavour of `asid` that `wanted` NOFLUSH may
    /// use it; consumes the bit. Without tracking, `wanted` is what the design does.
    pub(super) fn tracked_noflush(&mut self, c: usize, ns: bool, asid: u8, wanted: bool) -> bool {
        if self.cfg.tracking.is_none() {
            return wanted;
        }
        let a = &mut self.m.cpus[c].asi;
        apply(
            load_event(ns, wanted),
            asid,
            &mut a.stale_full,
            &mut a.stale_ns,
        )
    }

    /// Rule R2: `load_new_mm_cr3()` with `need_flush` marks both flavours of `asid`.
    pub(super) fn tracked_new_asid(&mut self, c: usize, asid: u8) {
        if self.cfg.tracking.is_some_and(|t| t.twin_on_new_asid) {
            let a = &mut self.m.cpus[c].asi;
            apply(Event::NewAsid, asid, &mut a.stale_full, &mut a.stale_ns);
        }
    }

    /// Rule R1: a flush of the current PCID only leaves its twin to be flushed later.
    pub(super) fn tracked_local_flush(&mut self, c: usize) {
        if !self.cfg.tracking.is_some_and(|t| t.twin_on_local_flush) {
            return;
        }
        let cr3 = self.m.cpus[c].hw.cr3();
        let asid = self.asid_of(cr3);
        let a = &mut self.m.cpus[c].asi;
        let event = if cr3.pcid & ASI_PCID_BIT != 0 {
            Event::LocalFlushNs
        } else {
            Event::LocalFlushFull
        };
        apply(event, asid, &mut a.stale_full, &mut a.stale_ns);
    }

    /// `__asi_switch_mm()` (asi.c), called by `load_new_mm_cr3()` for the full CR3
    /// `cr3` of `next`: if restricted, load `next`'s nonsensitive CR3 instead and record `cr3`
    /// as the full CR3 to go back to. `noflush` is `!need_flush`.
    pub(super) fn asi_switch_mm(&mut self, c: usize, next: Mm, cr3: Cr3, noflush: bool) -> bool {
        if !self.m.cpus[c].asi.restricted {
            return false;
        }
        // init_mm has no nonsensitive table.
        let Some(root) = next.asi_pgd() else {
            return false;
        };
        // CR3_NOFLUSH is stripped (our Cr3 has no bit 63) and the result becomes full_cr3.
        self.m.cpus[c].asi.full_cr3 = cr3;
        // The review's fix (a) for B2: the previous mm's full PCID missed the flushes made
        // while restricted, so its next load must flush.
        if self.cfg.b2_fix {
            let t = &mut self.m.cpus[c].tlb;
            t.ctxs[usize::from(t.loaded_mm_asid)].behind = 2;
        }
        let ns = self.asi_cr3(cr3, root);
        // asi_cr3() never sets NOFLUSH on main; the tracked design follows R4.
        let wanted = self.cfg.tracking.is_some() && noflush;
        let asid = self.asid_of(cr3);
        let nf = self.tracked_noflush(c, true, asid, wanted);
        self.note(|| format!("  CPU{c}: restricted switch to {next:?}"));
        self.write_cr3(c, ns, nf, Load::RestrictedSwitch);
        true
    }

    /// `__asi_exit()` and `asi_load_full()`, once `asi_leave()` (asi.c): back to the full CR3,
    /// which was read from CR3 (bit 63 reads as 0) or stripped of NOFLUSH, so the write flushes
    /// on main.
    pub(super) fn asi_exit(&mut self, c: usize) {
        let a = &self.m.cpus[c].asi;
        if !a.restricted {
            return;
        }
        let cr3 = a.full_cr3;
        let asid = self.asid_of(cr3);
        let wanted = match self.cfg.tracking {
            Some(t) => {
                !t.enter_exit_check_gen || self.up_to_date(c, asid, self.m.cpus[c].tlb.loaded_mm)
            }
            None => self.cfg.exit_noflush,
        };
        let nf = self.tracked_noflush(c, false, asid, wanted);
        self.write_cr3(c, cr3, nf, Load::Exit);
        self.m.cpus[c].asi.restricted = false;
    }

    /// `__asi_enter_user()` and `asi_load_nonsensitive()`, once `asi_enter()` (asi.c).
    pub(super) fn asi_enter_user(&mut self, c: usize) {
        let mm = self.m.cpus[c].tlb.loaded_mm;
        let Some(root) = mm.asi_pgd() else {
            return;
        };
        if self.m.cpus[c].asi.restricted {
            return;
        }
        // From this mm's full tables only.
        let full = self.m.cpus[c].hw.cr3();
        assert_eq!(full.root, mm.pgd(), "enter from a foreign CR3");
        let asid = self.asid_of(full);
        let a = &mut self.m.cpus[c].asi;
        a.full_cr3 = full;
        a.restricted = true;
        let ns = self.asi_cr3(full, root);
        let wanted = match self.cfg.tracking {
            Some(t) => !t.enter_exit_check_gen || self.up_to_date(c, asid, mm),
            None => false,
        };
        let nf = self.tracked_noflush(c, true, asid, wanted);
        self.write_cr3(c, ns, nf, Load::Enter);
    }
}
