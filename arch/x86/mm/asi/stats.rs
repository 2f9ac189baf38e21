// SPDX-License-Identifier: GPL-2.0

//! ASI's statistics and the verifier's report, as `/sys/kernel/debug/asi/` shows them.
//!
//! This file only uses `core`: it is built into the kernel and, unchanged, into the host test
//! crate.

use core::fmt;

/// A snapshot of the counters of the nonsensitive direct map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Whether the nonsensitive tables exist.
    pub(crate) tables: bool,
    /// Pages currently absent from the nonsensitive direct map because they hold user data.
    pub(crate) sensitive_pages: u64,
    /// Pages allocated for user data since the tables exist.
    pub(crate) user_pages_allocated: u64,
    /// Pages made sensitive (unmapped) since boot.
    pub(crate) flips_to_sensitive: u64,
    /// Pages made nonsensitive (zeroed and mapped) since boot.
    pub(crate) flips_to_nonsensitive: u64,
    /// TLB flushes the flips to sensitive caused.
    pub(crate) tlb_flushes: u64,
    /// Pages zeroed before they were mapped again.
    pub(crate) zeroed_pages: u64,
    /// Sensitive allocations failed because the page needed a TLB flush the context could
    /// not do.
    pub(crate) refused: u64,
    /// Page-table pages of the global nonsensitive tables.
    pub(crate) global_table_pages: u64,
    /// Per-mm nonsensitive top-level tables now allocated (one page each).
    pub(crate) ns_pgds: u64,
    /// Per-mm tables created since boot.
    pub(crate) ns_pgds_created: u64,
    /// Per-mm tables that could not be allocated (the fork or exec failed).
    pub(crate) ns_pgd_failures: u64,
}

/// Writes the content of the debugfs `stats` file: one `key: value` pair per line.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tables: {}", if self.tables { "yes" } else { "no" })?;
        writeln!(f, "sensitive_pages: {}", self.sensitive_pages)?;
        writeln!(f, "user_pages_allocated: {}", self.user_pages_allocated)?;
        writeln!(f, "flips_to_sensitive: {}", self.flips_to_sensitive)?;
        writeln!(f, "flips_to_nonsensitive: {}", self.flips_to_nonsensitive)?;
        writeln!(f, "tlb_flushes: {}", self.tlb_flushes)?;
        writeln!(f, "zeroed_pages: {}", self.zeroed_pages)?;
        writeln!(f, "refused_flips: {}", self.refused)?;
        writeln!(f, "global_table_pages: {}", self.global_table_pages)?;
        writeln!(
            f,
            "global_table_bytes: {}",
            self.global_table_pages.saturating_mul(4096)
        )?;
        writeln!(f, "ns_pgds: {}", self.ns_pgds)?;
        writeln!(f, "ns_pgds_created: {}", self.ns_pgds_created)?;
        writeln!(f, "ns_pgd_failures: {}", self.ns_pgd_failures)?;
        writeln!(f, "ns_pgd_bytes: {}", self.ns_pgds.saturating_mul(4096))
    }
}

/// Parses a write to the debugfs `transitions` file: `0`, optionally followed by a newline,
/// resets the counters; anything else is refused.
pub(crate) fn parse_reset(input: &[u8]) -> Result<(), ()> {
    match input {
        b"0" | b"0\n" => Ok(()),
        _ => Err(()),
    }
}

/// Parses a write to the debugfs `page` file: a page frame number in decimal, or in hex with a
/// `0x` prefix, optionally followed by a newline. Anything else is refused.
pub(crate) fn parse_pfn(input: &[u8]) -> Result<u64, ()> {
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    let (digits, radix) = match input.strip_prefix(b"0x") {
        Some(hex) => (hex, 16),
        None => (input, 10),
    };
    let digits = core::str::from_utf8(digits).map_err(|_| ())?;
    // from_str_radix() takes a sign, which a PFN never has.
    if digits.starts_with('+') {
        return Err(());
    }
    u64::from_str_radix(digits, radix).map_err(|_| ())
}

