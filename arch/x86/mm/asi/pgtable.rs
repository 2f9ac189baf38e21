// SPDX-License-Identifier: GPL-2.0

//! x86-64 page tables as ASI builds them.
//!
//! This file only uses `core` and [`kernel::mm::pgtable`] (which only uses `core` too): it is
//! built into the kernel and, unchanged, into the host test crate. Page-table memory is reached
//! through [`TableMemory`], which the kernel implements with its direct map and the host tests
//! with an array, so the algorithms below run the same on both.
//!
//! The nonsensitive tables share everything with the kernel's own tables except the direct
//! map: a top-level entry that does not reach into the direct map is copied, so the subtree
//! below it is the kernel's and never needs syncing. Where a table covers the direct map, ASI
//! has its own table, down to 4 KiB entries for the direct map itself, and copies the entries
//! of that table that lie outside the direct map.

pub(crate) use kernel::mm::pgtable::{Format, Level, Range, TableMemory, ENTRIES};

/// Size of a base page.
pub(crate) const PAGE_SIZE: u64 = 1 << 12;

/// Bits of a page-table entry.
pub(crate) mod bits {
    /// The entry is present.
    pub(crate) const PRESENT: u64 = 1 << 0;
    /// A leaf above the 4 KiB level (PMD and PUD entries).
    pub(crate) const PSE: u64 = 1 << 7;
    /// PAT bit of a 4 KiB entry: the same position as `PSE` one level up.
    pub(crate) const PAT_4K: u64 = 1 << 7;
    /// Global: survives CR3 writes.
    pub(crate) const GLOBAL: u64 = 1 << 8;
    /// PAT bit of a 2 MiB or 1 GiB entry.
    pub(crate) const PAT_LARGE: u64 = 1 << 12;
    /// Writable.
    pub(crate) const RW: u64 = 1 << 1;
    /// Accessible from user mode.
    pub(crate) const USER: u64 = 1 << 2;
    /// Not executable.
    pub(crate) const NX: u64 = 1 << 63;
}

/// Bits of the page-fault error code (`X86_PF_*` in `arch/x86/include/asm/trap_pf.h`).
pub(crate) mod pf {
    /// A write.
    pub(crate) const WRITE: u64 = 1 << 1;
    /// From user mode.
    pub(crate) const USER: u64 = 1 << 2;
    /// A reserved bit was set in an entry.
    pub(crate) const RSVD: u64 = 1 << 3;
    /// An instruction fetch.
    pub(crate) const INSTR: u64 = 1 << 4;
    /// A protection-key violation.
    pub(crate) const PK: u64 = 1 << 5;
    /// A shadow-stack access.
    pub(crate) const SHSTK: u64 = 1 << 6;
    /// An SGX (EPCM) violation.
    pub(crate) const SGX: u64 = 1 << 15;
}

/// Whether the kernel's leaf entry `leaf` for an address grants the access of a kernel-mode page
/// fault with `error_code` on the nonsensitive tables. If it does, the fault was ASI's alone:
/// retried on the kernel's tables the access succeeds. Anything else (not present there either,
/// a write to a read-only page, a fetch from a non-executable one, reserved bits, protection
/// keys, shadow stacks, SGX, a user-mode access) is a fault the kernel must handle as if ASI did
/// not exist. The upper levels of the kernel's tables are never more restrictive than its leaves
/// (they are `_KERNPG_TABLE`), so the leaf decides.
pub(crate) fn fault_granted(leaf: u64, error_code: u64) -> bool {
    if leaf & bits::PRESENT == 0 {
        return false;
    }
    if error_code & (pf::USER | pf::RSVD | pf::PK | pf::SHSTK | pf::SGX) != 0 {
        return false;
    }
    if error_code & pf::WRITE != 0 && leaf & bits::RW == 0 {
        return false;
    }
    !(error_code & pf::INSTR != 0 && leaf & bits::NX != 0)
}

/// The paging mode and the entry format of the running kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Paging {
    /// 4 or 5.
    levels: u32,
    /// Bits of an entry that hold the physical address (`PTE_PFN_MASK`).
    addr_mask: u64,
    /// Flags of an entry that points to a kernel table (`_KERNPG_TABLE`).
    table_flags: u64,
}

/// Why a [`Paging`] could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PagingError {
    /// Neither 4- nor 5-level paging.
    Levels,
    /// The address mask overlaps the low flags or is empty.
    AddrMask,
}

