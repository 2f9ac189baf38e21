// SPDX-License-Identifier: GPL-2.0

//! The global nonsensitive page tables and the sensitivity of each page of the direct map.
//!
//! The tables are built once, at boot, by [`init`] (see [`crate::pgtable`] for what is shared
//! and what is ASI's own). After that the only entries that change are the 4 KiB entries of
//! ASI's direct map, in three places, all lock-free and usable in any context:
//!
//! - [`make_sensitive`]: a page allocated for user data loses its entry, and the TLBs of all
//!   CPUs are flushed before the allocator returns the page;
//! - [`make_nonsensitive`]: a sensitive page allocated for anything else is zeroed, then gets
//!   its entry back;
//! - [`mirror`]: the kernel changed its own direct map (CPA); entries of nonsensitive pages
//!   follow it.
//!
//! A page's state is one bit in [`Tables::sensitive`]. Only the allocator changes it, while it
//! owns the page, so two CPUs never change the state of the same page at once. CPA, and so
//! [`mirror`], may change any page at any time, whatever its owner (`set_mce_nospec()`, the
//! crash kernel's protection, aliases of the kernel image), so the entry of a sensitive page
//! is [`SENSITIVE_ENTRY`], never 0, and [`mirror`] replaces an entry only by `cmpxchg()` and
//! never one that is [`SENSITIVE_ENTRY`]: a page that becomes sensitive while [`mirror`] runs
//! either keeps [`mirror`]'s entry until [`make_sensitive`] overwrites it, before its flush,
//! or never gets it (review M4).

use crate::{
    pgtable::{self, bits, Level, Paging, Range, TableMemory},
    stats::{Problem, ProblemKind, Report, Stats},
    sys::{self, DirectMapTables},
};
use kernel::{
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed},
        SetOnce,
    },
    time::{delay::fsleep, Delta},
};

/// The nonsensitive tables and the state of the direct map's pages.
///
/// # Invariants
///
/// `pgd` is the top of a tree of `mem` in `paging` (see [`TableMemory`]) whose tables live as
/// long as the kernel: ASI's own, which are never freed, and, below the entries it copies, the
/// kernel's, which the kernel keeps while its own tables link them. Below the top level, ASI's
/// own tables hold only the direct map and copies of kernel entries that never change: vmalloc,
/// whose entries do, shares no top-level entry with the direct map (`build()` checks it, and
/// `kernel_randomize_memory()` keeps them apart when ASI is asked for). `pte_tables` holds the
/// direct-map PTE table of each 2 MiB chunk of the direct map, one of ASI's own tables of that
/// tree, and the bitmap `sensitive` has a bit for each of its `pages`.
pub(crate) struct Tables {
    mem: DirectMapTables,
    paging: Paging,
    page_offset: u64,
    /// Physical address of the top-level table.
    pgd: u64,
    /// Pages of the direct map, the number of bits in `sensitive`.
    pages: u64,
    pte_tables: KVVec<u64>,
    sensitive: KVVec<Atomic<u64>>,
    table_pages: u64,
}

static TABLES: SetOnce<Tables> = SetOnce::new();

/// The entry of a sensitive page in ASI's direct map: not present, without a frame number
/// (L1TF), and with a software bit (`_PAGE_BIT_SOFTW1`, ignored by the CPU in an entry that is
/// not present) that tells it from the 0 of a page the kernel itself does not map.
pub(crate) const SENSITIVE_ENTRY: u64 = 1 << 9;

static SENSITIVE_PAGES: Atomic<u64> = Atomic::new(0);
static USER_PAGES: Atomic<u64> = Atomic::new(0);
static FLIPS_TO_SENSITIVE: Atomic<u64> = Atomic::new(0);
static FLIPS_TO_NONSENSITIVE: Atomic<u64> = Atomic::new(0);
static TLB_FLUSHES: Atomic<u64> = Atomic::new(0);
static ZEROED: Atomic<u64> = Atomic::new(0);
static REFUSED: Atomic<u64> = Atomic::new(0);
/// Flips to sensitive under way. Each sets a page's bit before it replaces the page's entry, so
/// for a moment the page is sensitive and still mapped: the verifier tells that from a leak by
/// this count (see [`Tables::mapped_while_sensitive`]).
static FLIPS_UNDER_WAY: Atomic<u64> = Atomic::new(0);

/// The tables, once built.
pub(crate) fn get() -> Option<&'static Tables> {
    TABLES.as_ref()
}

