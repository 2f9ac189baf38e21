// SPDX-License-Identifier: GPL-2.0

//! CR3 values of the sensitive and nonsensitive kernel address spaces.
//!
//! A CR3 value holds the physical address of the top-level page table (bits 12..51), the
//! linear-address-masking mode (bits 61 and 62) and, with `CR4.PCIDE` set, a 12-bit PCID in the
//! low bits that tags the TLB entries created under it. Bit 63 asks the CPU to keep the TLB
//! entries of the new PCID on the write.
//!
//! With AMD's memory encryption (SME, or SEV in a guest) one bit of the address field, the
//! C-bit, is not an address bit: the kernel sets it in every CR3 (`__sme_pa()` in `build_cr3()`)
//! so that the CPU reads the page tables as encrypted, and masks it off to get the address back
//! (`CR3_ADDR_MASK`). [`Cr3Encoder`] knows the bit as `sme_me_mask`.
//!
//! The kernel hands out a few dynamic ASIDs per CPU and derives the PCID from the ASID (see
//! `kern_pcid()` in `arch/x86/mm/tlb.c`): PCID = ASID + 1, so PCID 0 stays unused. PTI takes the
//! top PCID bit for the user copy of each address space. ASI takes the next free bit below the
//! ones already taken for the nonsensitive copy, so that the kernel's two views of one ASID never
//! share TLB entries. Every bit taken halves the ASID space, which is what [`PcidLayout`]
//! computes.
//!
//! This file only uses `core`: it is built into the kernel and, unchanged, into the host test
//! crate, where `cargo test` runs the tests at the bottom.

/// Number of PCID bits in CR3.
pub(crate) const PCID_BITS: u32 = 12;
/// Mask of the PCID field of CR3.
pub(crate) const PCID_MASK: u64 = (1 << PCID_BITS) - 1;
/// Mask of the page-table address field of CR3 (bits 12..51), memory-encryption bit included.
pub(crate) const ADDR_MASK: u64 = ((1 << 52) - 1) & !PCID_MASK;
/// LAM_U57: mask bits 62:57 of user pointers.
pub(crate) const LAM_U57: u64 = 1 << 61;
/// LAM_U48: mask bits 62:48 of user pointers.
pub(crate) const LAM_U48: u64 = 1 << 62;
/// Both LAM bits.
pub(crate) const LAM_MASK: u64 = LAM_U57 | LAM_U48;
/// Keep the TLB entries of the new PCID when writing CR3.
pub(crate) const NOFLUSH: u64 = 1 << 63;

/// Why a CR3 value could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cr3Error {
    /// The page-table address is not 4 KiB aligned.
    Misaligned,
    /// The page-table address does not fit in 52 bits.
    AddressTooHigh,
    /// The PCID does not fit in 12 bits, or is not 0 while PCIDs are off.
    BadPcid,
    /// The LAM argument has bits other than the two LAM bits.
    BadLam,
    /// The ASID is beyond what the PCID layout leaves for ASIDs.
    BadAsid,
    /// The layout has no bit for the requested address space.
    NoSuchSpace,
}

/// The kernel's address spaces that a PCID can belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Space {
    /// The full kernel address space.
    Sensitive,
    /// The ASI address space, without user data.
    Nonsensitive,
    /// The PTI user address space.
    User,
}

/// How the 12 PCID bits are split between the ASID and the per-space tag bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PcidLayout {
    pti: bool,
    asi: bool,
}

impl PcidLayout {
    /// A layout with a tag bit for PTI's user space if `pti`, and one for ASI if `asi`.
    pub(crate) const fn new(pti: bool, asi: bool) -> Self {
        Self { pti, asi }
    }

    /// Number of PCID bits left for the ASID.
    pub(crate) const fn asid_bits(self) -> u32 {
        PCID_BITS - self.pti as u32 - self.asi as u32
    }

    /// The largest ASID, as `MAX_ASID_AVAILABLE` in `arch/x86/mm/tlb.c`: ASIDs count from 0 and
    /// PCID = ASID + 1 must fit in the ASID bits, PCID 0 being kept for code that knows nothing
    /// of PCIDs.
    pub(crate) const fn max_asid(self) -> u16 {
        ((1u32 << self.asid_bits()) - 2) as u16
    }

    /// The tag bit of PTI's user PCIDs, if the layout has one.
    pub(crate) const fn user_bit(self) -> Option<u32> {
        if self.pti {
            Some(PCID_BITS - 1)
        } else {
            None
        }
    }

