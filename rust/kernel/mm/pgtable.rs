// SPDX-License-Identifier: GPL-2.0

//! Walking radix page tables.
//!
//! The page tables of x86-64, arm64 with 4 KiB granules and RISC-V (Sv39/48/57) share a shape:
//! tables of 512 eight-byte entries, each level resolving nine bits of the virtual address
//! above the 4 KiB page offset, with leaves allowed at some levels above the last. This module
//! walks such trees. It is generic over
//!
//! - the entry format, [`Format`]: which entries are present, which are leaves, where the next
//!   table or the mapped frame is;
//! - the way table pages are reached, [`TableMemory`]: through the kernel's direct map in the
//!   kernel, through plain memory in tests.
//!
//! Nothing here can tell a page-table page from any other physical address, so reaching a table
//! is `unsafe`: an implementation of [`TableMemory`] promises which addresses are its tables, and
//! the callers of [`walk`] and [`translate`] promise that the tree they name is made of them.
//!
//! It uses only `core`, so code built on it can also be unit-tested on the build host.
//!
//! # Examples
//!
//! A two-level format where bit 0 means present and bit 1 means leaf, over a handful of
//! entries:
//!
//! ```
//! use kernel::mm::pgtable::{translate, walk, Format, Level, TableMemory, ENTRIES};
//!
//! #[derive(Clone, Copy)]
//! struct Toy;
//!
//! impl Format for Toy {
//!     fn top(&self) -> Level {
//!         Level::PMD
//!     }
//!     fn present(&self, e: u64) -> bool {
//!         e & 1 != 0
//!     }
//!     fn is_leaf(&self, level: Level, e: u64) -> bool {
//!         level == Level::PTE || e & 2 != 0
//!     }
//!     fn address(&self, _level: Level, e: u64) -> u64 {
//!         e & !0xfff
//!     }
//!     fn canonical(&self, va: u64) -> u64 {
//!         va
//!     }
//! }
//!
//! // A few entries of a few tables, all others zero: (table, index, value).
//! struct Tables([(u64, usize, u64); 3]);
//!
//! // SAFETY: `read` and `write` dereference no address, so every address is a table of
//! // `Tables`, with the listed entries and zero elsewhere. `alloc_table` returns none.
//! unsafe impl TableMemory for Tables {
//!     unsafe fn read(&self, table: u64, index: usize) -> u64 {
//!         self.0
//!             .iter()
//!             .find(|e| e.0 == table && e.1 == index)
//!             .map_or(0, |e| e.2)
//!     }
//!     unsafe fn write(&mut self, _table: u64, _index: usize, _value: u64) {}
//!     fn alloc_table(&mut self) -> Option<u64> {
//!         None
//!     }
//! }
//!
//! // The top table is at 0. Its entry 1 points to the table at 0x1000, whose entry 3 maps
//! // 0x5000; its entry 2 is a 2 MiB leaf at 0x40_0000.
//! let t = Tables([(0, 1, 0x1000 | 1), (0x1000, 3, 0x5000 | 1), (0, 2, 0x40_0000 | 3)]);
//!
//! // SAFETY: Every address is a table of `t`, so the table at 0 is the top of a tree of it,
//! // and `t` does not change.
//! let leaf = unsafe { translate(&t, Toy, 0, (1 << 21) | (3 << 12) | 0x123) };
//! assert_eq!(leaf.map(|l| (l.level, l.frame)), Some((Level::PTE, 0x5000)));
//! // SAFETY: As above.
//! assert_eq!(unsafe { translate(&t, Toy, 0, 4 << 21) }, None);
//!
//! let mut leaves = 0;
//! // SAFETY: As above.
//! let stats = unsafe { walk(&t, Toy, 0, 0..ENTRIES, &mut |_| leaves += 1, &mut |_| {}) };
//! assert_eq!((leaves, stats.tables), (2, 1));
//! ```

/// Entries in one table of any level.
pub const ENTRIES: usize = 512;

/// A level of the tree: 0 holds the entries that map 4 KiB pages, each level above resolves
/// nine more bits of the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Level(u32);