/// Builds the global nonsensitive tables. Called once, from `asi_setup()` on the boot CPU, before
/// any user data is allocated. On failure nothing is left allocated.
pub(crate) fn init() -> Result {
    let l = sys::layout();
    let paging = Paging::new(l.levels, l.pfn_mask, l.table_flags).map_err(|_| EINVAL)?;
    let chunk_pages = Level::PMD.span() / pgtable::PAGE_SIZE;
    let chunks = l.direct_map_pages.div_ceil(chunk_pages);
    let dm_len = chunks.checked_mul(Level::PMD.span()).ok_or(EINVAL)?;
    let direct_map = Range::with_len(l.page_offset, dm_len).ok_or(EINVAL)?;
    let vmalloc_len = l
        .vmalloc_end
        .checked_sub(l.vmalloc_start)
        .and_then(|d| d.checked_add(1))
        .ok_or(EINVAL)?;
    let layout = pgtable::Layout {
        direct_map,
        dynamic: Range::with_len(l.vmalloc_start, vmalloc_len).ok_or(EINVAL)?,
    };

    let nchunks = usize::try_from(chunks).map_err(|_| EINVAL)?;
    let mut pte_tables = KVVec::with_capacity(nchunks, GFP_KERNEL)?;
    for _ in 0..nchunks {
        pte_tables.push(0, GFP_KERNEL)?;
    }
    let words = usize::try_from(l.direct_map_pages.div_ceil(64)).map_err(|_| EINVAL)?;
    let mut sensitive = KVVec::with_capacity(words, GFP_KERNEL)?;
    for _ in 0..words {
        sensitive.push(Atomic::new(0), GFP_KERNEL)?;
    }

    let mut mem = DirectMapTables::new();
    // SAFETY: `l.kernel_pgd` is `init_mm`'s PGD, the top of the kernel's own tree: a tree of
    // `mem` in the format `paging` describes, which is the kernel's (its level count,
    // `PTE_PFN_MASK` and `_KERNPG_TABLE`). `asi_setup()` runs while only the boot CPU does, and
    // nothing frees a kernel page table meanwhile.
    let built = unsafe {
        pgtable::build(
            &mut mem,
            paging,
            l.kernel_pgd,
            layout,
            |_| true,
            |chunk, table| {
                if let Some(slot) = pte_tables.get_mut(chunk) {
                    *slot = table;
                }
            },
        )
    };
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            if let pgtable::BuildError::NoMemory(partial) = e {
                if partial.pgd != 0 {
                    // SAFETY: `build()` returned a tree of `mem` in `paging` that links each
                    // of its tables once, and the kernel's tree is one; only this CPU runs, so
                    // neither changes but for what `free_table()` frees. `free_built()` passes
                    // each table that `build()` allocated to `free_table()`, once, after its
                    // last read of it, and none of them was ever published.
                    unsafe {
                        pgtable::free_built(&mem, paging, partial.pgd, l.kernel_pgd, &mut |t| {
                            sys::free_table(t)
                        })
                    };
                }
                return Err(ENOMEM);
            }
            if e == pgtable::BuildError::Shared {
                pr_err!("the direct map shares a top-level page-table entry with vmalloc\n");
            }
            return Err(EINVAL);
        }
    };
    if pte_tables.contains(&0) {
        // A chunk without its PTE table: a bug in the builder.
        kernel::warn_on!(true);
        // SAFETY: As above.
        unsafe {
            pgtable::free_built(&mem, paging, built.pgd, l.kernel_pgd, &mut |t| {
                sys::free_table(t)
            })
        };
        return Err(EINVAL);
    }
    // INVARIANT: `build()` made `built.pgd` the top of a tree of `mem` in `paging`, of tables it
    // allocated, which are never freed from here on, and, below the entries it copied, the
    // kernel's. `pte_tables` holds the PTE table of every chunk (none is 0), and `sensitive` a
    // bit for each page.
    let tables = Tables {
        mem,
        paging,
        page_offset: l.page_offset,
        pgd: built.pgd,
        pages: l.direct_map_pages,
        pte_tables,
        sensitive,
        table_pages: built.tables as u64,
    };
    if !TABLES.populate(tables) {
        return Err(EBUSY);
    }
    // Pages allocated or freed while the tables were built changed the kernel's direct map
    // (with DEBUG_PAGEALLOC) after the builder copied it; from now on the hooks see every
    // change, so one more pass over the direct map catches up.
    mirror(l.page_offset, l.direct_map_pages);
    pr_info!(
        "nonsensitive tables ({}-level): {} table pages ({} KiB), {} direct-map pages, {} shared entries\n",
        l.levels,
        built.tables,
        built.tables.saturating_mul(4),
        built.mapped,
        built.shared
    );
    Ok(())
}

