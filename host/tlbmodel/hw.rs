// SPDX-License-Identifier: GPL-2.0

//! The TLB and paging-structure caches of one x86-64 logical CPU.
//!
//! The rules are those the SDM (Vol. 3A, 4.10 "Caching Translation Information") guarantees,
//! and no more: where the SDM allows an operation to invalidate more than it must, the model
//! invalidates exactly what it must. Every entry that may be cached is cached (see
//! [`Tlb::fill`]), and every cached entry may be used at any time, speculatively or not, by
//! the CPU while it runs with the PCID the entry is tagged with (or any PCID, for a global
//! entry). A hardware TLB holds a subset of what this model holds, so a design that keeps this
//! model coherent keeps every real TLB coherent, and a stale entry this model can use is one a
//! real CPU may use.
//!
//! The model's memory has four virtual pages ([`Va`]) and five page-table entries ([`Pte`])
//! that map them: the direct-map page S has one entry in the kernel's direct map and another in
//! ASI's nonsensitive direct map. An entry is identified by the PTE it was read from and by
//! whether that PTE has changed since (`stale`): the frame and the permissions it cached are
//! not stored, since every change of a PTE (another frame, other permissions, cleared) makes
//! the entries read from it wrong, and that is all the invariants ask. The only page-table
//! page the model frees is the PTE table of mm A's user page, so the paging-structure caches
//! hold one kind of entry: "the PDE above A's user page points to A's PTE table", tagged by
//! PCID, stale once that table is freed.

use std::fmt;

/// Bit 63 of a CR3 write: keep the TLB entries of the new PCID (needs CR4.PCIDE).
pub(super) const CR3_NOFLUSH_BIT: u32 = 63;

/// The PCID bit ASI gives its nonsensitive address spaces: `X86_CR3_ASI_PCID_BIT` with
/// `CONFIG_MITIGATION_PAGE_TABLE_ISOLATION=y`, as in distribution configs.
pub(super) const ASI_PCID_BIT: u16 = 1 << 10;

/// The most dynamic ASIDs the model's PCID tags have room for.
pub(super) const MAX_ASIDS: usize = 3;

/// Tag slots: PCID 0, the full PCIDs 1..=3, the nonsensitive PCIDs 1..=3 with
/// [`ASI_PCID_BIT`], and global entries.
const SLOTS: usize = 2 * MAX_ASIDS + 2;
const GLOBAL_SLOT: usize = SLOTS - 1;
/// Bits per tag slot in [`Tlb::entries`]: a fresh and a stale bit per PTE.
const SLOT_BITS: usize = 2 * Pte::ALL.len();

/// A virtual page of the model.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Va {
    /// A user page of mm A.
    User,
    /// The direct-map alias of a kernel page whose attributes CPA changes (secretmem,
    /// `set_memory_np()`).
    Dm,
    /// The direct-map alias of the page that ASI can make sensitive.
    Sens,
    /// A vmalloc alias of that same page.
    Vmalloc,
}

/// A page-table entry of the model, which a TLB entry is read from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Pte {
    /// A's user PTE, in the user half that A's full and nonsensitive PGDs share.
    User = 0,
    /// The direct-map PTE of the CPA page (CPA writes the kernel's, ASI mirrors it into its own).
    Dm = 1,
    /// The kernel's direct-map PTE of page S: always present.
    SensFull = 2,
    /// ASI's direct-map PTE of page S: cleared while S holds user data.
    SensNs = 3,
    /// The vmalloc PTE that maps page S, shared by every PGD.
    Vmalloc = 4,
}

impl Pte {
    /// Every PTE, in bit order.
    pub(super) const ALL: [Pte; 5] = [Pte::User, Pte::Dm, Pte::SensFull, Pte::SensNs, Pte::Vmalloc];
}

/// The top-level page tables a CR3 can point to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Root {
    /// `init_mm`'s PGD (swapper_pg_dir): kernel mappings only.
    Init,
    /// mm A's PGD.
    AFull,
    /// mm A's nonsensitive PGD (ASI's).
    ANs,
    /// mm B's PGD.
    BFull,
    /// mm B's nonsensitive PGD.
    BNs,
}

impl Root {
    /// Whether this is one of ASI's nonsensitive PGDs.
    pub(super) fn is_nonsensitive(self) -> bool {
        matches!(self, Root::ANs | Root::BNs)
    }
}

/// A CR3 value without bit 63: page-table root and PCID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct Cr3 {
    /// The top-level table.
    pub(super) root: Root,
    /// Bits 11:0 (PCID when CR4.PCIDE=1, else zero).
    pub(super) pcid: u16,
}