/// The state of one page in ASI's direct map, the debugfs `page` file.
pub(crate) struct PageState {
    /// The page frame.
    pub(crate) pfn: u64,
    /// Whether it holds user data.
    pub(crate) sensitive: bool,
    /// Whether ASI's direct map maps it.
    pub(crate) mapped: bool,
}

impl fmt::Display for PageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pfn: {}", self.pfn)?;
        writeln!(f, "sensitive: {}", u8::from(self.sensitive))?;
        writeln!(f, "mapped: {}", u8::from(self.mapped))
    }
}

/// One line of the debugfs `transitions` file: the total and each CPU's count.
pub(crate) struct CounterLine<'a> {
    /// The counter's name.
    pub(crate) name: &'a str,
    /// `(cpu, count)` for the CPUs to list.
    pub(crate) per_cpu: &'a [(u32, u64)],
}

impl CounterLine<'_> {
    /// Writes the line, with `total` as the sum over all possible CPUs.
    pub(crate) fn write(&self, f: &mut fmt::Formatter<'_>, total: u64) -> fmt::Result {
        write!(f, "{}: {}", self.name, total)?;
        for (i, (cpu, n)) in self.per_cpu.iter().enumerate() {
            write!(f, "{}cpu{}={}", if i == 0 { " (" } else { " " }, cpu, n)?;
        }
        if self.per_cpu.is_empty() {
            writeln!(f)
        } else {
            writeln!(f, ")")
        }
    }
}

/// What the verifier found wrong at one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProblemKind {
    /// A page holding user data is mapped in the nonsensitive tables.
    SensitiveMapped,
    /// Kernel memory the kernel needs at any time (named) is not mapped.
    Unmapped(&'static str),
    /// ASI's direct map maps a page the kernel's does not, or grants more (write, execute).
    ExtraMapping,
    /// A process's mm has no nonsensitive top-level table.
    NsPgdMissing,
    /// An entry of an mm's nonsensitive top-level table differs from the global tables
    /// (kernel half) or from the mm's PGD (user half).
    NsPgdOutOfSync,
    /// The kernel's own direct map has a global entry, whose TLB entries would outlive a
    /// switch to the nonsensitive space.
    GlobalDirectMap,
}

/// One problem: what, where, and the page it concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    /// What is wrong.
    pub(crate) kind: ProblemKind,
    /// The virtual address.
    pub(crate) va: u64,
    /// The page frame, `None` if the kernel does not map `va` either.
    pub(crate) pfn: Option<u64>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ProblemKind::SensitiveMapped => write!(f, "sensitive-mapped")?,
            ProblemKind::Unmapped(what) => write!(f, "unmapped {what}")?,
            ProblemKind::ExtraMapping => write!(f, "extra-mapping")?,
            ProblemKind::NsPgdMissing => write!(f, "ns-pgd-missing")?,
            ProblemKind::NsPgdOutOfSync => write!(f, "ns-pgd-out-of-sync")?,
            ProblemKind::GlobalDirectMap => write!(f, "global-direct-map")?,
        }
        write!(f, " va=0x{:x}", self.va)?;
        match self.pfn {
            Some(pfn) => write!(f, " pfn=0x{pfn:x}"),
            None => write!(f, " pfn=none"),
        }
    }
}

/// Most problems a report lists one by one; all of them are counted.
pub(crate) const LISTED_PROBLEMS: usize = 32;