impl Tables {
    /// Physical address of the top-level table, a table of [`Tables::mem`] that is never freed.
    pub(crate) fn pgd(&self) -> u64 {
        self.pgd
    }

    /// Access to page-table pages.
    pub(crate) fn mem(&self) -> &DirectMapTables {
        &self.mem
    }

    /// The paging mode.
    pub(crate) fn paging(&self) -> Paging {
        self.paging
    }

    /// The word of the bitmap holding `pfn`'s bit, and the bit.
    fn bit(&self, pfn: u64) -> Option<(&Atomic<u64>, u64)> {
        if pfn >= self.pages {
            return None;
        }
        let word = self.sensitive.get(usize::try_from(pfn / 64).ok()?)?;
        Some((word, 1u64 << (pfn % 64)))
    }

    /// Whether `pfn` is sensitive.
    pub(crate) fn is_sensitive(&self, pfn: u64) -> bool {
        self.bit(pfn).is_some_and(|(w, b)| w.load(Relaxed) & b != 0)
    }

    /// Sets or clears `pfn`'s bit; returns whether it changed.
    fn set_sensitive(&self, pfn: u64, on: bool) -> bool {
        let Some((word, bit)) = self.bit(pfn) else {
            return false;
        };
        let mut old = word.load(Relaxed);
        loop {
            let new = if on { old | bit } else { old & !bit };
            if new == old {
                return false;
            }
            match word.cmpxchg(old, new, Full) {
                Ok(_) => return true,
                Err(cur) => old = cur,
            }
        }
    }

    /// Replaces `pfn`'s entry in ASI's direct map by [`SENSITIVE_ENTRY`]. The caller set its
    /// bit first, and flushes the TLBs after.
    fn clear_entry(&self, pfn: u64) {
        if let Some((table, index)) = self.pte_slot(pfn) {
            // SAFETY: By the type invariant, `pte_slot()` gives one of ASI's PTE tables, a
            // table of `self.mem`; `SENSITIVE_ENTRY` is not present.
            unsafe { self.mem.xchg_owned(table, index, SENSITIVE_ENTRY) };
        }
    }

    /// Replaces `pfn`'s entry in ASI's direct map by the kernel's, if it is still `old`: the
    /// step of [`mirror`] that must fail once the page became sensitive. Returns the entry
    /// found, `Err(current)` if it was not `old`; `Err(0)` if `pfn` has no entry.
    fn follow_kernel(&self, pfn: u64, old: u64) -> core::result::Result<u64, u64> {
        let (table, index) = self.pte_slot(pfn).ok_or(0u64)?;
        // SAFETY: By the type invariant, `pte_slot()` gives one of ASI's PTE tables, a table of
        // `self.mem`. `kernel_entry()` is 0 or the kernel's own mapping of the page's
        // direct-map address, as a 4 KiB leaf of the same frame.
        unsafe {
            self.mem
                .cmpxchg_owned(table, index, old, self.kernel_entry(pfn))
        }
    }

    /// Whether any page of `[first, first + nr)` is sensitive.
    fn any_sensitive(&self, first: u64, nr: u64) -> bool {
        (first..first.saturating_add(nr)).any(|pfn| self.is_sensitive(pfn))
    }

    /// The PTE table and index of `pfn`'s entry in ASI's direct map.
    fn pte_slot(&self, pfn: u64) -> Option<(u64, usize)> {
        if pfn >= self.pages {
            return None;
        }
        let chunk = usize::try_from(pfn >> 9).ok()?;
        let table = *self.pte_tables.get(chunk)?;
        Some((table, (pfn & 0x1ff) as usize))
    }

    /// The direct-map address of `pfn`.
    fn va(&self, pfn: u64) -> u64 {
        self.page_offset.wrapping_add(pfn << 12)
    }

    /// The entry ASI's direct map should have for the nonsensitive page `pfn`: the kernel's
    /// mapping of it, as a non-global 4 KiB entry; 0 if the kernel does not map it.
    fn kernel_entry(&self, pfn: u64) -> u64 {
        let va = self.va(pfn);
        match sys::kernel_leaf(va) {
            Some((level, e)) => self.paging.split_to_4k(level, e, va),
            None => 0,
        }
    }

