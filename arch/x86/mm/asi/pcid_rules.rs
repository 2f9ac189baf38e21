// SPDX-License-Identifier: GPL-2.0

//! The rules that keep both PCIDs of every ASID coherent.
//!
//! With PCIDs, each dynamic ASID of tlb.c has two PCIDs: the full one, which tlb.c knows, and
//! its nonsensitive twin. Per CPU and per ASID, ASI marks a PCID that may hold entries a flush
//! since missed (`stale_full` and `stale_ns` of `struct asi_cpu_state` in `asi.c`). This module
//! decides, for each event, the marks after it and whether a CR3 write may keep the PCID's
//! entries (CR3_NOFLUSH):
//!
//! - R1: a flush of the current PCID only (INVLPG, or a CR3 rewrite) marks the other PCID;
//! - R2: tlb.c loading the ASID with a flush (a new or outdated mm) marks both;
//! - R4: a CR3 write that loads one of the PCIDs uses CR3_NOFLUSH only if the PCID is unmarked
//!   and the write wanted CR3_NOFLUSH anyway; the write consumes the mark, since it flushes the
//!   PCID whenever the mark was set.
//!
//! (R3 and R5, `invalidate_other` and `flush_tlb_all()` for a page that becomes sensitive, are
//! tlb.c's and the allocator's and involve no marks.)
//!
//! The module uses only `core`: the host model of the TLB (`host/tlbmodel`) runs these rules in
//! its exhaustive check, and the kernel's CR3 writes follow the same rules. Those writes are
//! noinstr C, which cannot call Rust, so the kernel crate exports [`TABLE`], the decisions of
//! [`step`] for every event and every state, computed at compile time, and C looks them up and
//! applies them to the per-CPU masks (`asi_pcid_rule()`), as the host model does with its own.

/// The marks of one ASID on one CPU: whether its full and its nonsensitive PCID may be stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    /// The full PCID may hold entries a flush missed.
    pub(crate) full: bool,
    /// The nonsensitive PCID may hold entries a flush missed.
    pub(crate) ns: bool,
}

/// An event that changes the marks of an ASID or asks for a decision.
///
/// The discriminants are the first index of [`TABLE`] and the values of C's
/// `enum asi_pcid_event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Event {
    /// R1: a flush of the current PCID only, on the full tables.
    LocalFlushFull = 0,
    /// R1: a flush of the current PCID only, on the nonsensitive tables.
    LocalFlushNs = 1,
    /// R2: tlb.c loads the ASID with a flush.
    NewAsid = 2,
    /// R4: a CR3 write loads the full PCID and did not want CR3_NOFLUSH.
    LoadFull = 3,
    /// R4: a CR3 write loads the full PCID and wanted CR3_NOFLUSH.
    LoadFullKeep = 4,
    /// R4: a CR3 write loads the nonsensitive PCID and did not want CR3_NOFLUSH.
    LoadNs = 5,
    /// R4: a CR3 write loads the nonsensitive PCID and wanted CR3_NOFLUSH.
    LoadNsKeep = 6,
}

/// The number of [`Event`]s.
pub(crate) const NR_EVENTS: usize = 7;

/// Every event, in the order of its discriminant.
pub(crate) const EVENTS: [Event; NR_EVENTS] = [
    Event::LocalFlushFull,
    Event::LocalFlushNs,
    Event::NewAsid,
    Event::LoadFull,
    Event::LoadFullKeep,
    Event::LoadNs,
    Event::LoadNsKeep,
];

/// What [`step`] decides: the marks after the event, and for a CR3 write whether it may use
/// CR3_NOFLUSH (always `false` for the other events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The marks after the event.
    pub(crate) marks: Marks,
    /// The CR3 write may keep the PCID's entries.
    pub(crate) noflush: bool,
}