    /// The tag bit of ASI's nonsensitive PCIDs, if the layout has one.
    pub(crate) const fn asi_bit(self) -> Option<u32> {
        if self.asi {
            Some(PCID_BITS - 1 - self.pti as u32)
        } else {
            None
        }
    }

    /// The PCID of `asid` in the sensitive kernel address space.
    pub(crate) fn kern_pcid(self, asid: u16) -> Result<u16, Cr3Error> {
        if asid > self.max_asid() {
            return Err(Cr3Error::BadAsid);
        }
        // Cannot overflow: max_asid() + 1 < 1 << PCID_BITS.
        Ok(asid + 1)
    }

    /// The PCID of `asid` in `space`.
    pub(crate) fn pcid(self, space: Space, asid: u16) -> Result<u16, Cr3Error> {
        let kern = self.kern_pcid(asid)?;
        let tag = match space {
            Space::Sensitive => return Ok(kern),
            Space::Nonsensitive => self.asi_bit(),
            Space::User => self.user_bit(),
        };
        match tag {
            Some(bit) => Ok(kern | (1 << bit)),
            None => Err(Cr3Error::NoSuchSpace),
        }
    }

    /// The space and ASID a PCID was made for, or `None` if no ASID of this layout maps to it.
    pub(crate) fn decode(self, pcid: u16) -> Option<(Space, u16)> {
        let mut rest = pcid;
        let mut space = Space::Sensitive;
        if let Some(bit) = self.user_bit() {
            if rest & (1 << bit) != 0 {
                rest &= !(1 << bit);
                space = Space::User;
            }
        }
        if let Some(bit) = self.asi_bit() {
            if rest & (1 << bit) != 0 {
                if space != Space::Sensitive {
                    return None;
                }
                rest &= !(1 << bit);
                space = Space::Nonsensitive;
            }
        }
        let asid = rest.checked_sub(1)?;
        if asid > self.max_asid() {
            return None;
        }
        Some((space, asid))
    }
}

/// A CR3 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cr3(u64);

impl Cr3 {
    /// Builds a CR3 value from a page-table address, a PCID and LAM bits.
    pub(crate) fn new(pgd_pa: u64, pcid: u16, lam: u64) -> Result<Self, Cr3Error> {
        if pgd_pa & PCID_MASK != 0 {
            return Err(Cr3Error::Misaligned);
        }
        if pgd_pa & !ADDR_MASK != 0 {
            return Err(Cr3Error::AddressTooHigh);
        }
        if u64::from(pcid) & !PCID_MASK != 0 {
            return Err(Cr3Error::BadPcid);
        }
        if lam & !LAM_MASK != 0 {
            return Err(Cr3Error::BadLam);
        }
        Ok(Self(pgd_pa | u64::from(pcid) | lam))
    }

    /// Interprets a raw value, for example one read back from the CPU.
    pub(crate) const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value, as written to the register.
    pub(crate) const fn bits(self) -> u64 {
        self.0
    }

    /// The page-table address field: the physical address of the top-level page table, and
    /// the memory-encryption bit if the kernel uses one (see [`Cr3Encoder::pgd_pa`]).
    pub(crate) const fn pgd_pa(self) -> u64 {
        self.0 & ADDR_MASK
    }

    /// The PCID field.
    pub(crate) const fn pcid(self) -> u16 {
        (self.0 & PCID_MASK) as u16
    }

    /// The LAM bits.
    pub(crate) const fn lam(self) -> u64 {
        self.0 & LAM_MASK
    }

    /// Whether the write keeps the TLB entries of the PCID.
    pub(crate) const fn noflush(self) -> bool {
        self.0 & NOFLUSH != 0
    }

    /// The same value with the no-flush bit set.
    pub(crate) const fn with_noflush(self) -> Self {
        Self(self.0 | NOFLUSH)
    }

    /// The same value with the no-flush bit clear, as the CPU reads it back.
    pub(crate) const fn without_noflush(self) -> Self {
        Self(self.0 & !NOFLUSH)
    }
}

/// How this kernel forms CR3 values: whether PCIDs are in use, how the PCID bits are split, and
/// which bit of the address field means "encrypted".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cr3Encoder {
    pcid: bool,
    layout: PcidLayout,
    me_mask: u64,
}

impl Cr3Encoder {
    /// An encoder for a CPU with (`pcid`) or without PCIDs, with the given layout. `me_mask` is
    /// the kernel's `sme_me_mask`: the C-bit of memory encryption, 0 without it.
    pub(crate) const fn new(pcid: bool, layout: PcidLayout, me_mask: u64) -> Self {
        Self {
            pcid,
            layout,
            me_mask,
        }
    }