impl Paging {
    /// Describes `levels`-level paging with the given entry format.
    pub(crate) fn new(levels: u32, addr_mask: u64, table_flags: u64) -> Result<Self, PagingError> {
        if levels != 4 && levels != 5 {
            return Err(PagingError::Levels);
        }
        if addr_mask == 0 || addr_mask & (PAGE_SIZE - 1) != 0 {
            return Err(PagingError::AddrMask);
        }
        Ok(Paging {
            levels,
            addr_mask,
            table_flags,
        })
    }

    /// The first top-level index of the kernel half of the address space.
    pub(crate) fn kernel_half(&self) -> core::ops::Range<usize> {
        ENTRIES / 2..ENTRIES
    }

    /// The address of the first byte that top-level entry `index` covers.
    pub(crate) fn top_entry_va(&self, index: usize) -> u64 {
        // `index` < 512: the product fits.
        self.canonical((index as u64) << self.top().shift())
    }

    /// The physical address of the table `entry` of `level` points to, if it points to one.
    pub(crate) fn next_table(&self, level: Level, entry: u64) -> Option<u64> {
        kernel::mm::pgtable::next_table(*self, level, entry)
    }

    /// The physical address of the first byte the leaf `entry` of `level` maps.
    pub(crate) fn leaf_frame(&self, level: Level, entry: u64) -> u64 {
        entry & self.addr_mask & !(level.span() - 1)
    }

    /// An entry that points to the kernel table at physical address `table`.
    pub(crate) fn table_entry(&self, table: u64) -> u64 {
        (table & self.addr_mask) | self.table_flags
    }

    /// Whether the 4 KiB entry `ours` grants nothing that the kernel's 4 KiB entry `kernel`
    /// for the same address does not: same frame and user bit, writable and executable only
    /// if the kernel's is. A non-present `ours` is always covered.
    pub(crate) fn covers(&self, kernel: u64, ours: u64) -> bool {
        if ours & bits::PRESENT == 0 {
            return true;
        }
        kernel & bits::PRESENT != 0
            && kernel & self.addr_mask == ours & self.addr_mask
            && (kernel ^ ours) & bits::USER == 0
            && (ours & bits::RW == 0 || kernel & bits::RW != 0)
            && (ours & bits::NX != 0 || kernel & bits::NX == 0)
    }

    /// The 4 KiB entry that maps the page at `va` the way the present leaf `entry` of `level`
    /// does, without the global bit: ASI's direct map must not outlive a CR3 switch in the TLB.
    pub(crate) fn split_to_4k(&self, level: Level, entry: u64, va: u64) -> u64 {
        let offset = va & (level.span() - 1) & !(PAGE_SIZE - 1);
        let frame = self.leaf_frame(level, entry) | offset;
        let mut flags = entry & !self.addr_mask;
        if level != Level::PTE {
            // PAT moves from bit 12 to bit 7, where large entries have PSE.
            let pat = entry & bits::PAT_LARGE != 0;
            flags &= !(bits::PSE | bits::PAT_LARGE);
            if pat {
                flags |= bits::PAT_4K;
            }
        }
        (frame | flags) & !bits::GLOBAL
    }
}

/// The x86-64 entry format.
impl Format for Paging {
    fn top(&self) -> Level {
        // `levels` is 4 or 5, see `Paging::new()`.
        Level::new(self.levels - 1).unwrap_or(Level::PUD)
    }

    fn present(&self, entry: u64) -> bool {
        entry & bits::PRESENT != 0
    }

    fn is_leaf(&self, level: Level, entry: u64) -> bool {
        level == Level::PTE || (level <= Level::PUD && entry & bits::PSE != 0)
    }

    fn address(&self, level: Level, entry: u64) -> u64 {
        if self.is_leaf(level, entry) {
            self.leaf_frame(level, entry)
        } else {
            entry & self.addr_mask
        }
    }

    /// Bit 47 (56 with 5 levels) copied into the bits above it.
    fn canonical(&self, va: u64) -> u64 {
        let unused = 64 - (self.top().shift() + 9);
        // Arithmetic shift right sign-extends; `unused` is 7 or 16.
        (((va << unused) as i64) >> unused) as u64
    }
}

impl Paging {
    /// The entry of `level` that maps the part at `va` of the present leaf `entry` of the
    /// higher level `from` the way that leaf does.
    pub(crate) fn sub_leaf(&self, from: Level, entry: u64, level: Level, va: u64) -> u64 {
        if level == Level::PTE {
            return self.split_to_4k(from, entry, va);
        }
        let offset = va & (from.span() - 1) & !(level.span() - 1);
        let flags = entry & (!self.addr_mask | bits::PAT_LARGE);
        self.leaf_frame(from, entry) | offset | flags
    }
}