/// The rules R1, R2 and R4 (see the module documentation) for `event` on an ASID whose marks
/// are `m`.
pub(crate) const fn step(event: Event, m: Marks) -> Decision {
    let (marks, noflush) = match event {
        Event::LocalFlushFull => (
            Marks {
                full: m.full,
                ns: true,
            },
            false,
        ),
        Event::LocalFlushNs => (
            Marks {
                full: true,
                ns: m.ns,
            },
            false,
        ),
        Event::NewAsid => (
            Marks {
                full: true,
                ns: true,
            },
            false,
        ),
        Event::LoadFull => (
            Marks {
                full: false,
                ns: m.ns,
            },
            false,
        ),
        Event::LoadFullKeep => (
            Marks {
                full: false,
                ns: m.ns,
            },
            !m.full,
        ),
        Event::LoadNs => (
            Marks {
                full: m.full,
                ns: false,
            },
            false,
        ),
        Event::LoadNsKeep => (
            Marks {
                full: m.full,
                ns: false,
            },
            !m.ns,
        ),
    };
    Decision { marks, noflush }
}

/// Bit of a [`TABLE`] entry (and of its second index): the full PCID is marked.
pub(crate) const FULL: u8 = 1 << 0;
/// Bit of a [`TABLE`] entry (and of its second index): the nonsensitive PCID is marked.
pub(crate) const NS: u8 = 1 << 1;
/// Bit of a [`TABLE`] entry: the CR3 write may use CR3_NOFLUSH.
pub(crate) const NOFLUSH: u8 = 1 << 2;

/// The marks encoded as in [`TABLE`].
const fn encode(m: Marks) -> u8 {
    (if m.full { FULL } else { 0 }) | (if m.ns { NS } else { 0 })
}

/// The decisions of [`step`], `TABLE[event][marks]`, with the marks before and after the event
/// encoded by [`FULL`] and [`NS`], and [`NOFLUSH`] for the answer to a CR3 write.
pub(crate) const TABLE: [[u8; 4]; NR_EVENTS] = {
    let mut t = [[0u8; 4]; NR_EVENTS];
    let mut e = 0;
    while e < NR_EVENTS {
        let mut s = 0;
        while s < 4 {
            let m = Marks {
                full: s as u8 & FULL != 0,
                ns: s as u8 & NS != 0,
            };
            let d = step(EVENTS[e], m);
            t[e][s] = encode(d.marks) | if d.noflush { NOFLUSH } else { 0 };
            s += 1;
        }
        e += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_MARKS: [Marks; 4] = [
        Marks {
            full: false,
            ns: false,
        },
        Marks {
            full: true,
            ns: false,
        },
        Marks {
            full: false,
            ns: true,
        },
        Marks {
            full: true,
            ns: true,
        },
    ];

    #[test]
    fn the_table_is_step() {
        for (e, &event) in EVENTS.iter().enumerate() {
            assert_eq!(event as usize, e);
            for m in ALL_MARKS {
                let d = step(event, m);
                let entry = TABLE[e][usize::from(encode(m))];
                assert_eq!(entry & (FULL | NS), encode(d.marks));
                assert_eq!(entry & NOFLUSH != 0, d.noflush);
            }
        }
    }

    #[test]
    fn a_write_keeps_entries_only_of_a_clean_pcid_that_wanted_it() {
        for m in ALL_MARKS {
            for ns in [false, true] {
                for keep in [false, true] {
                    let event = match (ns, keep) {
                        (false, false) => Event::LoadFull,
                        (false, true) => Event::LoadFullKeep,
                        (true, false) => Event::LoadNs,
                        (true, true) => Event::LoadNsKeep,
                    };
                    let d = step(event, m);
                    let marked = if ns { m.ns } else { m.full };
                    assert_eq!(d.noflush, keep && !marked);
                    // The write flushes the PCID unless it is clean, so its mark is gone; the
                    // twin's stays.
                    assert!(!if ns { d.marks.ns } else { d.marks.full });
                    assert_eq!(
                        if ns { d.marks.full } else { d.marks.ns },
                        if ns { m.full } else { m.ns }
                    );
                }
            }
        }
    }

    #[test]
    fn flushes_mark_what_they_miss() {
        for m in ALL_MARKS {
            // R1: the twin of the flushed PCID, and nothing is unmarked.
            let d = step(Event::LocalFlushFull, m);
            assert_eq!(
                d.marks,
                Marks {
                    full: m.full,
                    ns: true
                }
            );
            let d = step(Event::LocalFlushNs, m);
            assert_eq!(
                d.marks,
                Marks {
                    full: true,
                    ns: m.ns
                }
            );
            // R2: both.
            assert_eq!(
                step(Event::NewAsid, m).marks,
                Marks {
                    full: true,
                    ns: true
                }
            );
        }
    }
}