    /// Looks `va` up in the nonsensitive tables.
    pub(crate) fn translate(&self, va: u64) -> Option<kernel::mm::pgtable::Leaf> {
        // SAFETY: By the type invariant, `self.pgd` is the top of a tree of `self.mem` in
        // `self.paging` whose tables are never freed.
        unsafe { kernel::mm::pgtable::translate(&self.mem, self.paging, self.pgd, va) }
    }

    /// Whether `pfn` is sensitive and mapped in ASI's direct map for longer than a flip to
    /// sensitive takes: [`make_sensitive`] and [`hotplug_make_sensitive`] set a page's bit
    /// before they replace its entry, inside [`FLIPS_UNDER_WAY`]. The state must still hold
    /// after a moment when no flip was under way: one that was when it was seen has replaced
    /// the entry by then, and a page already sensitive is not flipped again until it has been
    /// nonsensitive. Gives up waiting for such a moment after about 100 ms, and then counts
    /// the page as mapped. Sleeps.
    fn mapped_while_sensitive(&self, pfn: u64) -> bool {
        let stuck = || {
            self.is_sensitive(pfn)
                && self.pte_slot(pfn).is_some_and(|(table, index)| {
                    // SAFETY: By the type invariant, `pte_slot()` gives one of ASI's PTE
                    // tables, a table of `self.mem` that is never freed.
                    (unsafe { self.mem.read(table, index) }) & bits::PRESENT != 0
                })
        };
        for _ in 0..100 {
            if !stuck() {
                return false;
            }
            if FLIPS_UNDER_WAY.load(Acquire) == 0 {
                return stuck();
            }
            fsleep(Delta::from_millis(1));
        }
        true
    }

    /// Whether ASI's entry for `pfn` grants more than the kernel's, and still does after two
    /// milliseconds: CPA changes the kernel's entry first and then ASI's (DEBUG_PAGEALLOC does
    /// so at every allocation and free), so for a moment ASI's may grant more. Sleeps.
    fn grants_more_than_kernel(&self, pfn: u64) -> bool {
        let more = || {
            self.pte_slot(pfn).is_some_and(|(table, index)| {
                // SAFETY: By the type invariant, `pte_slot()` gives one of ASI's PTE tables, a
                // table of `self.mem` that is never freed.
                let ours = unsafe { self.mem.read(table, index) };
                ours & bits::PRESENT != 0 && !self.paging.covers(self.kernel_entry(pfn), ours)
            })
        };
        for _ in 0..2 {
            if !more() {
                return false;
            }
            fsleep(Delta::from_millis(1));
        }
        more()
    }