/// What to build: where the direct map is and which kernel regions get new tables at run time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// The direct map, rounded up to whole 2 MiB, so each PTE table is direct map throughout.
    pub(crate) direct_map: Range,
    /// A region whose tables the kernel populates on demand (vmalloc). It must not share a
    /// top-level entry with the direct map (see [`BuildError::Shared`]).
    pub(crate) dynamic: Range,
}

/// The result of [`build`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Built {
    /// Physical address of the new top-level table.
    pub(crate) pgd: u64,
    /// Tables allocated, the top-level one included.
    pub(crate) tables: usize,
    /// Entries copied from the kernel's tables (shared subtrees and leaves).
    pub(crate) shared: usize,
    /// Direct-map pages mapped.
    pub(crate) mapped: usize,
}

/// Why [`build`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BuildError {
    /// A table could not be allocated. The tables allocated so far are in the tree reachable
    /// from [`Built::pgd`], for the caller to free.
    NoMemory(Built),
    /// The layout does not fit the paging mode.
    Layout,
    /// The dynamic region shares a top-level entry with the direct map. Below the top level
    /// the direct map's tables are ASI's own, and their copies of the kernel's other entries
    /// would not follow the kernel's later changes: entries it fills (M2), or tables it
    /// frees, as a huge vmap frees the PMD table it replaces (M3).
    Shared,
}

/// The builder's state while it descends.
struct Builder<'a, M, K, T> {
    mem: &'a mut M,
    paging: Paging,
    layout: Layout,
    keep: K,
    pte_table: T,
    built: Built,
}

/// Builds nonsensitive kernel tables from the kernel's tables at `kernel_pgd`.
///
/// The user half stays empty. In the kernel half, every entry that does not reach into the
/// direct map is copied. The direct map gets its own tables down to 4 KiB entries, each
/// derived from the kernel's mapping of the same address, for the pages `keep` is true for;
/// the others are left not present (entry 0, no frame number kept). `pte_table` is called with
/// the 2 MiB chunk number and physical address of each direct-map PTE table.
///
/// The kernel may change its own entries of `layout.dynamic` at any time, so that region must
/// not share a top-level entry with the direct map, whose tables below the top level are ASI's
/// own; it is [`BuildError::Shared`] if it does. Every other entry of the kernel half is
/// either shared at the top level or, in ASI's own tables, a copy of an entry the kernel never
/// changes (the direct map's neighbours in its top-level entries are unused).
///
/// The result, [`Built::pgd`], also that of a [`BuildError::NoMemory`], is the top of a tree of
/// `mem` in `paging` (see [`TableMemory`]) for as long as the tree at `kernel_pgd` is one and the
/// tables `build` allocated are not freed. No CPU translates through those tables yet.
///
/// # Safety
///
/// `kernel_pgd` is the top of a tree of `mem` in `paging` at `paging.top()`, and stays one
/// while `build` runs.
pub(crate) unsafe fn build<M, K, T>(
    mem: &mut M,
    paging: Paging,
    kernel_pgd: u64,
    layout: Layout,
    keep: K,
    pte_table: T,
) -> Result<Built, BuildError>
where
    M: TableMemory,
    K: Fn(u64) -> bool,
    T: FnMut(usize, u64),
{
    let dm = layout.direct_map;
    let aligned =
        dm.first % Level::PMD.span() == 0 && dm.last.wrapping_add(1) % Level::PMD.span() == 0;
    let top = paging.top();
    let half = paging.top_entry_va(ENTRIES / 2);
    if !aligned || dm.first < half {
        return Err(BuildError::Layout);
    }
    let top_span = top.span();
    let dm_top_first = dm.first & !(top_span - 1);
    let dm_top = (dm.last | (top_span - 1))
        .checked_sub(dm_top_first)
        .and_then(|d| d.checked_add(1))
        .and_then(|len| Range::with_len(dm_top_first, len))
        .ok_or(BuildError::Layout)?;
    if dm_top.overlaps(&layout.dynamic) {
        return Err(BuildError::Shared);
    }
    let pgd = mem
        .alloc_table()
        .ok_or(BuildError::NoMemory(Built::default()))?;
    let mut b = Builder {
        mem,
        paging,
        layout,
        keep,
        pte_table,
        built: Built {
            pgd,
            tables: 1,
            ..Built::default()
        },
    };
    for i in paging.kernel_half() {
        let va = paging.top_entry_va(i);
        // SAFETY: The caller guarantees that `kernel_pgd` is the top of a tree at `top`.
        // `pgd` is a table of `mem` that `alloc_table()` just returned and that only this
        // function knows of.
        if !unsafe { b.entry(top, Some(kernel_pgd), pgd, i, va, None) } {
            return Err(BuildError::NoMemory(b.built));
        }
    }
    Ok(b.built)
}