impl fmt::Display for Cr3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} PCID {}", self.root, Tag::Pcid(self.pcid))
    }
}

/// The tag of a TLB entry: the PCID it was filled with, or global.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Tag {
    /// A non-global entry, usable only with this PCID.
    Pcid(u16),
    /// A global entry (PTE.G=1 with CR4.PGE=1), usable with every PCID.
    Global,
}

impl Tag {
    /// Whether this is a nonsensitive (ASI) PCID.
    pub(super) fn is_asi(self) -> bool {
        matches!(self, Tag::Pcid(p) if p & ASI_PCID_BIT != 0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Tag::Global => write!(f, "global"),
            Tag::Pcid(p) if p & ASI_PCID_BIT != 0 => write!(f, "{}|ASI", p & !ASI_PCID_BIT),
            Tag::Pcid(p) => write!(f, "{p}"),
        }
    }
}

/// The slot of a tag in the bit sets. The model kernel uses only the PCIDs listed at
/// [`SLOTS`]; any other one is a bug of the model.
fn slot(tag: Tag) -> usize {
    match tag {
        Tag::Global => GLOBAL_SLOT,
        Tag::Pcid(0) => 0,
        Tag::Pcid(p) => {
            let n = usize::from(p & !ASI_PCID_BIT);
            assert!(
                (1..=MAX_ASIDS).contains(&n),
                "PCID {p:#x} outside the model"
            );
            if p & ASI_PCID_BIT != 0 {
                MAX_ASIDS + n
            } else {
                n
            }
        }
    }
}

/// The tag of a slot.
fn slot_tag(s: usize) -> Tag {
    match s {
        GLOBAL_SLOT => Tag::Global,
        0 => Tag::Pcid(0),
        // The casts cannot truncate: `s < SLOTS`.
        s if s <= MAX_ASIDS => Tag::Pcid(s as u16),
        s => Tag::Pcid((s - MAX_ASIDS) as u16 | ASI_PCID_BIT),
    }
}

/// One cached translation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct Entry {
    /// The PCID it may be used with, or global.
    pub(super) tag: Tag,
    /// The PTE it was read from.
    pub(super) pte: Pte,
    /// Whether that PTE changed after the entry was read.
    pub(super) stale: bool,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let age = if self.stale { "stale" } else { "current" };
        write!(f, "{age} TLB entry {:?} tagged {}", self.pte, self.tag)
    }
}

/// What a page walk from a root finds: the PTEs present, non-global and global (a bit per
/// [`Pte`]), and whether the walk goes through A's user PTE table.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Walk {
    /// The non-global PTEs present.
    local: u8,
    /// The global PTEs present.
    global: u8,
    /// Whether the root maps A's user half (and so may cache the PDE above A's PTE table).
    pub(super) user_table: bool,
}

impl Walk {
    /// `pte` is present, global or not.
    pub(super) fn map(&mut self, pte: Pte, global: bool) {
        if global {
            self.global |= 1 << pte as u8;
        } else {
            self.local |= 1 << pte as u8;
        }
    }
}

/// The fresh bits of a slot for each set of PTEs.
const SPREAD: [u128; 32] = {
    let mut t = [0u128; 32];
    let mut m = 0;
    while m < 32 {
        let mut p = 0;
        while p < 5 {
            if m & (1 << p) != 0 {
                t[m] |= 1 << (2 * p);
            }
            p += 1;
        }
        m += 1;
    }
    t
};

/// An INVPCID descriptor with its type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Invpcid {
    /// Type 0: the non-global entries of `pcid` for `va`, and the paging-structure cache
    /// entries of `pcid` that would be used to translate `va` (unlike INVLPG, not the others).
    Address(u16, Va),
    /// Type 1: the non-global entries and paging-structure caches of `pcid`.
    Single(u16),
    /// Type 2: everything, global entries included.
    AllIncludingGlobal,
    /// Type 3: every non-global entry and every paging-structure cache.
    AllNonGlobal,
}

/// The translation caches and the CR3/CR4 state of one CPU.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct Tlb {
    /// Per tag slot, a fresh and a stale bit for each [`Pte`]: both may be set, since a
    /// TLB may hold an old and a new translation of one page at once.
    entries: u128,
    /// Per non-global tag slot, a fresh and a stale bit: "the PDE above A's user page points
    /// to A's PTE table", cached under that PCID.
    psc: u16,
    /// CR3 without bit 63.
    cr3: Cr3,
    /// CR4.PCIDE. CR4.PGE is always set, except inside [`Tlb::toggle_pge`].
    pcide: bool,
}