    /// The bits of CR3 that hold the page-table address, as `CR3_ADDR_MASK`: the address
    /// field without the memory-encryption bit.
    pub(crate) const fn addr_mask(self) -> u64 {
        ADDR_MASK & !self.me_mask
    }

    /// The physical address of the top-level page table of `cr3`, as `read_cr3_pa()`.
    pub(crate) const fn pgd_pa(self, cr3: Cr3) -> u64 {
        cr3.bits() & self.addr_mask()
    }

    /// The CR3 for the page table at `pgd_pa` running as `asid` in `space`, with the
    /// memory-encryption bit set as in every CR3 the kernel builds.
    ///
    /// Without PCIDs only ASID 0 exists and the PCID field is 0 for every space: the spaces then
    /// differ only in their page tables, and every write of CR3 flushes the TLB.
    pub(crate) fn encode(
        self,
        space: Space,
        pgd_pa: u64,
        asid: u16,
        lam: u64,
    ) -> Result<Cr3, Cr3Error> {
        let pcid = if self.pcid {
            self.layout.pcid(space, asid)?
        } else if asid != 0 {
            return Err(Cr3Error::BadAsid);
        } else {
            0
        };
        // Memory encryption takes the C-bit away from physical addresses.
        if pgd_pa & self.me_mask != 0 {
            return Err(Cr3Error::AddressTooHigh);
        }
        Cr3::new(pgd_pa | self.me_mask, pcid, lam)
    }

    /// The sensitive-space CR3, as `build_cr3()` in `arch/x86/mm/tlb.c` makes it.
    pub(crate) fn sensitive(self, pgd_pa: u64, asid: u16, lam: u64) -> Result<Cr3, Cr3Error> {
        self.encode(Space::Sensitive, pgd_pa, asid, lam)
    }

    /// The nonsensitive-space CR3 that goes with the sensitive CR3 `sensitive`.
    ///
    /// The nonsensitive space keeps the ASID and the LAM mode and swaps the page table for
    /// `asi_pgd_pa`, with the memory-encryption bit that the sensitive CR3 has too (`asi_cr3()`
    /// keeps it). With PCIDs, the write may keep TLB entries (`noflush`) because the
    /// nonsensitive PCID tags only nonsensitive translations.
    pub(crate) fn nonsensitive(
        self,
        sensitive: Cr3,
        asi_pgd_pa: u64,
        noflush: bool,
    ) -> Result<Cr3, Cr3Error> {
        let asid = if self.pcid {
            match self.layout.decode(sensitive.pcid()) {
                Some((Space::Sensitive, asid)) => asid,
                _ => return Err(Cr3Error::BadPcid),
            }
        } else {
            0
        };
        let cr3 = self.encode(Space::Nonsensitive, asi_pgd_pa, asid, sensitive.lam())?;
        Ok(if noflush && self.pcid {
            cr3.with_noflush()
        } else {
            cr3
        })
    }

