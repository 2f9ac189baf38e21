// SPDX-License-Identifier: GPL-2.0

//! The invariants, checked for a CPU at each of its CR3 loads and for every CPU at the end of
//! each event.
//!
//! They concern the entries the CPU may use in its current address space: those of its
//! current PCID and the global ones (see [`hw::Tlb::usable`]). An entry of another PCID is
//! harmless until that PCID is loaded, and every load is checked, so checking the loaded space
//! at each load and every space at the end of each event is the same as checking that no
//! access ever uses a bad entry.
//!
//! - I1, `Stale`: no usable entry was read from a PTE that changed since, unless the change's
//!   flush is legitimately still pending: the lazily purged vmalloc alias until the purge,
//!   and A's user PTE on a CPU running a kernel thread lazily on A (tlb.c relies on kernel
//!   threads never touching user memory, and on the tlb_gen check when the CPU switches
//!   back). Every other flush completes within the event that changed the PTE.
//! - I1, `OtherMm`: no usable entry or cached paging structure of A's user half while the CPU
//!   runs on another mm's tables (a PCID reused without a flush).
//! - I1, `StaleTable`: no usable paging-structure cache entry points to A's freed PTE table,
//!   lazy CPUs included: a speculative walk through it reads whatever the page holds now.
//! - I2, `Sensitive`: while on a nonsensitive PGD, no usable entry maps page S while it holds
//!   user data, whether through the direct map (either PTE) or the vmalloc alias.

use super::hw::{Cr3, Entry, Pte, Tag, PTE_BITS, STALE_BITS};
use super::kernel::{Mm, Page, Run};
use std::fmt;
use std::vec::Vec;

/// Why a CR3 was loaded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Load {
    /// `load_new_mm_cr3()` on the full tables.
    SwitchMm,
    /// ASI's restricted switch from `load_new_mm_cr3()` (`__asi_switch_mm()`).
    RestrictedSwitch,
    /// ASI enter on the return to user mode.
    Enter,
    /// ASI exit (a fault, the switch_mm path, or the lazy flush path).
    Exit,
    /// `native_flush_tlb_local()`'s CR3 rewrite.
    FlushLocal,
    /// `initialize_tlbstate_and_flush()`.
    Online,
}

/// When a violation was seen.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Moment {
    /// Right after a CR3 load on the CPU.
    Load {
        /// Which kernel path loaded CR3.
        why: Load,
        /// Whether the write had CR3_NOFLUSH.
        noflush: bool,
    },
    /// At the end of an event, every flush it started being complete.
    End,
}

/// Which invariant broke.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Invariant {
    /// I1: a usable TLB entry was read from a PTE that has changed since.
    Stale,
    /// I1: a usable TLB entry or paging-structure cache entry of A's user half on another
    /// mm's tables.
    OtherMm,
    /// I1: a usable paging-structure cache entry points to A's freed PTE table.
    StaleTable,
    /// I2: a usable entry maps a sensitive page while the CPU is on nonsensitive tables.
    Sensitive,
}

/// A broken invariant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Violation {
    /// The CPU.
    pub(super) cpu: usize,
    /// The invariant.
    pub(super) invariant: Invariant,
    /// The TLB entry, or `None` for the cached pointer to A's PTE table.
    pub(super) entry: Option<Entry>,
    /// The tag of the entry or cache entry.
    pub(super) tag: Tag,
    /// The CPU's CR3.
    pub(super) cr3: Cr3,
    /// When.
    pub(super) moment: Moment,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.invariant {
            Invariant::Stale => "I1 (stale translation used)",
            Invariant::OtherMm => "I1 (another mm's translation used)",
            Invariant::StaleTable => "I1 (freed page table used by the walker)",
            Invariant::Sensitive => "I2 (sensitive page reachable from the nonsensitive space)",
        };
        write!(f, "{what} on CPU{} with CR3 = {}: ", self.cpu, self.cr3)?;
        match self.entry {
            Some(e) => write!(f, "{e}")?,
            None => write!(f, "cached pointer to A's PTE table tagged {}", self.tag)?,
        }
        match self.moment {
            Moment::Load { why, noflush } => write!(
                f,
                ", right after the {why:?} CR3 load{}",
                if noflush { " with NOFLUSH" } else { "" }
            ),
            Moment::End => write!(f, ", at the end of the event"),
        }
    }
}

impl Run<'_> {
    fn violation(
        &mut self,
        c: usize,
        invariant: Invariant,
        entry: Option<Entry>,
        tag: Tag,
        moment: Moment,
    ) {
        let v = Violation {
            cpu: c,
            invariant,
            entry,
            tag,
            cr3: self.m.cpus[c].hw.cr3(),
            moment,
        };
        self.note(|| std::format!("  VIOLATION: {v}"));
        self.found.push(v);
    }

    /// Checks the invariants for the entries CPU `c` may use now.
    pub(super) fn check_cpu(&mut self, c: usize, moment: Moment) {
        let cpu = &self.m.cpus[c];
        if !cpu.online {
            return;
        }
        let root = cpu.hw.cr3().root;
        let mm = Mm::of_root(root);
        let lazy_on_a = cpu.tlb.is_lazy && cpu.tlb.loaded_mm == Mm::A;
        let sensitive = root.is_nonsensitive() && self.m.mem.page == Page::Sensitive;
        let vfree_pending = self.m.mem.vfree_pending;
        let mut bad = Vec::new();
        // The quick test first: most states have nothing suspicious in use.
        let bits = cpu.hw.usable_bits();
        let [user, _, sens_full, sens_ns, vmalloc] = PTE_BITS;
        let mut stale = STALE_BITS;
        if lazy_on_a {
            stale &= !user;
        }
        if vfree_pending {
            stale &= !vmalloc;
        }
        let suspicious = bits & stale != 0
            || (mm != Mm::A && bits & user != 0)
            || (sensitive && bits & (sens_full | sens_ns | vmalloc) != 0);
        if suspicious {
            for e in cpu.hw.usable() {
                let invariant = match e.pte {
                    Pte::User if mm != Mm::A => Some(Invariant::OtherMm),
                    Pte::User if e.stale && !lazy_on_a => Some(Invariant::Stale),
                    Pte::Vmalloc if e.stale && !vfree_pending => Some(Invariant::Stale),
                    Pte::Dm | Pte::SensFull | Pte::SensNs if e.stale => Some(Invariant::Stale),
                    _ => None,
                };
                if let Some(i) = invariant {
                    bad.push((i, e));
                }
                if sensitive && matches!(e.pte, Pte::SensFull | Pte::SensNs | Pte::Vmalloc) {
                    bad.push((Invariant::Sensitive, e));
                }
            }
        }
        let table = cpu.hw.usable_user_table();
        let tag = cpu.hw.current_tag();
        for (i, e) in bad {
            self.violation(c, i, Some(e), e.tag, moment);
        }
        match table {
            Some(_) if mm != Mm::A => self.violation(c, Invariant::OtherMm, None, tag, moment),
            Some(true) => self.violation(c, Invariant::StaleTable, None, tag, moment),
            _ => {}
        }
    }
}