const fn entry_bit(s: usize, pte: Pte, stale: bool) -> u128 {
    1u128 << (s * SLOT_BITS + 2 * pte as usize + stale as usize)
}

/// Both bits of every PTE of tag slot `s`.
const fn slot_mask(s: usize) -> u128 {
    ((1u128 << SLOT_BITS) - 1) << (s * SLOT_BITS)
}

/// The fresh bits of `pte` in every slot.
const fn fresh_bits(pte: Pte) -> u128 {
    let mut m = 0;
    let mut s = 0;
    while s < SLOTS {
        m |= entry_bit(s, pte, false);
        s += 1;
    }
    m
}

/// [`fresh_bits`] of each PTE.
const FRESH: [u128; 5] = [
    fresh_bits(Pte::User),
    fresh_bits(Pte::Dm),
    fresh_bits(Pte::SensFull),
    fresh_bits(Pte::SensNs),
    fresh_bits(Pte::Vmalloc),
];

/// Both bits of `pte` in every slot.
pub(super) const fn pte_bits(pte: Pte) -> u128 {
    fresh_bits(pte) | fresh_bits(pte) << 1
}

/// [`pte_bits`] of each PTE.
pub(super) const PTE_BITS: [u128; 5] = [
    pte_bits(Pte::User),
    pte_bits(Pte::Dm),
    pte_bits(Pte::SensFull),
    pte_bits(Pte::SensNs),
    pte_bits(Pte::Vmalloc),
];

/// Every stale bit.
pub(super) const STALE_BITS: u128 = (fresh_bits(Pte::User)
    | fresh_bits(Pte::Dm)
    | fresh_bits(Pte::SensFull)
    | fresh_bits(Pte::SensNs)
    | fresh_bits(Pte::Vmalloc))
    << 1;

/// Both bits of the PTEs that map `va`, in every slot.
fn va_mask(va: Va) -> u128 {
    match va {
        Va::User => PTE_BITS[Pte::User as usize],
        Va::Dm => PTE_BITS[Pte::Dm as usize],
        Va::Sens => PTE_BITS[Pte::SensFull as usize] | PTE_BITS[Pte::SensNs as usize],
        Va::Vmalloc => PTE_BITS[Pte::Vmalloc as usize],
    }
}

fn psc_bits(s: usize) -> u16 {
    0b11 << (2 * s)
}

impl Tlb {
    /// A CPU with empty caches, running on `cr3`.
    pub(super) fn new(cr3: Cr3, pcide: bool) -> Self {
        Tlb {
            entries: 0,
            psc: 0,
            cr3,
            pcide,
        }
    }

    /// CR3 as MOV from CR3 reads it (bit 63 always reads as zero).
    pub(super) fn cr3(&self) -> Cr3 {
        self.cr3
    }

    /// The whole state in three numbers, for the driver's state index: the entries (80
    /// bits), the paging-structure caches (14 bits) and CR3 (6 bits). CR4.PCIDE is left out:
    /// it is fixed for a run.
    pub(super) fn key(&self) -> (u128, u16, u8) {
        let cr3 = self.cr3.root as u8 * 8 + slot(Tag::Pcid(self.cr3.pcid)) as u8;
        (self.entries, self.psc, cr3)
    }

    /// The tag this CPU gives non-global entries now: the CR3 PCID, or 0 without PCIDE.
    pub(super) fn current_tag(&self) -> Tag {
        Tag::Pcid(if self.pcide { self.cr3.pcid } else { 0 })
    }

    /// MOV to CR3. With CR4.PCIDE=1 and bit 63 clear it invalidates the non-global entries
    /// and the paging-structure caches of the new PCID only; with bit 63 set, nothing. With
    /// CR4.PCIDE=0 it invalidates every non-global entry and every paging-structure cache
    /// (all of them are PCID 0's); bits 11:0 are then PWT/PCD and the kernel keeps them zero.
    pub(super) fn write_cr3(&mut self, cr3: Cr3, noflush: bool) {
        if self.pcide {
            if !noflush {
                let s = slot(Tag::Pcid(cr3.pcid));
                self.entries &= !slot_mask(s);
                self.psc &= !psc_bits(s);
            }
        } else {
            assert!(!noflush, "CR3 bit {CR3_NOFLUSH_BIT} set with CR4.PCIDE=0");
            assert_eq!(cr3.pcid, 0, "PCID bits set with CR4.PCIDE=0");
            self.entries &= slot_mask(GLOBAL_SLOT);
            self.psc = 0;
        }
        self.cr3 = cr3;
    }