impl Level {
    /// The level of 4 KiB entries.
    pub const PTE: Level = Level(0);
    /// One level up: entries map 2 MiB or point to PTE tables.
    pub const PMD: Level = Level(1);
    /// Two levels up: entries map 1 GiB or point to PMD tables.
    pub const PUD: Level = Level(2);

    /// The level `n` levels above the PTE level, `None` above the fifth level.
    pub const fn new(n: u32) -> Option<Level> {
        if n < 5 {
            Some(Level(n))
        } else {
            None
        }
    }

    /// Bit position of the address range one entry of this level covers.
    pub const fn shift(self) -> u32 {
        12 + 9 * self.0
    }

    /// Bytes one entry of this level covers.
    pub const fn span(self) -> u64 {
        1u64 << self.shift()
    }

    /// Index of the entry of this level that covers `va`.
    pub const fn index(self, va: u64) -> usize {
        // Masked to nine bits: the conversion is lossless.
        ((va >> self.shift()) & 0x1ff) as usize
    }

    /// The level below, `None` for the PTE level.
    pub const fn below(self) -> Option<Level> {
        match self.0.checked_sub(1) {
            Some(n) => Some(Level(n)),
            None => None,
        }
    }

    /// The level as a number, 0 for the PTE level.
    pub const fn number(self) -> u32 {
        self.0
    }
}

/// An inclusive range of addresses. Inclusive, so a range that ends at the top of the
/// address space can be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First address.
    pub first: u64,
    /// Last address.
    pub last: u64,
}

impl Range {
    /// The range of `len` bytes at `start`, `None` if it is empty or wraps.
    pub fn with_len(start: u64, len: u64) -> Option<Range> {
        let last = start.checked_add(len.checked_sub(1)?)?;
        Some(Range { first: start, last })
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: u64) -> bool {
        self.first <= addr && addr <= self.last
    }
}

/// An entry format.
pub trait Format: Copy {
    /// The top level.
    fn top(&self) -> Level;
    /// Whether `entry` is present.
    fn present(&self, entry: u64) -> bool;
    /// Whether the present `entry` of `level` maps memory, as opposed to pointing to a table.
    fn is_leaf(&self, level: Level, entry: u64) -> bool;
    /// The physical address in the present `entry` of `level`: the table it points to, or the
    /// first byte of the memory it maps.
    fn address(&self, level: Level, entry: u64) -> u64;
    /// The canonical form of the virtual address `va`.
    fn canonical(&self, va: u64) -> u64;
}

/// Access to page-table pages by physical address.
///
/// The physical addresses that an implementation can reach are its *tables*: each address
/// [`alloc_table`](TableMemory::alloc_table) returned, until it is freed the way the
/// implementation documents, and the addresses the implementation's documentation names.
///
/// In a [`Format`], a table is the *top of a tree* at a level if the level is [`Level::PTE`],
/// or if [`next_table`] of each of its entries is either `None` or the top of a tree at the
/// level below. [`walk`] and [`translate`] follow such trees; their callers vouch for them.
///
/// # Safety
///
/// Implementors guarantee that [`read`](TableMemory::read) and [`write`](TableMemory::write)
/// are sound for every table of the memory and every `index` (an `index` of [`ENTRIES`] or more
/// may panic, or be taken modulo [`ENTRIES`]), and that [`alloc_table`](TableMemory::alloc_table)
/// returns only tables whose entries are all zero.
pub unsafe trait TableMemory {
    /// Reads entry `index` of the table at physical address `table`.
    ///
    /// # Safety
    ///
    /// `table` is a table of this memory.
    unsafe fn read(&self, table: u64, index: usize) -> u64;

    /// Writes entry `index` of the table at physical address `table`.
    ///
    /// # Safety
    ///
    /// `table` is a table of this memory that no CPU translates addresses through, so that the
    /// write changes no mapping in use.
    unsafe fn write(&mut self, table: u64, index: usize, value: u64);

    /// A new zeroed table; its physical address. `None` if memory ran out.
    fn alloc_table(&mut self) -> Option<u64>;
}

/// The table a present, non-leaf `entry` of `level` points to.
pub fn next_table<F: Format>(format: F, level: Level, entry: u64) -> Option<u64> {
    if !format.present(entry) || format.is_leaf(level, entry) {
        None
    } else {
        Some(format.address(level, entry))
    }
}