    /// The space a CR3 value belongs to, judged by its PCID. Without PCIDs the PCID says nothing
    /// and the answer is `None`, as it is for a PCID no ASID maps to.
    pub(crate) fn space_of(self, cr3: Cr3) -> Option<Space> {
        if !self.pcid {
            return None;
        }
        self.layout.decode(cr3.pcid()).map(|(space, _)| space)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUTS: [PcidLayout; 4] = [
        PcidLayout::new(false, false),
        PcidLayout::new(true, false),
        PcidLayout::new(false, true),
        PcidLayout::new(true, true),
    ];

    #[test]
    fn max_asid_matches_tlb_c() {
        // MAX_ASID_AVAILABLE = (1 << (12 - PTI_CONSUMED_PCID_BITS)) - 2.
        assert_eq!(PcidLayout::new(false, false).max_asid(), 4094);
        assert_eq!(PcidLayout::new(true, false).max_asid(), 2046);
        assert_eq!(PcidLayout::new(false, true).max_asid(), 2046);
        assert_eq!(PcidLayout::new(true, true).max_asid(), 1022);
    }

    #[test]
    fn tag_bits() {
        assert_eq!(PcidLayout::new(true, true).user_bit(), Some(11));
        assert_eq!(PcidLayout::new(true, true).asi_bit(), Some(10));
        assert_eq!(PcidLayout::new(false, true).asi_bit(), Some(11));
        assert_eq!(PcidLayout::new(true, false).asi_bit(), None);
        assert_eq!(PcidLayout::new(false, true).user_bit(), None);
    }

    #[test]
    fn kern_pcid_is_asid_plus_one() {
        let l = PcidLayout::new(true, true);
        assert_eq!(l.kern_pcid(0), Ok(1));
        assert_eq!(l.kern_pcid(5), Ok(6));
        assert_eq!(l.kern_pcid(l.max_asid()), Ok(l.max_asid() + 1));
        assert_eq!(l.kern_pcid(l.max_asid() + 1), Err(Cr3Error::BadAsid));
    }

    #[test]
    fn pcids_of_all_spaces_are_distinct_and_decode() {
        for layout in LAYOUTS {
            let mut seen = std::vec![false; 1 << PCID_BITS];
            for asid in 0..=layout.max_asid() {
                for space in [Space::Sensitive, Space::Nonsensitive, Space::User] {
                    let Ok(pcid) = layout.pcid(space, asid) else {
                        continue;
                    };
                    assert!(u64::from(pcid) <= PCID_MASK, "{layout:?} {space:?} {asid}");
                    assert_ne!(pcid, 0, "PCID 0 must stay unused");
                    assert!(
                        !seen[usize::from(pcid)],
                        "{layout:?}: PCID {pcid} used twice"
                    );
                    seen[usize::from(pcid)] = true;
                    assert_eq!(layout.decode(pcid), Some((space, asid)));
                }
            }
        }
    }

    #[test]
    fn missing_spaces_are_refused() {
        assert_eq!(
            PcidLayout::new(true, false).pcid(Space::Nonsensitive, 0),
            Err(Cr3Error::NoSuchSpace)
        );
        assert_eq!(
            PcidLayout::new(false, true).pcid(Space::User, 0),
            Err(Cr3Error::NoSuchSpace)
        );
    }

    #[test]
    fn decode_rejects_unused_pcids() {
        let l = PcidLayout::new(true, true);
        assert_eq!(l.decode(0), None);
        assert_eq!(l.decode(1 << 11), None);
        // Both tag bits at once is no space.
        assert_eq!(l.decode((1 << 11) | (1 << 10) | 1), None);
        // A tag bit with an empty ASID field is no space either.
        assert_eq!(l.decode(1 << 10), None);
        // The all-ones ASID field is the largest ASID.
        assert_eq!(
            l.decode((1 << 10) - 1),
            Some((Space::Sensitive, l.max_asid()))
        );
    }

    #[test]
    fn cr3_fields_round_trip() {
        let cr3 = Cr3::new(0x1234_5000, 0x7ff, LAM_U57).unwrap();
        assert_eq!(cr3.pgd_pa(), 0x1234_5000);
        assert_eq!(cr3.pcid(), 0x7ff);
        assert_eq!(cr3.lam(), LAM_U57);
        assert!(!cr3.noflush());
        assert!(cr3.with_noflush().noflush());
        assert_eq!(cr3.with_noflush().without_noflush(), cr3);
        assert_eq!(Cr3::from_raw(cr3.bits()), cr3);
    }

    #[test]
    fn cr3_rejects_bad_fields() {
        assert_eq!(Cr3::new(0x1001, 0, 0), Err(Cr3Error::Misaligned));
        assert_eq!(Cr3::new(1 << 52, 0, 0), Err(Cr3Error::AddressTooHigh));
        assert_eq!(Cr3::new(0x1000, 0x1000, 0), Err(Cr3Error::BadPcid));
        assert_eq!(Cr3::new(0x1000, 0, 1 << 60), Err(Cr3Error::BadLam));
        assert_eq!(Cr3::new(0x1000, 0, NOFLUSH), Err(Cr3Error::BadLam));
    }

    #[test]
    fn without_pcid_only_asid_zero_and_pcid_zero() {
        let enc = Cr3Encoder::new(false, PcidLayout::new(true, true), 0);
        let cr3 = enc.sensitive(0x10_0000, 0, 0).unwrap();
        assert_eq!(cr3.bits(), 0x10_0000);
        assert_eq!(enc.sensitive(0x10_0000, 1, 0), Err(Cr3Error::BadAsid));
        let ns = enc.nonsensitive(cr3, 0x20_0000, true).unwrap();
        // No PCID, so no tag and no NOFLUSH: the space is told by the page table alone.
        assert_eq!(ns.bits(), 0x20_0000);
        assert_eq!(enc.space_of(ns), None);
    }

    #[test]
    fn nonsensitive_keeps_asid_and_lam() {
        let enc = Cr3Encoder::new(true, PcidLayout::new(true, true), 0);
        let sensitive = enc.sensitive(0x10_0000, 3, LAM_U48).unwrap();
        assert_eq!(sensitive.pcid(), 4);
        let ns = enc.nonsensitive(sensitive, 0x20_0000, false).unwrap();
        assert_eq!(ns.pgd_pa(), 0x20_0000);
        assert_eq!(ns.pcid(), 4 | (1 << 10));
        assert_eq!(ns.lam(), LAM_U48);
        assert!(!ns.noflush());
        assert!(enc
            .nonsensitive(sensitive, 0x20_0000, true)
            .unwrap()
            .noflush());
        assert_eq!(enc.space_of(sensitive), Some(Space::Sensitive));
        assert_eq!(enc.space_of(ns), Some(Space::Nonsensitive));
    }

    /// The C-bit of an SME host: CPUID 0x8000001f EBX[5:0] puts it at 47 on most EPYC parts,
    /// at 51 on others.
    const C_BITS: [u64; 2] = [1 << 47, 1 << 51];

    #[test]
    fn sme_c_bit_is_in_every_cr3_and_out_of_the_address() {
        for c_bit in C_BITS {
            for pcid in [false, true] {
                let enc = Cr3Encoder::new(pcid, PcidLayout::new(true, true), c_bit);
                assert_eq!(enc.addr_mask(), ADDR_MASK & !c_bit);
                let asid = u16::from(pcid) * 3;
                let sensitive = enc.sensitive(0x10_0000, asid, LAM_U57).unwrap();
                // build_cr3(): __sme_pa(pgd) | lam | kern_pcid(asid).
                let kern_pcid = u64::from(pcid) * 4;
                assert_eq!(sensitive.bits(), 0x10_0000 | c_bit | LAM_U57 | kern_pcid);
                assert_eq!(enc.pgd_pa(sensitive), 0x10_0000);
                assert_eq!(sensitive.pgd_pa(), 0x10_0000 | c_bit);
                // asi_cr3(): what the full CR3 has outside CR3_ADDR_MASK (C-bit, LAM, PCID), the
                // nonsensitive table and, with PCIDs, ASI's PCID bit.
                let ns = enc.nonsensitive(sensitive, 0x20_0000, false).unwrap();
                let asi_bit = u64::from(pcid) << 10;
                assert_eq!(
                    ns.bits(),
                    (sensitive.bits() & !enc.addr_mask()) | 0x20_0000 | asi_bit
                );
                assert_eq!(enc.pgd_pa(ns), 0x20_0000);
                assert_eq!(enc.space_of(ns), pcid.then_some(Space::Nonsensitive));
            }
            // A physical address never has the C-bit: SME takes that bit away from addresses.
            let enc = Cr3Encoder::new(false, PcidLayout::new(false, false), c_bit);
            assert_eq!(
                enc.sensitive(c_bit | 0x1000, 0, 0),
                Err(Cr3Error::AddressTooHigh)
            );
        }
    }

    #[test]
    fn encoder_without_the_c_bit_mismatches_an_sme_cr3() {
        // What the CPU runs with on an SME host, ASID 3 with PTI's and ASI's PCID bits.
        let cpu = Cr3::from_raw(0x10_0000 | (1 << 47) | 4);
        let layout = PcidLayout::new(true, true);
        assert_eq!(
            Cr3Encoder::new(true, layout, 1 << 47).sensitive(0x10_0000, 3, 0),
            Ok(cpu)
        );
        // The encoder that ignored the bit reported `cr3_encoding: mismatch` there.
        assert_ne!(
            Cr3Encoder::new(true, layout, 0).sensitive(0x10_0000, 3, 0),
            Ok(cpu)
        );
        // Without memory encryption the address mask is the whole field.
        assert_eq!(Cr3Encoder::new(true, layout, 0).addr_mask(), ADDR_MASK);
    }

    #[test]
    fn nonsensitive_needs_a_sensitive_start() {
        let enc = Cr3Encoder::new(true, PcidLayout::new(true, true), 0);
        let user = enc.encode(Space::User, 0x10_0000, 1, 0).unwrap();
        assert_eq!(
            enc.nonsensitive(user, 0x20_0000, false),
            Err(Cr3Error::BadPcid)
        );
        let no_asi = Cr3Encoder::new(true, PcidLayout::new(true, false), 0);
        let cr3 = no_asi.sensitive(0x10_0000, 1, 0).unwrap();
        assert_eq!(
            no_asi.nonsensitive(cr3, 0x20_0000, false),
            Err(Cr3Error::NoSuchSpace)
        );
    }
}