    /// Walks the global tables and checks them, see [`verify`].
    fn verify_into(&self, r: &mut Report) {
        let t0 = sys::ktime_ns();
        let mut found: KVec<Problem> = KVec::new();
        let mut overflow = 0u64;
        let mut note = |p: Problem, found: &mut KVec<Problem>| {
            if found.push(p, GFP_KERNEL).is_err() {
                overflow = overflow.saturating_add(1);
            }
        };
        let pages = self.pages;
        let dm_end = self.va(pages);
        // Direct-map pages whose entries may belong to a flip or a CPA change under way,
        // checked again after the walk.
        let mut suspects: KVec<u64> = KVec::new();
        let mut extra_suspects: KVec<(u64, u64)> = KVec::new();
        let mut leaf = |l: kernel::mm::pgtable::Leaf| {
            let first = l.frame >> 12;
            let n = l.level.span() >> 12;
            let last = first.saturating_add(n).min(pages);
            // ASI's direct map may only ever grant what the kernel's does.
            if l.level == Level::PTE && l.va >= self.page_offset && l.va < dm_end {
                let pfn = (l.va - self.page_offset) >> 12;
                if !self.paging.covers(self.kernel_entry(pfn), l.entry)
                    && extra_suspects
                        .push((pfn, l.frame >> 12), GFP_KERNEL)
                        .is_err()
                {
                    note(
                        Problem {
                            kind: ProblemKind::ExtraMapping,
                            va: l.va,
                            pfn: Some(l.frame >> 12),
                        },
                        &mut found,
                    );
                }
            }
            for pfn in first..last {
                if self.is_sensitive(pfn) {
                    let va = l.va.wrapping_add((pfn - first) << 12);
                    // An entry of ASI's direct map may belong to a flip under way: checked
                    // again after the walk. Anything else is a leak.
                    let in_direct_map =
                        l.level == Level::PTE && l.va >= self.page_offset && l.va < dm_end;
                    if !in_direct_map || suspects.push(pfn, GFP_KERNEL).is_err() {
                        note(
                            Problem {
                                kind: ProblemKind::SensitiveMapped,
                                va,
                                pfn: Some(pfn),
                            },
                            &mut found,
                        );
                    }
                }
            }
        };
        let mut tables: KVec<u64> = KVec::new();
        let mut table = |pa: u64| {
            let _ = tables.push(pa, GFP_KERNEL);
        };
        // SAFETY: By the type invariant, `self.pgd` is the top of a tree of `self.mem` in
        // `self.paging` whose tables are never freed.
        let ws = unsafe {
            kernel::mm::pgtable::walk(
                &self.mem,
                self.paging,
                self.pgd,
                self.paging.kernel_half(),
                &mut leaf,
                &mut table,
            )
        };
        r.ns_pgds += 1;
        r.entries += ws.entries;
        r.leaves += ws.leaves;
        r.tables += ws.tables;
        for &(pfn, frame) in extra_suspects.iter() {
            if self.grants_more_than_kernel(pfn) {
                note(
                    Problem {
                        kind: ProblemKind::ExtraMapping,
                        va: self.va(pfn),
                        pfn: Some(frame),
                    },
                    &mut found,
                );
            }
        }
        for &pfn in suspects.iter() {
            if self.mapped_while_sensitive(pfn) {
                note(
                    Problem {
                        kind: ProblemKind::SensitiveMapped,
                        va: self.va(pfn),
                        pfn: Some(pfn),
                    },
                    &mut found,
                );
            }
        }
        for &pa in tables.iter() {
            let va = self.page_offset.wrapping_add(pa);
            if self.translate(va).is_none() {
                note(
                    Problem {
                        kind: ProblemKind::Unmapped("page-table"),
                        va,
                        pfn: Some(pa >> 12),
                    },
                    &mut found,
                );
            }
        }
        // The kernel's own direct map must have no global entry, or a TLB entry made on the
        // full tables would outlive the switch to the nonsensitive ones (review m3).
        for_each_global_direct_map_leaf(self.page_offset, pages, |va, pfn| {
            note(
                Problem {
                    kind: ProblemKind::GlobalDirectMap,
                    va,
                    pfn: Some(pfn),
                },
                &mut found,
            )
        });
        let mut required_pages = 0u64;
        sys::for_each_required(&mut |what, va, len| {
            let first = va & !0xfff;
            let end = va.saturating_add(len);
            let mut page = first;
            while page < end {
                // What the kernel itself does not map (freed parts of the kernel image) is
                // not required.
                let kernel = sys::kernel_leaf(page);
                if kernel.is_some() {
                    required_pages += 1;
                }
                if let (Some((lv, e)), None) = (kernel, self.translate(page)) {
                    let pfn =
                        Some((self.paging.leaf_frame(lv, e) | (page & (lv.span() - 1))) >> 12);
                    // Runs under RCU: the list may only grow with GFP_ATOMIC.
                    if found
                        .push(
                            Problem {
                                kind: ProblemKind::Unmapped(what.to_str().unwrap_or("?")),
                                va: page,
                                pfn,
                            },
                            GFP_ATOMIC,
                        )
                        .is_err()
                    {
                        overflow = overflow.saturating_add(1);
                    }
                }
                page = page.saturating_add(4096);
            }
        });
        r.required_pages += required_pages;
        let half = self.paging.kernel_half();
        let mut ns_pgds = 0u64;
        sys::visit_ns_pgds(&mut |mm_pgd, ns_pgd| {
            ns_pgds += 1;
            let mut add = |kind, index: usize| {
                let va = self.paging.top_entry_va(index);
                if found
                    .push(
                        Problem {
                            kind,
                            va,
                            pfn: Some(mm_pgd >> 12),
                        },
                        GFP_ATOMIC,
                    )
                    .is_err()
                {
                    overflow = overflow.saturating_add(1);
                }
            };
            if ns_pgd == 0 {
                add(ProblemKind::NsPgdMissing, 0);
                return;
            }
            for i in 0..pgtable::ENTRIES {
                let want = if half.contains(&i) {
                    // SAFETY: By the type invariant, `self.pgd` is a table of `self.mem`.
                    unsafe { self.mem.read(self.pgd, i) }
                } else {
                    // SAFETY: `visit_ns_pgds()` passes the PGD of an mm that it keeps alive for
                    // the call: a table of `self.mem`.
                    unsafe { self.mem.read(mm_pgd, i) }
                };
                // SAFETY: `ns_pgd` is not 0: it is that mm's nonsensitive top-level table,
                // which lives as long as the mm, from `alloc_ns_pgd()` to `destroy_mm()`.
                if unsafe { self.mem.read(ns_pgd, i) } != want {
                    add(ProblemKind::NsPgdOutOfSync, i);
                }
            }
        });
        r.ns_pgds += ns_pgds;
        for p in found.iter() {
            r.add(*p);
        }
        // Problems that did not fit in memory are still counted, as sensitive mappings.
        r.sensitive_mapped = r.sensitive_mapped.saturating_add(overflow);
        r.elapsed_ns = r
            .elapsed_ns
            .saturating_add(sys::ktime_ns().saturating_sub(t0));
    }
}