impl<M, K, T> Builder<'_, M, K, T>
where
    M: TableMemory,
    K: Fn(u64) -> bool,
    T: FnMut(usize, u64),
{
    /// Fills entry `index` of `dst` (level `level`, covering `va`) from entry `index` of `src`,
    /// or from `leaf`, a large leaf of the kernel's tables above that covers `va`. Returns
    /// false if memory ran out.
    ///
    /// # Safety
    ///
    /// `src` is `None` or the top of a tree of `self.mem` in `self.paging` at `level`, which
    /// stays one while the call runs; `dst` is a table of `self.mem` that this build allocated.
    unsafe fn entry(
        &mut self,
        level: Level,
        src: Option<u64>,
        dst: u64,
        index: usize,
        va: u64,
        leaf: Option<(Level, u64)>,
    ) -> bool {
        let p = self.paging;
        let Some(range) = Range::with_len(va, level.span()) else {
            return false;
        };
        // SAFETY: The caller guarantees that `src`, if any, is a table of `self.mem`.
        let src_entry = src.map_or(0, |t| unsafe { self.mem.read(t, index) });

        if !range.overlaps(&self.layout.direct_map) {
            // At the top level the entry is shared. Below it, this table is ASI's own and the
            // entry a copy that is never updated: `build()` checked that no region the kernel
            // changes at run time is here.
            let value = match leaf {
                Some((l, e)) if e & bits::PRESENT != 0 => p.sub_leaf(l, e, level, va),
                Some(_) => 0,
                None => src_entry,
            };
            // SAFETY: The caller guarantees that `dst` is a table this build allocated: nothing
            // translates through it before `build()` returns. `value` keeps the result a tree:
            // a leaf, 0, or an entry of the kernel's tree (`src`).
            unsafe { self.mem.write(dst, index, value) };
            self.built.shared += 1;
            return true;
        }

        if level == Level::PTE {
            let value = match leaf {
                Some((l, e)) if e & bits::PRESENT != 0 => p.split_to_4k(l, e, va),
                Some(_) => 0,
                None if src_entry & bits::PRESENT != 0 => src_entry & !bits::GLOBAL,
                None => 0,
            };
            let value = if value != 0 && (self.keep)(p.leaf_frame(Level::PTE, value)) {
                self.built.mapped += 1;
                value
            } else {
                0
            };
            // SAFETY: As above; a 4 KiB entry is a leaf.
            unsafe { self.mem.write(dst, index, value) };
            return true;
        }

        let Some(below) = level.below() else {
            return false;
        };
        let Some(table) = self.mem.alloc_table() else {
            return false;
        };
        // Link the table first: on failure, everything allocated is reachable for freeing.
        // SAFETY: As above; the entry points to a zeroed table, the top of a tree.
        unsafe { self.mem.write(dst, index, p.table_entry(table)) };
        self.built.tables += 1;
        if below == Level::PTE {
            let chunk = (va - self.layout.direct_map.first) >> Level::PMD.shift();
            (self.pte_table)(chunk as usize, table);
        }

        let (child, leaf) = match leaf {
            Some(l) => (None, Some(l)),
            None if src_entry & bits::PRESENT == 0 => (None, None),
            None if p.is_leaf(level, src_entry) => (None, Some((level, src_entry))),
            None => (p.next_table(level, src_entry), None),
        };
        for i in 0..ENTRIES {
            let child_va = va.wrapping_add((i as u64) << below.shift());
            // SAFETY: `child` is `None` or the next table of a present non-leaf entry of the tree
            // at `src`, above the PTE level: the top of a tree at `below`. `table` is a table
            // that this build allocated.
            if !unsafe { self.entry(below, child, table, i, child_va, leaf) } {
                return false;
            }
        }
        true
    }
}