    /// INVLPG: the entries for `va` of the current PCID, the global entries for `va` (whatever
    /// PCID they were filled under), and every paging-structure cache of the current PCID.
    pub(super) fn invlpg(&mut self, va: Va) {
        let cur = slot(self.current_tag());
        self.entries &= !(va_mask(va) & (slot_mask(cur) | slot_mask(GLOBAL_SLOT)));
        self.psc &= !psc_bits(cur);
    }

    /// INVPCID. Types 0 and 1 need PCID 0 when CR4.PCIDE=0.
    pub(super) fn invpcid(&mut self, what: Invpcid) {
        match what {
            Invpcid::Address(pcid, va) => {
                assert!(self.pcide || pcid == 0, "INVPCID type 0 #GP");
                let s = slot(Tag::Pcid(pcid));
                self.entries &= !(va_mask(va) & slot_mask(s));
                // The only cached paging-structure entry is the one above the user page.
                if va == Va::User {
                    self.psc &= !psc_bits(s);
                }
            }
            Invpcid::Single(pcid) => {
                assert!(self.pcide || pcid == 0, "INVPCID type 1 #GP");
                let s = slot(Tag::Pcid(pcid));
                self.entries &= !slot_mask(s);
                self.psc &= !psc_bits(s);
            }
            Invpcid::AllIncludingGlobal => {
                self.entries = 0;
                self.psc = 0;
            }
            Invpcid::AllNonGlobal => {
                self.entries &= slot_mask(GLOBAL_SLOT);
                self.psc = 0;
            }
        }
    }

    /// Two MOVs to CR4 that clear and set CR4.PGE: every entry of every PCID, global ones
    /// included, and every paging-structure cache.
    pub(super) fn toggle_pge(&mut self) {
        self.entries = 0;
        self.psc = 0;
    }

    /// INIT and the startup code up to the first CR3 write (head_64.S: CR3 loaded with PCIDE
    /// still clear, then the CR4.PGE toggle at `common_startup_64`): empty caches, CR3 = `cr3`.
    pub(super) fn restart(&mut self, cr3: Cr3) {
        self.toggle_pge();
        self.cr3 = cr3;
    }

    /// Caches everything a walk from the current root can find: every present PTE (global
    /// ones as global entries) and, if the walk passes there, the PDE above A's PTE table.
    pub(super) fn fill(&mut self, walk: &Walk) {
        let cur = slot(self.current_tag());
        self.entries |= SPREAD[usize::from(walk.local)] << (cur * SLOT_BITS)
            | SPREAD[usize::from(walk.global)] << (GLOBAL_SLOT * SLOT_BITS);
        if walk.user_table {
            self.psc |= 1 << (2 * cur);
        }
    }

    /// The bits of the entries the CPU may use now (see [`Tlb::usable`]), for quick tests
    /// with [`pte_bits`] and [`STALE_BITS`].
    pub(super) fn usable_bits(&self) -> u128 {
        self.entries & (slot_mask(slot(self.current_tag())) | slot_mask(GLOBAL_SLOT))
    }

    /// `pte` changed: every entry read from it is now stale.
    pub(super) fn pte_changed(&mut self, pte: Pte) {
        let fresh = self.entries & FRESH[pte as usize];
        self.entries = (self.entries & !fresh) | (fresh << 1);
    }

    /// Drops each fresh entry that has a stale twin (same tag, same PTE), and the same for the
    /// cached pointer to A's PTE table. This changes nothing that can be observed later: every
    /// invalidation above removes both or neither, [`Tlb::pte_changed`] turns the fresh one
    /// into a second stale one, and every invariant that a fresh entry can break, a stale
    /// entry of the same tag and PTE breaks too. The exhaustive driver calls it so that states
    /// that differ only there compare equal.
    pub(super) fn drop_shadowed(&mut self) {
        self.entries &= !((self.entries & STALE_BITS) >> 1);
        self.psc &= !((self.psc & 0xaaaa) >> 1);
    }

    /// A's PTE table was freed: every cached pointer to it is now stale.
    pub(super) fn user_table_freed(&mut self) {
        let fresh = self.psc & 0x5555;
        self.psc = (self.psc & !fresh) | (fresh << 1);
    }