/// Free pages made sensitive together with a page that needs a flush, so that the next user
/// allocations find pages that need none.
const FLIP_BATCH: usize = 31;

/// Makes `[pfn, pfn + nr)` sensitive: absent from the nonsensitive direct map and from every
/// TLB. Returns false, and changes nothing, if that needs a TLB flush and `can_flush` is false.
///
/// The flush also covers up to [`FLIP_BATCH`] free pages of the same mobility (`movable`),
/// taken off the free lists, made sensitive and given back after the flush.
pub(crate) fn make_sensitive(pfn: u64, nr: u64, can_flush: bool, movable: bool) -> bool {
    let Some(t) = get() else {
        return true;
    };
    let end = pfn.saturating_add(nr).min(t.pages);
    let needed = (pfn..end).filter(|&p| !t.is_sensitive(p)).count() as u64;
    if needed == 0 {
        USER_PAGES.add(nr, Relaxed);
        return true;
    }
    if !can_flush {
        REFUSED.add(1, Relaxed);
        return false;
    }
    FLIPS_UNDER_WAY.fetch_add(1, Full);
    for p in pfn..end {
        if t.set_sensitive(p, true) {
            t.clear_entry(p);
        }
    }
    let mut batch = [0usize; FLIP_BATCH];
    let got = sys::batch_alloc(&mut batch, movable);
    let batch = batch.get(..got).unwrap_or(&[]);
    let mut extra = 0u64;
    for &p in batch {
        let p = p as u64;
        if t.set_sensitive(p, true) {
            t.clear_entry(p);
            extra += 1;
        }
    }
    FLIPS_UNDER_WAY.fetch_sub(1, Full);
    // A page freed by vfree() or after vunmap() may still have a global TLB entry at its
    // vmalloc address on any CPU: the vmalloc area clears its PTEs at once but flushes the TLB
    // lazily, when it purges. That entry is valid in the nonsensitive address space too, so a
    // ranged flush of the direct map is not enough; flush everything, global entries included,
    // on every CPU. It costs the same IPIs as a ranged flush.
    sys::flush_kernel_all();
    // SAFETY: `batch` holds the pages `batch_alloc()` returned above, which only this function
    // has used since; each is freed once, here.
    unsafe { sys::batch_free(batch) };
    USER_PAGES.add(nr, Relaxed);
    let flipped = needed.saturating_add(extra);
    SENSITIVE_PAGES.add(flipped, Relaxed);
    FLIPS_TO_SENSITIVE.add(flipped, Relaxed);
    TLB_FLUSHES.add(1, Relaxed);
    true
}

/// Makes the sensitive pages of `[pfn, pfn + nr)` nonsensitive: zeroes each, then maps it.
///
/// # Safety
///
/// The caller is allocating the pages `[pfn, pfn + nr)`, which the kernel's direct map maps:
/// nothing else uses them.
pub(crate) unsafe fn make_nonsensitive(pfn: u64, nr: u64) {
    let Some(t) = get() else {
        return;
    };
    let end = pfn.saturating_add(nr).min(t.pages);
    if !t.any_sensitive(pfn, end.saturating_sub(pfn)) {
        return;
    }
    let mut flipped = 0u64;
    for p in pfn..end {
        if !t.is_sensitive(p) {
            continue;
        }
        // SAFETY: The caller guarantees that it owns the page, and that it is mapped.
        unsafe { sys::clear_page(p) };
        t.set_sensitive(p, false);
        if let Some((table, index)) = t.pte_slot(p) {
            // SAFETY: By the type invariant of `Tables`, `pte_slot()` gives one of ASI's PTE
            // tables, a table of `t.mem`. `kernel_entry()` is 0 or the kernel's own mapping of
            // the page's direct-map address, as a 4 KiB leaf of the same frame.
            unsafe { t.mem.write_owned(table, index, t.kernel_entry(p)) };
        }
        flipped += 1;
    }
    SENSITIVE_PAGES.fetch_sub(flipped, Relaxed);
    FLIPS_TO_NONSENSITIVE.add(flipped, Relaxed);
    ZEROED.add(flipped, Relaxed);
}