/// Frees what [`build`] allocated: every table reachable from `pgd` that the kernel's tables
/// (`kernel_pgd`) do not also reach at the same place. `free` gets each table's physical
/// address, after the tables below it; the function reads no table after passing it to `free`.
///
/// # Safety
///
/// `pgd` and `kernel_pgd` are tops of trees of `mem` in `paging` at `paging.top()`, and stay
/// so while the function runs, except for the tables passed to `free`. No table of the tree at
/// `pgd` that the kernel's tables do not reach at the same place is linked from two entries, as
/// in what [`build`] returns.
pub(crate) unsafe fn free_built<M: TableMemory>(
    mem: &M,
    paging: Paging,
    pgd: u64,
    kernel_pgd: u64,
    free: &mut impl FnMut(u64),
) {
    /// # Safety
    ///
    /// `ours` and `theirs`, if any, are tops of trees of `mem` in `p` at `level`, as for
    /// `free_built()`.
    unsafe fn walk<M: TableMemory>(
        mem: &M,
        p: Paging,
        level: Level,
        ours: u64,
        theirs: Option<u64>,
        free: &mut impl FnMut(u64),
    ) {
        let Some(below) = level.below() else {
            return;
        };
        for i in 0..ENTRIES {
            // SAFETY: The caller guarantees that `ours` is a table of `mem`.
            let e = unsafe { mem.read(ours, i) };
            // SAFETY: The caller guarantees that `theirs`, if any, is a table of `mem`.
            let k = theirs.map_or(0, |t| unsafe { mem.read(t, i) });
            if e == k {
                continue;
            }
            if let Some(child) = p.next_table(level, e) {
                // SAFETY: `child` and the next table of `k`, if any, are next tables of entries
                // of the trees at `ours` and `theirs` above the PTE level: tops of trees at
                // `below`.
                unsafe { walk(mem, p, below, child, p.next_table(level, k), free) };
                free(child);
            }
        }
    }
    let top = paging.top();
    let Some(below) = top.below() else {
        return;
    };
    for i in paging.kernel_half() {
        // SAFETY: The caller guarantees that `pgd` is a table of `mem`.
        let e = unsafe { mem.read(pgd, i) };
        // SAFETY: The caller guarantees that `kernel_pgd` is a table of `mem`.
        let k = unsafe { mem.read(kernel_pgd, i) };
        if e != k {
            if let Some(child) = paging.next_table(top, e) {
                // SAFETY: As in `walk()`, one level up.
                unsafe { walk(mem, paging, below, child, paging.next_table(top, k), free) };
                free(child);
            }
        }
    }
    free(pgd);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::mm::pgtable::{translate, walk};
    use std::collections::BTreeMap;
    use std::vec::Vec;

    const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    const ACCESSED: u64 = 1 << 5;
    const DIRTY: u64 = 1 << 6;
    use bits::{NX, RW};
    const KERNPG_TABLE: u64 = 0x63;

    /// Page tables in a map from physical address to table.
    #[derive(Default)]
    struct Mem {
        tables: BTreeMap<u64, Vec<u64>>,
        next: u64,
        limit: Option<usize>,
    }

    impl Mem {
        fn new() -> Self {
            Mem {
                next: 0x100_0000,
                ..Mem::default()
            }
        }
        fn table(&mut self) -> u64 {
            let pa = self.next;
            self.next += PAGE_SIZE;
            self.tables.insert(pa, std::vec![0; ENTRIES]);
            pa
        }
        /// Entry `index` of `table`; panics if there is no such table.
        fn entry(&self, table: u64, index: usize) -> u64 {
            self.tables[&table][index]
        }
        /// Sets entry `index` of `table`; panics if there is no such table.
        fn set_entry(&mut self, table: u64, index: usize, value: u64) {
            self.tables.get_mut(&table).unwrap()[index] = value;
        }
        /// Maps `va` to `pa` with a leaf at `level`, creating tables on the way.
        fn map(&mut self, p: Paging, pgd: u64, va: u64, pa: u64, level: Level, flags: u64) {
            let mut l = p.top();
            let mut t = pgd;
            while l != level {
                let i = l.index(va);
                let e = self.entry(t, i);
                let next = match p.next_table(l, e) {
                    Some(n) => n,
                    None => {
                        let n = self.table();
                        self.set_entry(t, i, p.table_entry(n));
                        n
                    }
                };
                t = next;
                l = l.below().unwrap();
            }
            let psize = if level == Level::PTE { 0 } else { bits::PSE };
            self.set_entry(t, level.index(va), pa | flags | psize);
        }
    }

    // SAFETY: `read` and `write` look the table up in a map and the entry in a `Vec`, which is
    // sound for every address and index: every address is a table of a `Mem` (one that holds
    // none panics). `alloc_table` inserts a zeroed table.
    unsafe impl TableMemory for Mem {
        unsafe fn read(&self, table: u64, index: usize) -> u64 {
            self.entry(table, index)
        }
        unsafe fn write(&mut self, table: u64, index: usize, value: u64) {
            self.set_entry(table, index, value);
        }
        fn alloc_table(&mut self) -> Option<u64> {
            if let Some(l) = self.limit.as_mut() {
                if *l == 0 {
                    return None;
                }
                *l -= 1;
            }
            Some(self.table())
        }
    }

    /// [`translate`] in the tables of `m`.
    fn lookup(m: &Mem, p: Paging, pgd: u64, va: u64) -> Option<kernel::mm::pgtable::Leaf> {
        // SAFETY: Every address is a table of a `Mem`, so every table is the top of a tree.
        unsafe { translate(m, p, pgd, va) }
    }

    const KERNEL_FLAGS: u64 = bits::PRESENT | RW | ACCESSED | DIRTY | bits::GLOBAL;

    fn paging(levels: u32) -> Paging {
        Paging::new(levels, ADDR_MASK, KERNPG_TABLE).unwrap()
    }

    /// A kernel with an 8 MiB direct map at `dm` (2 MiB leaves, one 4 KiB table for the first
    /// 2 MiB), a kernel image leaf, and a vmalloc page.
    fn kernel(levels: u32, dm: u64) -> (Mem, Paging, u64) {
        let p = paging(levels);
        let mut m = Mem::new();
        let pgd = m.table();
        for i in 0..512u64 {
            m.map(
                p,
                pgd,
                dm + i * PAGE_SIZE,
                i * PAGE_SIZE,
                Level::PTE,
                KERNEL_FLAGS | NX,
            );
        }
        for i in 1..4u64 {
            let flags = KERNEL_FLAGS | NX | if i == 2 { bits::PAT_LARGE } else { 0 };
            m.map(
                p,
                pgd,
                dm + i * Level::PMD.span(),
                i * Level::PMD.span(),
                Level::PMD,
                flags,
            );
        }
        m.map(
            p,
            pgd,
            0xffff_ffff_8100_0000,
            0x100_0000,
            Level::PMD,
            KERNEL_FLAGS,
        );
        m.map(
            p,
            pgd,
            0xffff_c900_0000_0000,
            0x5000,
            Level::PTE,
            KERNEL_FLAGS,
        );
        (m, p, pgd)
    }

    fn layout(dm: u64) -> Layout {
        Layout {
            direct_map: Range::with_len(dm, 4 * Level::PMD.span()).unwrap(),
            dynamic: Range::with_len(0xffff_c900_0000_0000, 1 << 40).unwrap(),
        }
    }

    #[test]
    fn levels_and_indices() {
        assert_eq!(Level::PTE.span(), 4096);
        assert_eq!(Level::PMD.span(), 2 << 20);
        assert_eq!(Level::PUD.span(), 1 << 30);
        assert_eq!(Level::PMD.number(), 1);
        assert_eq!(Level::PMD.index(0xffff_8880_0060_0000), 3);
        assert_eq!(Level::PTE.below(), None);
        assert_eq!(Level::new(5), None);
        assert_eq!(paging(4).top(), Level::new(3).unwrap());
        assert_eq!(paging(4).top_entry_va(256), 0xffff_8000_0000_0000);
        assert_eq!(paging(5).top_entry_va(256), 0xff00_0000_0000_0000);
        assert_eq!(
            paging(4).canonical(0x0000_8880_0000_0000),
            0xffff_8880_0000_0000
        );
        assert_eq!(
            Paging::new(3, ADDR_MASK, 0).err(),
            Some(PagingError::Levels)
        );
        assert_eq!(Paging::new(4, 0xfff, 0).err(), Some(PagingError::AddrMask));
    }

    #[test]
    fn covers_only_what_the_kernel_grants() {
        let p = paging(4);
        let k = 0x1234_5000 | bits::PRESENT | RW | NX;
        assert!(p.covers(k, k));
        assert!(p.covers(k, k & !RW));
        assert!(p.covers(k, 0));
        assert!(p.covers(0, 0));
        assert!(!p.covers(0, k));
        assert!(!p.covers(k & !RW, k));
        assert!(!p.covers(k, k & !NX));
        assert!(!p.covers(k, (k & !ADDR_MASK) | 0x1234_6000));
        assert!(!p.covers(k, k | bits::USER));
    }

    #[test]
    fn split_moves_pat_and_drops_global() {
        let p = paging(4);
        let large = 0x4020_0000 | KERNEL_FLAGS | bits::PSE | bits::PAT_LARGE | NX;
        let e = p.split_to_4k(Level::PMD, large, 0xffff_8880_4023_4000);
        assert_eq!(e & ADDR_MASK, 0x4023_4000);
        assert_ne!(e & bits::PAT_4K, 0);
        assert_eq!(e & bits::GLOBAL, 0);
        assert_ne!(e & NX, 0);
        assert_eq!(e & bits::PAT_LARGE, 0);
        let plain = p.split_to_4k(
            Level::PUD,
            0x4000_0000 | KERNEL_FLAGS | bits::PSE,
            0xffff_8880_7fff_f000,
        );
        assert_eq!(plain & ADDR_MASK, 0x7fff_f000);
        assert_eq!(plain & bits::PAT_4K, 0);
    }

    fn built_tree(
        levels: u32,
        dm: u64,
        keep: impl Fn(u64) -> bool,
    ) -> (Mem, Paging, u64, Built, Vec<(usize, u64)>) {
        let (mut m, p, kpgd) = kernel(levels, dm);
        let mut ptes = Vec::new();
        // SAFETY: Every address is a table of a `Mem`, so every table is the top of a tree.
        let built =
            unsafe { build(&mut m, p, kpgd, layout(dm), keep, |c, t| ptes.push((c, t))) }.unwrap();
        (m, p, kpgd, built, ptes)
    }

    #[test]
    fn direct_map_is_4k_and_the_rest_is_shared() {
        for (levels, dm) in [(4, 0xffff_8880_0000_0000), (5, 0xff11_0000_0000_0000)] {
            let (m, p, kpgd, built, ptes) = built_tree(levels, dm, |_| true);
            assert_eq!(built.mapped, 4 * 512);
            assert_eq!(ptes.len(), 4);
            assert_eq!(ptes.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
            for i in 0..(4 * 512u64) {
                let va = dm + i * PAGE_SIZE;
                let leaf = lookup(&m, p, built.pgd, va).unwrap();
                assert_eq!(leaf.level, Level::PTE);
                assert_eq!(leaf.frame, i * PAGE_SIZE);
                assert_eq!(leaf.entry & bits::GLOBAL, 0);
                assert_ne!(leaf.entry & NX, 0);
                assert_eq!(leaf.entry & bits::PAT_4K != 0, i / 512 == 2);
            }
            // The kernel image is reached through the very same top-level entry.
            let ki = p.top().index(0xffff_ffff_8100_0000);
            assert_eq!(m.entry(built.pgd, ki), m.entry(kpgd, ki));
            let leaf = lookup(&m, p, built.pgd, 0xffff_ffff_8100_0000).unwrap();
            assert_eq!((leaf.level, leaf.frame), (Level::PMD, 0x100_0000));
            // The user half is empty.
            assert!((0..256).all(|i| m.entry(built.pgd, i) == 0));
        }
    }

    #[test]
    fn pages_not_kept_are_absent_without_frame() {
        let dm = 0xffff_8880_0000_0000;
        let (m, p, _, built, _) = built_tree(4, dm, |pa| pa != 0x3000 && pa != 0x40_1000);
        assert_eq!(built.mapped, 4 * 512 - 2);
        for va in [dm + 0x3000, dm + 0x40_1000] {
            assert_eq!(lookup(&m, p, built.pgd, va), None);
            let pmd_t = p.next_table(Level::PUD, {
                let pud_t = p
                    .next_table(p.top(), m.entry(built.pgd, p.top().index(va)))
                    .unwrap();
                m.entry(pud_t, Level::PUD.index(va))
            });
            let pte_t = p
                .next_table(Level::PMD, m.entry(pmd_t.unwrap(), Level::PMD.index(va)))
                .unwrap();
            assert_eq!(m.entry(pte_t, Level::PTE.index(va)), 0);
        }
        assert!(lookup(&m, p, built.pgd, dm + 0x4000).is_some());
    }

    #[test]
    fn walk_sees_every_leaf_and_table() {
        let dm = 0xffff_8880_0000_0000;
        let (m, p, _, built, _) = built_tree(4, dm, |pa| pa != 0x3000);
        let mut sensitive_seen = 0;
        let mut tables = 0;
        // SAFETY: Every address is a table of a `Mem`, so every table is the top of a tree.
        let stats = unsafe {
            walk(
                &m,
                p,
                built.pgd,
                p.kernel_half(),
                &mut |l| {
                    if l.frame == 0x3000 {
                        sensitive_seen += 1;
                    }
                },
                &mut |_| tables += 1,
            )
        };
        assert_eq!(sensitive_seen, 0);
        // 2047 direct-map pages, the kernel image leaf and the vmalloc page.
        assert_eq!(stats.leaves, 2047 + 2);
        assert_eq!(stats.tables, tables);
    }

    #[test]
    fn running_out_of_memory_leaves_a_freeable_tree() {
        let dm = 0xffff_8880_0000_0000;
        for limit in 0..8 {
            let (mut m, p, kpgd) = kernel(4, dm);
            let before = m.tables.len();
            m.limit = Some(limit);
            // SAFETY: Every address is a table of a `Mem`, so every table is the top of a tree.
            let r = unsafe { build(&mut m, p, kpgd, layout(dm), |_| true, |_, _| {}) };
            let partial = match r {
                Err(BuildError::NoMemory(b)) => b,
                Ok(b) => {
                    assert!(limit >= 7);
                    b
                }
                Err(e) => panic!("{e:?}"),
            };
            if partial.pgd == 0 {
                assert_eq!(m.tables.len(), before);
                continue;
            }
            let mut freed = Vec::new();
            // SAFETY: As for `build()`; `build()` links each of its tables once.
            unsafe { free_built(&m, p, partial.pgd, kpgd, &mut |t| freed.push(t)) };
            assert_eq!(freed.len(), m.tables.len() - before, "limit {limit}");
            assert_eq!(freed.len(), partial.tables);
        }
    }

    #[test]
    fn layout_must_be_aligned_and_in_the_kernel_half() {
        let (mut m, p, kpgd) = kernel(4, 0xffff_8880_0000_0000);
        let bad = Layout {
            direct_map: Range::with_len(0xffff_8880_0000_1000, 2 << 20).unwrap(),
            dynamic: Range::with_len(0xffff_c900_0000_0000, 1 << 30).unwrap(),
        };
        // SAFETY: Every address is a table of a `Mem`, so every table is the top of a tree.
        let r = unsafe { build(&mut m, p, kpgd, bad, |_| true, |_, _| {}) };
        assert_eq!(r, Err(BuildError::Layout));
    }

    /// With KASLR the kernel may place vmalloc in the direct map's last top-level entry. Below
    /// it the tables are ASI's own, whose copies of the kernel's vmalloc entries would go stale
    /// (review M2, M3): the build refuses, before it allocates anything.
    #[test]
    fn vmalloc_must_not_share_a_top_level_entry_with_the_direct_map() {
        for (levels, dm) in [(4, 0xffff_8880_0000_0000u64), (5, 0xff11_0000_0000_0000)] {
            let (mut m, p, kpgd) = kernel(levels, dm);
            let top = p.top().span();
            let next_top = (dm | (top - 1)) + 1;
            let before = m.tables.len();
            for (dynamic_first, ok) in [
                (dm + 4 * Level::PMD.span() + Level::PUD.span(), false),
                (next_top - Level::PUD.span(), false),
                (next_top, true),
            ] {
                let l = Layout {
                    direct_map: Range::with_len(dm, 4 * Level::PMD.span()).unwrap(),
                    dynamic: Range::with_len(dynamic_first, 1 << 40).unwrap(),
                };
                // SAFETY: Every address is a table of a `Mem`, so every table is the top of a
                // tree.
                let r = unsafe { build(&mut m, p, kpgd, l, |_| true, |_, _| {}) };
                if ok {
                    assert!(r.is_ok(), "{levels}-level, vmalloc at {dynamic_first:#x}");
                } else {
                    assert_eq!(
                        r,
                        Err(BuildError::Shared),
                        "{levels}-level, {dynamic_first:#x}"
                    );
                    assert_eq!(m.tables.len(), before);
                }
            }
        }
    }

    #[test]
    fn ranges() {
        let a = Range::with_len(0x1000, 0x1000).unwrap();
        assert!(a.contains(0x1fff) && !a.contains(0x2000));
        assert!(a.overlaps(&Range::with_len(0x1fff, 1).unwrap()));
        assert!(!a.overlaps(&Range::with_len(0x2000, 1).unwrap()));
        assert_eq!(Range::with_len(u64::MAX, 2), None);
        assert_eq!(Range::with_len(1, 0), None);
        assert_eq!(
            Range::with_len(0xffff_ffff_ffff_f000, 0x1000).unwrap().last,
            u64::MAX
        );
    }

    #[test]
    fn fault_granted_follows_the_kernel_leaf() {
        let rw = bits::PRESENT | RW | NX | 0x1234_5000;
        let ro = bits::PRESENT | NX | 0x1234_5000;
        let text = bits::PRESENT | 0x1234_5000;
        // Reads of anything present, writes of writable pages, fetches of executable ones.
        assert!(fault_granted(rw, 0));
        assert!(fault_granted(rw, pf::WRITE));
        assert!(fault_granted(ro, 0));
        assert!(fault_granted(text, pf::INSTR));
        // A protection fault on the nonsensitive tables is still ASI's if the kernel grants it.
        // (Bit 0 of the error code: the page was present.)
        assert!(fault_granted(rw, 1 | pf::WRITE));
        // Not present in the kernel's tables either: the kernel's fault, not ASI's.
        assert!(!fault_granted(rw & !bits::PRESENT, 0));
        assert!(!fault_granted(0, 0));
        // Accesses the kernel's own entry does not grant.
        assert!(!fault_granted(ro, pf::WRITE));
        assert!(!fault_granted(rw, pf::INSTR));
        // Faults ASI never causes.
        for bit in [pf::USER, pf::RSVD, pf::PK, pf::SHSTK, pf::SGX] {
            assert!(!fault_granted(rw, bit), "{bit:#x}");
        }
    }
}
