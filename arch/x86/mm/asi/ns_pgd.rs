// SPDX-License-Identifier: GPL-2.0

//! Per-mm nonsensitive top-level tables (PGDs).
//!
//! Each user mm gets a top-level table of its own: the kernel half is copied from the global
//! nonsensitive tables (whose top-level entries never change after boot, see
//! [`crate::tables`]), the user half is the mm's own (a process's memory is no secret to
//! itself). It is created with the mm (`init_new_context()`) and freed with it
//! (`destroy_context()`); the user half is kept in sync by `__asi_set_user_pgd()`, which
//! mirrors every write of a user-half top-level entry of the mm's PGD, as PTI does for its
//! user PGD.

use crate::{pgtable::TableMemory, sys, tables};
use kernel::{
    bindings,
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
};

static LIVE: Atomic<u64> = Atomic::new(0);
static CREATED: Atomic<u64> = Atomic::new(0);
static FAILED: Atomic<u64> = Atomic::new(0);

/// Counters of the nonsensitive PGDs: live, created since boot, failed allocations.
pub(crate) fn counters() -> (u64, u64, u64) {
    (
        LIVE.load(Relaxed),
        CREATED.load(Relaxed),
        FAILED.load(Relaxed),
    )
}

/// Gives `mm` its nonsensitive top-level table. Fails with `ENOMEM`, leaving nothing
/// allocated, if the table cannot be allocated.
///
/// # Safety
///
/// `mm` is a new mm, with its PGD, that no other thread uses yet.
pub(crate) unsafe fn init_mm(mm: *mut bindings::mm_struct) -> Result {
    let Some(t) = tables::get() else {
        return Ok(());
    };
    let Some(ns_pgd) = sys::alloc_ns_pgd() else {
        FAILED.add(1, Relaxed);
        return Err(ENOMEM);
    };
    // SAFETY: The caller guarantees `mm` is live, with its PGD.
    let pgd = unsafe { sys::mm_pgd(mm) };
    // SAFETY: `pgd` is the PGD of `mm`, which the caller guarantees is live. `ns_pgd` was just
    // allocated and is not `mm`'s yet: no CPU translates through it.
    unsafe { t.fill_ns_pgd(ns_pgd, pgd) };
    // SAFETY: `mm` is new and only this thread uses it; `ns_pgd` stays allocated until
    // `destroy_mm()` replaces it.
    unsafe { sys::mm_set_ns_pgd(mm, ns_pgd) };
    LIVE.add(1, Relaxed);
    CREATED.add(1, Relaxed);
    Ok(())
}

/// Frees `mm`'s nonsensitive top-level table.
///
/// # Safety
///
/// `mm` is being freed: no task uses it any more.
pub(crate) unsafe fn destroy_mm(mm: *mut bindings::mm_struct) {
    // SAFETY: The caller guarantees `mm` is live until this returns.
    let ns_pgd = unsafe { sys::mm_ns_pgd(mm) };
    if ns_pgd == 0 {
        return;
    }
    // SAFETY: Nothing else uses `mm` any more.
    unsafe { sys::mm_set_ns_pgd(mm, 0) };
    // SAFETY: `ns_pgd` is the table `alloc_ns_pgd()` made for `mm`, which no longer links it.
    // `mm` is being freed: no CPU has it loaded (a lazy user holds a reference), and a CPU
    // loads a nonsensitive CR3 only with a flush of its PCID, so no cached translation
    // through the table is used again.
    unsafe { sys::free_table(ns_pgd) };
    LIVE.fetch_sub(1, Relaxed);
}

impl tables::Tables {
    /// Fills the new nonsensitive PGD `ns_pgd`: the user half from the mm's PGD `pgd`, the kernel
    /// half from the global nonsensitive tables.
    ///
    /// # Safety
    ///
    /// `pgd` is the PGD of a live mm, and `ns_pgd` a table of [`sys::alloc_ns_pgd`] that no CPU
    /// translates through yet.
    unsafe fn fill_ns_pgd(&self, ns_pgd: u64, pgd: u64) {
        let mem = self.mem();
        for i in 0..crate::pgtable::ENTRIES {
            let src = if self.paging().kernel_half().contains(&i) {
                self.pgd()
            } else {
                pgd
            };
            // SAFETY: `src` is the global nonsensitive top-level table, a table of `mem` that is
            // never freed, or `pgd`, the PGD of a live mm as the caller guarantees.
            let e = unsafe { mem.read(src, i) };
            // SAFETY: The caller guarantees that `ns_pgd` is a table of `alloc_ns_pgd()` that no
            // CPU translates through.
            unsafe { mem.write_owned(ns_pgd, i, e) };
        }
    }
}