/// Makes every page of `[pfn, pfn + nr)` sensitive, as memory hotplug brings it online or
/// took it offline: whatever it held, nothing of it stays in ASI's direct map or in a TLB, and
/// each page gets its entry back, zeroed, when it is first allocated for anything but user
/// data. Returns false, and changes nothing, if the range is not all in ASI's direct map
/// (memory added beyond the boot-time direct map, which ASI has no tables for).
///
/// Nothing allocates the pages meanwhile: memory hotplug holds them offline. The caller runs in
/// task context, where the TLB flush can be sent.
pub(crate) fn hotplug_make_sensitive(pfn: u64, nr: u64) -> bool {
    let Some(t) = get() else {
        return true;
    };
    match pfn.checked_add(nr) {
        Some(end) if end <= t.pages => {
            let mut flipped = 0u64;
            FLIPS_UNDER_WAY.fetch_add(1, Full);
            for p in pfn..end {
                if t.set_sensitive(p, true) {
                    flipped += 1;
                }
                t.clear_entry(p);
            }
            FLIPS_UNDER_WAY.fetch_sub(1, Full);
            sys::flush_kernel_all();
            SENSITIVE_PAGES.add(flipped, Relaxed);
            FLIPS_TO_SENSITIVE.add(flipped, Relaxed);
            TLB_FLUSHES.add(1, Relaxed);
            true
        }
        _ => false,
    }
}

/// The kernel changed its mapping of `[va, va + nr pages)`: make ASI's direct map follow it
/// for the nonsensitive pages of the range.
pub(crate) fn mirror(va: u64, nr: u64) {
    let Some(t) = get() else {
        return;
    };
    let Some(offset) = va.checked_sub(t.page_offset) else {
        return;
    };
    let first = offset >> 12;
    let end = first.saturating_add(nr).min(t.pages);
    for p in first..end {
        let Some((table, index)) = t.pte_slot(p) else {
            continue;
        };
        // SAFETY: By the type invariant of `Tables`, `pte_slot()` gives one of ASI's PTE
        // tables, a table of `t.mem` that is never freed.
        let mut old = unsafe { t.mem.read(table, index) };
        // `make_sensitive()` sets the bit before it writes `SENSITIVE_ENTRY`: test both, so
        // that a page becoming sensitive is left alone where that is already seen. Where it is
        // not, the `cmpxchg()` either fails, or precedes the write of `SENSITIVE_ENTRY` that
        // replaces its entry before the flush.
        while old != SENSITIVE_ENTRY && !t.is_sensitive(p) {
            match t.follow_kernel(p, old) {
                Ok(_) => break,
                Err(cur) => old = cur,
            }
        }
    }
}

/// The current counters.
pub(crate) fn stats() -> Stats {
    let t = get();
    Stats {
        tables: t.is_some(),
        sensitive_pages: SENSITIVE_PAGES.load(Relaxed),
        user_pages_allocated: USER_PAGES.load(Relaxed),
        flips_to_sensitive: FLIPS_TO_SENSITIVE.load(Relaxed),
        flips_to_nonsensitive: FLIPS_TO_NONSENSITIVE.load(Relaxed),
        tlb_flushes: TLB_FLUSHES.load(Relaxed),
        zeroed_pages: ZEROED.load(Relaxed),
        refused: REFUSED.load(Relaxed),
        global_table_pages: t.map_or(0, |t| t.table_pages),
        ns_pgds: crate::ns_pgd::counters().0,
        ns_pgds_created: crate::ns_pgd::counters().1,
        ns_pgd_failures: crate::ns_pgd::counters().2,
    }
}