/// The verifier's findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Report {
    /// Page tables walked (the global tables, then each mm's top level).
    pub(crate) ns_pgds: u64,
    /// Present entries read.
    pub(crate) entries: u64,
    /// Present leaves.
    pub(crate) leaves: u64,
    /// Tables visited.
    pub(crate) tables: u64,
    /// Pages of required kernel memory checked.
    pub(crate) required_pages: u64,
    /// Mappings of sensitive pages found.
    pub(crate) sensitive_mapped: u64,
    /// Pages of required kernel memory found unmapped.
    pub(crate) unmapped: u64,
    /// Direct-map entries granting more than the kernel's.
    pub(crate) extra: u64,
    /// Problems of the per-mm tables.
    pub(crate) ns_pgd: u64,
    /// Global entries of the kernel's direct map.
    pub(crate) global: u64,
    /// The first [`LISTED_PROBLEMS`] problems.
    pub(crate) listed: [Option<Problem>; LISTED_PROBLEMS],
    /// How long the walk took.
    pub(crate) elapsed_ns: u64,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            ns_pgds: 0,
            entries: 0,
            leaves: 0,
            tables: 0,
            required_pages: 0,
            sensitive_mapped: 0,
            unmapped: 0,
            extra: 0,
            ns_pgd: 0,
            global: 0,
            listed: [None; LISTED_PROBLEMS],
            elapsed_ns: 0,
        }
    }
}

impl Report {
    /// Records a problem.
    pub(crate) fn add(&mut self, p: Problem) {
        let n = self.problems();
        match p.kind {
            ProblemKind::SensitiveMapped => self.sensitive_mapped += 1,
            ProblemKind::Unmapped(_) => self.unmapped += 1,
            ProblemKind::ExtraMapping => self.extra += 1,
            ProblemKind::NsPgdMissing | ProblemKind::NsPgdOutOfSync => self.ns_pgd += 1,
            ProblemKind::GlobalDirectMap => self.global += 1,
        }
        if let Some(slot) = usize::try_from(n).ok().and_then(|n| self.listed.get_mut(n)) {
            *slot = Some(p);
        }
    }

    /// Problems found.
    pub(crate) fn problems(&self) -> u64 {
        self.sensitive_mapped
            .saturating_add(self.unmapped)
            .saturating_add(self.extra)
            .saturating_add(self.ns_pgd)
            .saturating_add(self.global)
    }

    /// The listed problems.
    pub(crate) fn listed(&self) -> impl Iterator<Item = &Problem> {
        self.listed.iter().flatten()
    }
}