/// A present leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First virtual address it maps.
    pub va: u64,
    /// Its level.
    pub level: Level,
    /// The entry.
    pub entry: u64,
    /// First physical address it maps.
    pub frame: u64,
}

/// What [`walk`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Present entries read, tables and leaves.
    pub entries: u64,
    /// Tables visited below the top level.
    pub tables: u64,
    /// Present leaves.
    pub leaves: u64,
}

/// Visits every present leaf below the top-level entries `indices` of the tree at `top`
/// (`leaf`), and every table below the top level (`table` gets its physical address).
///
/// The walk does not lock anything: entries that change under it are read either before or
/// after the change, as debugging tools do.
///
/// # Safety
///
/// `top` is the top of a tree of `mem` in `format` at `format.top()` (see [`TableMemory`]), and
/// stays one until the walk returns: none of its tables is freed, and an entry that changes
/// meanwhile still points to such a tree if it points to a table.
pub unsafe fn walk<M: TableMemory, F: Format>(
    mem: &M,
    format: F,
    top: u64,
    indices: core::ops::Range<usize>,
    leaf: &mut impl FnMut(Leaf),
    table: &mut impl FnMut(u64),
) -> WalkStats {
    struct Walker<'a, M, F, L, T> {
        mem: &'a M,
        f: F,
        stats: WalkStats,
        leaf: &'a mut L,
        table: &'a mut T,
    }
    impl<M: TableMemory, F: Format, L: FnMut(Leaf), T: FnMut(u64)> Walker<'_, M, F, L, T> {
        /// # Safety
        ///
        /// `t` is the top of a tree of `self.mem` in `self.f` at `level`, and stays one until
        /// the call returns.
        unsafe fn walk(
            &mut self,
            level: Level,
            t: u64,
            base: u64,
            indices: core::ops::Range<usize>,
        ) {
            for i in indices {
                // SAFETY: The caller guarantees that `t` is a table of `self.mem`.
                let e = unsafe { self.mem.read(t, i) };
                if !self.f.present(e) {
                    continue;
                }
                self.stats.entries += 1;
                let va = self
                    .f
                    .canonical(base.wrapping_add((i as u64) << level.shift()));
                if self.f.is_leaf(level, e) {
                    self.stats.leaves += 1;
                    (self.leaf)(Leaf {
                        va,
                        level,
                        entry: e,
                        frame: self.f.address(level, e),
                    });
                } else if let Some(below) = level.below() {
                    let child = self.f.address(level, e);
                    self.stats.tables += 1;
                    (self.table)(child);
                    // SAFETY: `e` is a present non-leaf entry of level `level` of the tree at
                    // `t`, above the PTE level: `child`, its `next_table()`, is the top of a tree
                    // at `below`, and stays one as long as the tree at `t` does.
                    unsafe { self.walk(below, child, va, 0..ENTRIES) };
                }
            }
        }
    }
    let mut w = Walker {
        mem,
        f: format,
        stats: WalkStats::default(),
        leaf,
        table,
    };
    // SAFETY: The caller guarantees that `top` is the top of a tree at `format.top()` for the
    // whole walk.
    unsafe { w.walk(format.top(), top, 0, indices) };
    w.stats
}

/// Looks `va` up in the tree at `top`: the present leaf that maps it, if any.
///
/// # Safety
///
/// As for [`walk`]: `top` is the top of a tree of `mem` in `format` at `format.top()`, and
/// stays one until the function returns.
pub unsafe fn translate<M: TableMemory, F: Format>(
    mem: &M,
    format: F,
    top: u64,
    va: u64,
) -> Option<Leaf> {
    let mut level = format.top();
    let mut t = top;
    loop {
        // SAFETY: `t` is the top of a tree at `level`: `top` at the top level, as the caller
        // guarantees, and below it the next table of a present non-leaf entry of such a tree.
        let e = unsafe { mem.read(t, level.index(va)) };
        if !format.present(e) {
            return None;
        }
        if format.is_leaf(level, e) {
            return Some(Leaf {
                va: va & !(level.span() - 1),
                level,
                entry: e,
                frame: format.address(level, e),
            });
        }
        t = format.address(level, e);
        level = level.below()?;
    }
}