    /// Every entry in the TLB.
    pub(super) fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..SLOTS).flat_map(move |s| {
            Pte::ALL.into_iter().flat_map(move |pte| {
                [false, true]
                    .into_iter()
                    .filter(move |&stale| self.entries & entry_bit(s, pte, stale) != 0)
                    .map(move |stale| Entry {
                        tag: slot_tag(s),
                        pte,
                        stale,
                    })
            })
        })
    }

    /// The entries the CPU may use now: those of the current PCID and the global ones.
    pub(super) fn usable(&self) -> impl Iterator<Item = Entry> + '_ {
        let cur = self.current_tag();
        self.entries()
            .filter(move |e| e.tag == cur || e.tag == Tag::Global)
    }

    /// The cached pointers to A's PTE table the CPU may use now: `Some(stale)`, stale first,
    /// or `None`.
    pub(super) fn usable_user_table(&self) -> Option<bool> {
        let s = slot(self.current_tag());
        match (self.psc >> (2 * s)) & 0b11 {
            0 => None,
            0b01 => Some(false),
            _ => Some(true),
        }
    }

    /// Whether a cached pointer to A's PTE table exists under `tag` (any age).
    pub(super) fn has_user_table(&self, tag: Tag) -> bool {
        tag != Tag::Global && self.psc & psc_bits(slot(tag)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const A1: Cr3 = Cr3 {
        root: Root::AFull,
        pcid: 1,
    };
    const B2: Cr3 = Cr3 {
        root: Root::BFull,
        pcid: 2,
    };
    const A1_NS: Cr3 = Cr3 {
        root: Root::ANs,
        pcid: 1 | ASI_PCID_BIT,
    };

    /// A's full space with a non-global direct map and a global vmalloc alias.
    fn walk_a() -> Walk {
        let mut w = Walk::default();
        w.map(Pte::User, false);
        w.map(Pte::Dm, false);
        w.map(Pte::Vmalloc, true);
        w.user_table = true;
        w
    }

    fn has(t: &Tlb, tag: Tag, pte: Pte) -> bool {
        t.entries().any(|e| e.tag == tag && e.pte == pte)
    }

    fn filled() -> Tlb {
        let mut t = Tlb::new(A1, true);
        t.fill(&walk_a());
        t
    }

    #[test]
    fn fill_tags_non_global_entries_with_the_current_pcid() {
        let t = filled();
        assert!(has(&t, Tag::Pcid(1), Pte::User));
        assert!(has(&t, Tag::Pcid(1), Pte::Dm));
        assert!(has(&t, Tag::Global, Pte::Vmalloc));
        assert!(!has(&t, Tag::Pcid(1), Pte::Vmalloc));
        assert!(t.has_user_table(Tag::Pcid(1)));
        let mut off = Tlb::new(Cr3 { pcid: 0, ..A1 }, false);
        off.fill(&walk_a());
        assert!(has(&off, Tag::Pcid(0), Pte::User));
    }

    #[test]
    fn noflush_keeps_the_entries_of_the_new_pcid() {
        let mut t = filled();
        t.write_cr3(B2, false);
        assert!(has(&t, Tag::Pcid(1), Pte::User), "other PCIDs are kept");
        t.write_cr3(A1, true);
        assert!(has(&t, Tag::Pcid(1), Pte::User));
        assert!(t.has_user_table(Tag::Pcid(1)));
        assert_eq!(t.usable().filter(|e| e.pte == Pte::User).count(), 1);
    }

    #[test]
    fn cr3_write_without_noflush_flushes_only_the_new_pcid() {
        let mut t = filled();
        t.write_cr3(B2, false);
        let mut w = Walk::default();
        w.map(Pte::Dm, false);
        w.map(Pte::Vmalloc, true);
        t.fill(&w);
        t.write_cr3(A1, false);
        assert!(!has(&t, Tag::Pcid(1), Pte::User));
        assert!(!has(&t, Tag::Pcid(1), Pte::Dm));
        assert!(!t.has_user_table(Tag::Pcid(1)));
        assert!(has(&t, Tag::Pcid(2), Pte::Dm), "the old PCID is kept");
        assert!(
            has(&t, Tag::Global, Pte::Vmalloc),
            "global entries are kept"
        );
    }

    #[test]
    fn cr3_write_without_pcide_flushes_all_non_global_entries() {
        let mut t = Tlb::new(Cr3 { pcid: 0, ..A1 }, false);
        t.fill(&walk_a());
        t.write_cr3(
            Cr3 {
                root: Root::ANs,
                pcid: 0,
            },
            false,
        );
        let left: Vec<Entry> = t.entries().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].tag, Tag::Global);
        assert_eq!(t.usable_user_table(), None);
    }

    #[test]
    #[should_panic(expected = "CR4.PCIDE=0")]
    fn noflush_without_pcide_is_a_bug() {
        let mut t = Tlb::new(Cr3 { pcid: 0, ..A1 }, false);
        t.write_cr3(Cr3 { pcid: 0, ..A1 }, true);
    }

    #[test]
    fn invlpg_hits_globals_in_all_pcids_but_non_globals_only_in_the_current_one() {
        let mut t = filled();
        t.write_cr3(B2, false);
        t.fill(&walk_a());
        t.invlpg(Va::Vmalloc);
        assert!(!has(&t, Tag::Global, Pte::Vmalloc));
        t.invlpg(Va::Dm);
        assert!(!has(&t, Tag::Pcid(2), Pte::Dm));
        assert!(has(&t, Tag::Pcid(1), Pte::Dm), "B1: another PCID keeps it");
        // INVLPG drops every paging-structure cache of the current PCID, whatever the VA.
        assert!(!t.has_user_table(Tag::Pcid(2)));
        assert!(t.has_user_table(Tag::Pcid(1)));
        assert!(has(&t, Tag::Pcid(2), Pte::User), "other VAs are kept");
    }

    #[test]
    fn invpcid_types() {
        let base = {
            let mut t = filled();
            t.write_cr3(A1_NS, false);
            t.fill(&walk_a());
            t
        };
        let mut t = base;
        t.invpcid(Invpcid::Address(1, Va::User));
        assert!(!has(&t, Tag::Pcid(1), Pte::User));
        assert!(has(&t, Tag::Pcid(1), Pte::Dm));
        assert!(!t.has_user_table(Tag::Pcid(1)));
        assert!(has(&t, Tag::Pcid(1 | ASI_PCID_BIT), Pte::User));
        let mut t = base;
        t.invpcid(Invpcid::Address(1, Va::Vmalloc));
        assert!(has(&t, Tag::Global, Pte::Vmalloc), "type 0 keeps globals");
        assert!(
            t.has_user_table(Tag::Pcid(1)),
            "and other addresses' structures"
        );
        let mut t = base;
        t.invpcid(Invpcid::Single(1 | ASI_PCID_BIT));
        assert!(!t.entries().any(|e| e.tag == Tag::Pcid(1 | ASI_PCID_BIT)));
        assert!(has(&t, Tag::Pcid(1), Pte::User));
        assert!(has(&t, Tag::Global, Pte::Vmalloc), "type 1 keeps globals");
        let mut t = base;
        t.invpcid(Invpcid::AllNonGlobal);
        assert_eq!(t.entries().count(), 1);
        assert!(has(&t, Tag::Global, Pte::Vmalloc));
        assert!(!t.has_user_table(Tag::Pcid(1)));
        let mut t = base;
        t.invpcid(Invpcid::AllIncludingGlobal);
        assert_eq!(t.entries().count(), 0);
        assert_eq!(t.usable_user_table(), None);
    }

    #[test]
    fn pge_toggle_flushes_everything() {
        let mut t = filled();
        t.write_cr3(B2, true);
        t.fill(&walk_a());
        t.toggle_pge();
        assert_eq!(t.entries().count(), 0);
        assert!(!t.has_user_table(Tag::Pcid(1)));
        assert!(!t.has_user_table(Tag::Pcid(2)));
    }

    #[test]
    fn changes_make_entries_stale_and_refills_add_fresh_ones() {
        let mut t = filled();
        t.pte_changed(Pte::User);
        t.user_table_freed();
        assert!(t
            .usable()
            .any(|e| e.pte == Pte::User && e.stale && e.tag == Tag::Pcid(1)));
        assert_eq!(t.usable_user_table(), Some(true));
        t.fill(&walk_a());
        let users = t.usable().filter(|e| e.pte == Pte::User).count();
        assert_eq!(users, 2, "old and new translation side by side");
        t.invlpg(Va::User);
        assert_eq!(t.usable().filter(|e| e.pte == Pte::User).count(), 0);
        assert_eq!(t.usable_user_table(), None);
    }

    #[test]
    fn global_entries_are_usable_in_every_pcid() {
        let mut t = filled();
        t.write_cr3(A1_NS, false);
        assert!(t.usable().any(|e| e.pte == Pte::Vmalloc));
        assert!(!t.usable().any(|e| e.pte == Pte::User));
    }
}