/// Writes the content of the debugfs `verify` file.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ns_pgds: {}", self.ns_pgds)?;
        writeln!(f, "entries: {}", self.entries)?;
        writeln!(f, "leaves: {}", self.leaves)?;
        writeln!(f, "tables: {}", self.tables)?;
        writeln!(f, "required_pages: {}", self.required_pages)?;
        writeln!(f, "sensitive_mapped: {}", self.sensitive_mapped)?;
        writeln!(f, "unmapped_required: {}", self.unmapped)?;
        writeln!(f, "extra_mappings: {}", self.extra)?;
        writeln!(f, "ns_pgd_problems: {}", self.ns_pgd)?;
        writeln!(f, "global_direct_map: {}", self.global)?;
        writeln!(f, "elapsed_us: {}", self.elapsed_ns / 1000)?;
        writeln!(f, "problems: {}", self.problems())?;
        for p in self.listed() {
            writeln!(f, "problem: {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn report_counts_all_and_lists_some() {
        let mut r = Report::default();
        for i in 0..40 {
            r.add(Problem {
                kind: if i % 2 == 0 {
                    ProblemKind::SensitiveMapped
                } else {
                    ProblemKind::Unmapped("kernel-stack")
                },
                va: 0x1000 * i,
                pfn: (i != 1).then_some(i),
            });
        }
        assert_eq!(r.problems(), 40);
        assert_eq!((r.sensitive_mapped, r.unmapped), (20, 20));
        assert_eq!(r.listed().count(), LISTED_PROBLEMS);
        let text = format!("{r}");
        assert!(text.contains("problems: 40\n"));
        assert!(text.contains("problem: sensitive-mapped va=0x0 pfn=0x0\n"));
        assert!(text.contains("problem: unmapped kernel-stack va=0x1000 pfn=none\n"));
        assert_eq!(text.matches("problem: ").count(), LISTED_PROBLEMS);
    }

    #[test]
    fn ns_pgd_problems_are_counted_apart() {
        let mut r = Report::default();
        for kind in [
            ProblemKind::NsPgdMissing,
            ProblemKind::NsPgdOutOfSync,
            ProblemKind::ExtraMapping,
            ProblemKind::GlobalDirectMap,
        ] {
            r.add(Problem {
                kind,
                va: 0x7f00_0000_0000,
                pfn: Some(0x1234),
            });
        }
        assert_eq!((r.ns_pgd, r.extra, r.global, r.problems()), (2, 1, 1, 4));
        let text = format!("{r}");
        assert!(text.contains("problem: ns-pgd-missing va=0x7f0000000000 pfn=0x1234\n"));
        assert!(text.contains("problem: ns-pgd-out-of-sync va=0x7f0000000000 pfn=0x1234\n"));
        assert!(text.contains("problem: extra-mapping va=0x7f0000000000 pfn=0x1234\n"));
        assert!(text.contains("problem: global-direct-map va=0x7f0000000000 pfn=0x1234\n"));
        assert!(text.contains("\nglobal_direct_map: 1\n"));
    }

    #[test]
    fn pfn_parses_decimal_and_hex_only() {
        assert_eq!(parse_pfn(b"4096"), Ok(4096));
        assert_eq!(parse_pfn(b"4096\n"), Ok(4096));
        assert_eq!(parse_pfn(b"0x1000\n"), Ok(4096));
        assert_eq!(parse_pfn(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"\n",
            b"0x",
            b"-1",
            b"+1",
            b"0x+1",
            b"12 ",
            b"1\n\n",
            b"18446744073709551616",
            b"0x1g",
            b"\xff",
        ] {
            assert_eq!(parse_pfn(bad), Err(()), "{:?}", bad);
        }
        let s = format!(
            "{}",
            PageState {
                pfn: 7,
                sensitive: true,
                mapped: false
            }
        );
        assert_eq!(s, "pfn: 7\nsensitive: 1\nmapped: 0\n");
    }

    #[test]
    fn reset_accepts_only_zero() {
        assert_eq!(parse_reset(b"0"), Ok(()));
        assert_eq!(parse_reset(b"0\n"), Ok(()));
        for bad in [&b""[..], b"1", b"00", b"0 ", b"reset", b"\n0"] {
            assert_eq!(parse_reset(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn counter_line_format() {
        struct L<'a>(CounterLine<'a>, u64);
        impl fmt::Display for L<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write(f, self.1)
            }
        }
        let per_cpu = [(0, 3), (1, 4)];
        let line = L(
            CounterLine {
                name: "exits_page_fault",
                per_cpu: &per_cpu,
            },
            7,
        );
        assert_eq!(format!("{line}"), "exits_page_fault: 7 (cpu0=3 cpu1=4)\n");
        let none = L(
            CounterLine {
                name: "enters",
                per_cpu: &[],
            },
            0,
        );
        assert_eq!(format!("{none}"), "enters: 0\n");
    }

    #[test]
    fn clean_report() {
        let text = format!("{}", Report::default());
        assert!(text.ends_with("problems: 0\n"));
    }

    #[test]
    fn stats_format() {
        let s = Stats {
            tables: true,
            global_table_pages: 3,
            ..Stats::default()
        };
        let text = format!("{s}");
        assert!(text.starts_with("tables: yes\nsensitive_pages: 0\nuser_pages_allocated: 0\n"));
        assert!(text.contains("global_table_pages: 3\nglobal_table_bytes: 12288\n"));
        assert!(
            text.ends_with("ns_pgds: 0\nns_pgds_created: 0\nns_pgd_failures: 0\nns_pgd_bytes: 0\n")
        );
    }
}