/// Calls `f` with the address and the pfn of each global leaf of the kernel's direct map of
/// `pages` pages at `page_offset`. Looked up like the kernel does, locklessly, a leaf at a time.
fn for_each_global_direct_map_leaf(page_offset: u64, pages: u64, mut f: impl FnMut(u64, u64)) {
    let mut pfn = 0u64;
    while pfn < pages {
        let va = page_offset.wrapping_add(pfn << 12);
        let mut next = pfn.saturating_add(1);
        if let Some((level, e)) = sys::kernel_leaf(va) {
            if e & bits::GLOBAL != 0 {
                f(va, pfn);
            }
            let span = level.span() >> 12;
            next = next.max((pfn & !(span - 1)).saturating_add(span));
        }
        pfn = next;
    }
}

/// The number of global leaves of the kernel's direct map, whether or not ASI's tables exist.
pub(crate) fn global_direct_map_leaves() -> u64 {
    let l = sys::layout();
    let mut n = 0u64;
    for_each_global_direct_map_leaf(l.page_offset, l.direct_map_pages, |_, _| {
        n = n.saturating_add(1)
    });
    n
}

/// Walks the nonsensitive tables and reports mappings of sensitive pages and required kernel
/// memory that is not mapped. Sleeps; process context only.
pub(crate) fn verify() -> Report {
    let mut r = Report::default();
    if let Some(t) = get() {
        t.verify_into(&mut r);
    }
    r
}

/// Whether the entry of ASI's direct map for `pfn` is present.
pub(crate) fn direct_map_present(pfn: u64) -> Option<bool> {
    let t = get()?;
    let (table, index) = t.pte_slot(pfn)?;
    // SAFETY: By the type invariant of `Tables`, `pte_slot()` gives one of ASI's PTE tables,
    // a table of `t.mem` that is never freed.
    Some(unsafe { t.mem.read(table, index) } & bits::PRESENT != 0)
}

/// Overwrites the entry of ASI's direct map for `pfn`, to plant a problem for the verifier.
///
/// # Safety
///
/// `value` is not present, or is a 4 KiB leaf that maps `pfn`'s frame.
#[cfg(CONFIG_ASI_KUNIT_TEST)]
pub(crate) unsafe fn test_set_direct_map_entry(pfn: u64, value: u64) -> Option<u64> {
    let t = get()?;
    let (table, index) = t.pte_slot(pfn)?;
    // SAFETY: By the type invariant of `Tables`, `pte_slot()` gives one of ASI's PTE tables,
    // a table of `t.mem` that is never freed.
    let old = unsafe { t.mem.read(table, index) };
    // SAFETY: As above; the entry of `pfn` maps `pfn`'s direct-map address, whose frame is
    // `pfn` in the kernel's tables too, and the caller guarantees that `value` maps only it.
    unsafe { t.mem.write_owned(table, index, value) };
    Some(old)
}

/// Runs the step of [`mirror`] that replaces `pfn`'s entry, as if [`mirror`] had read the
/// entry of the page while it was nonsensitive (the kernel's) and found its bit clear, and the
/// page had become sensitive since. Returns what the step found; `None` before the tables
/// exist.
#[cfg(CONFIG_ASI_KUNIT_TEST)]
pub(crate) fn test_follow_kernel(pfn: u64) -> Option<core::result::Result<u64, u64>> {
    let t = get()?;
    Some(t.follow_kernel(pfn, t.kernel_entry(pfn)))
}

/// The entry of `pfn` in ASI's direct map; `None` if it has none.
#[cfg(CONFIG_ASI_KUNIT_TEST)]
pub(crate) fn test_direct_map_entry(pfn: u64) -> Option<u64> {
    let t = get()?;
    let (table, index) = t.pte_slot(pfn)?;
    // SAFETY: By the type invariant of `Tables`, `pte_slot()` gives one of ASI's PTE tables,
    // a table of `t.mem` that is never freed.
    Some(unsafe { t.mem.read(table, index) })
}

/// How many of the `nr` pages from `pfn` are sensitive; 0 before the tables exist. Pages beyond
/// ASI's direct map are not.
pub(crate) fn count_sensitive(pfn: u64, nr: u64) -> u64 {
    let Some(t) = get() else {
        return 0;
    };
    let end = pfn.saturating_add(nr).min(t.pages);
    (pfn..end).filter(|&p| t.is_sensitive(p)).count() as u64
}

/// Whether `pfn` is sensitive, `None` before the tables exist.
pub(crate) fn is_sensitive(pfn: u64) -> Option<bool> {
    get().map(|t| t.is_sensitive(pfn))
}
