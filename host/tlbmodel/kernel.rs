// SPDX-License-Identifier: GPL-2.0

//! The kernel's TLB-flush algorithm, `arch/x86/mm/tlb.c` of Linux 7.3, driving [`hw::Tlb`].
//!
//! Each function below models the tlb.c function of the same name; the comments cite the
//! lines of tlb.c (7.3.4) each part models. What ASI adds to these paths (its CR3 hooks in
//! `load_new_mm_cr3()` and `flush_tlb_func()`) is called from here and modelled in
//! [`super::asi`]. The events of the model (page-table changes and the flushes their callers
//! issue) are at the end, in [`Run::apply`].
//!
//! `mm->context.tlb_gen` and `cpu_tlbstate.ctxs[].tlb_gen` are kept as one number per context:
//! how many generations the context is behind its mm (0, 1, or 2 for "2 or more"). Every
//! comparison tlb.c makes between them is a comparison of that lag with 0 or 1, because the
//! model runs one flush at a time (see the simplifications in `mod.rs`), so a flush's
//! `f->new_tlb_gen` is always `mm->context.tlb_gen`.

use super::check::{Load, Moment, Violation};
use super::hw::{self, Cr3, Invpcid, Pte, Root, Tlb, Va, Walk, MAX_ASIDS};
use super::{Config, SensitiveFlush};
use std::fmt;
use std::format;
use std::string::String;
use std::vec::Vec;

/// CPUs of the model.
pub(super) const NR_CPUS: usize = 2;

/// An address space (`struct mm_struct`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Mm {
    /// `init_mm`: kernel threads after a lazy flush, offline and booting CPUs.
    Init,
    /// A process with at least two threads, whose user mappings change.
    A,
    /// Another process.
    B,
}

impl Mm {
    /// `mm->pgd`.
    pub(super) fn pgd(self) -> Root {
        match self {
            Mm::Init => Root::Init,
            Mm::A => Root::AFull,
            Mm::B => Root::BFull,
        }
    }

    /// `mm->context.asi_pgd`: user processes have one, `init_mm` has none.
    pub(super) fn asi_pgd(self) -> Option<Root> {
        match self {
            Mm::Init => None,
            Mm::A => Some(Root::ANs),
            Mm::B => Some(Root::BNs),
        }
    }

    /// The mm whose tables a root belongs to.
    pub(super) fn of_root(root: Root) -> Mm {
        match root {
            Root::Init => Mm::Init,
            Root::AFull | Root::ANs => Mm::A,
            Root::BFull | Root::BNs => Mm::B,
        }
    }
}

/// `struct tlb_context` (tlbflush.h:69-72): `ctx_id` and the lag of `tlb_gen`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub(super) struct TlbContext {
    /// The mm whose entries this ASID holds; `None` is `ctx_id == 0`.
    pub(super) ctx_id: Option<Mm>,
    /// `mm->context.tlb_gen - tlb_gen`, capped at 2.
    pub(super) behind: u8,
}

/// `struct tlb_state` and `struct tlb_state_shared` (tlbflush.h:74-172), the parts that decide
/// flushes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct TlbState {
    /// `loaded_mm`.
    pub(super) loaded_mm: Mm,
    /// `loaded_mm_asid`.
    pub(super) loaded_mm_asid: u8,
    /// `next_asid`.
    pub(super) next_asid: u8,
    /// `invalidate_other`.
    pub(super) invalidate_other: bool,
    /// `cpu_tlbstate_shared.is_lazy`.
    pub(super) is_lazy: bool,
    /// `ctxs[]`, of which the first [`Config::nr_asids`] are used.
    pub(super) ctxs: [TlbContext; MAX_ASIDS],
}

/// ASI's per-CPU state (`struct asi_cpu_state` in asi.c), plus the deferred-flush masks of
/// the tracked design.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct AsiState {
    /// The CPU runs on the nonsensitive tables.
    pub(super) restricted: bool,
    /// The full CR3 to go back to (meaningful only while restricted).
    pub(super) full_cr3: Cr3,
    /// Tracked design: per ASID, its full PCID must be flushed when next loaded.
    pub(super) stale_full: u16,
    /// Tracked design: per ASID, its nonsensitive PCID must be flushed when next loaded.
    pub(super) stale_ns: u16,
}

/// One CPU.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct Cpu {
    /// In `cpu_online_mask`.
    pub(super) online: bool,
    /// Its TLB.
    pub(super) hw: Tlb,
    /// `cpu_tlbstate`.
    pub(super) tlb: TlbState,
    /// ASI's state.
    pub(super) asi: AsiState,
}

/// What page S is used for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Page {
    /// vmalloc memory, mapped at [`Va::Vmalloc`].
    Vmapped,
    /// Free (or kernel memory), not sensitive.
    Free,
    /// User data: sensitive, absent from ASI's direct map.
    Sensitive,
}

/// The page tables' contents, apart from what is fixed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct Memory {
    /// Whether the CPA page is present in the direct map.
    pub(super) dm_present: bool,
    /// Page S.
    pub(super) page: Page,
    /// `vfree()` unmapped [`Va::Vmalloc`] and its TLB flush is still deferred (lazy purge).
    pub(super) vfree_pending: bool,
}

impl Memory {
    /// What a walk from `root` finds.
    pub(super) fn walk(&self, root: Root, cfg: &Config) -> Walk {
        let dm_global = cfg.direct_map_global;
        let user = Mm::of_root(root) == Mm::A;
        let mut w = Walk::default();
        let mut set = |pte: Pte, present: bool, global: bool| {
            if present {
                w.map(pte, global);
            }
        };
        set(Pte::User, user, false);
        set(Pte::Dm, self.dm_present, dm_global);
        set(Pte::SensFull, !root.is_nonsensitive(), dm_global);
        set(
            Pte::SensNs,
            root.is_nonsensitive() && (self.page != Page::Sensitive || cfg.ns_keeps_sensitive),
            dm_global,
        );
        set(Pte::Vmalloc, self.page == Page::Vmapped, true);
        w.user_table = user;
        w
    }
}

/// The whole state: what the exhaustive driver stores and compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct Machine {
    /// The CPUs.
    pub(super) cpus: [Cpu; NR_CPUS],
    /// The page tables.
    pub(super) mem: Memory,
}

/// Which user-range flush a thread of A asks for after changing A's user PTE.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct UserFlush {
    /// `flush_tlb_mm_range()` over more than 33 pages (or `flush_tlb_mm()`): `TLB_FLUSH_ALL`.
    pub(super) all: bool,
    /// The PTE table was freed too (`freed_tables`).
    pub(super) freed_tables: bool,
}

/// What one CPU does in one step.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum CpuEvent {
    /// The scheduler switches to a thread of this mm (`switch_mm_irqs_off()`).
    SwitchTo(Mm),
    /// The scheduler switches to a kernel thread (`enter_lazy_tlb()`).
    KernelThread,
    /// Return to user mode (`__asi_enter_user()`).
    ReturnToUser,
    /// A #PF on a kernel address the nonsensitive tables lack (`__asi_fault_exit()`).
    Exit,
    /// A thread of A changes A's user PTE and flushes (`flush_tlb_mm_range()`).
    ChangeUser(UserFlush),
    /// The CPU goes offline (the other one stays online).
    Offline,
    /// The CPU comes back online.
    Online,
}

/// A change of kernel mappings, with the flush its caller does; run by any online CPU (the
/// flush IPIs do the same on every online CPU, the caller's included).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum KernelEvent {
    /// CPA of one direct-map page (secretmem's `set_direct_map_invalid_noflush()` plus
    /// `flush_tlb_kernel_range()`, or `set_memory_np()` of one page through `cpa_flush()`).
    CpaOne,
    /// CPA of more than 33 pages, the CPA page among them: `flush_tlb_all()`.
    CpaMany,
    /// Page S, free, is allocated for user data: `make_sensitive()`.
    MakeSensitive,
    /// `vfree()` of the vmalloc area on page S: the PTE is cleared, the flush deferred, the
    /// page freed.
    VfreeLazy,
    /// The lazy purge (`__purge_vmap_area_lazy()`) flushes the vmalloc range.
    Purge,
    /// Page S, free, is vmalloc'ed again at the same address (after the purge).
    Vmalloc,
    /// Page S, freed by its user, is allocated for the kernel: `make_nonsensitive()`.
    MakeNonsensitive,
    /// Reclaim (from any CPU) unmaps A's user page with a batched flush.
    ReclaimUser,
}

/// One step of the model.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Event {
    /// A CPU's own event.
    Cpu(usize, CpuEvent),
    /// A kernel mapping change and its flush.
    Kernel(KernelEvent),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Cpu(c, e) => {
                write!(f, "CPU{c}: ")?;
                match e {
                    CpuEvent::SwitchTo(mm) => write!(f, "switch to {mm:?}"),
                    CpuEvent::KernelThread => write!(f, "switch to a kernel thread"),
                    CpuEvent::ReturnToUser => write!(f, "return to user (ASI enter)"),
                    CpuEvent::Exit => write!(f, "#PF on a kernel address (ASI exit)"),
                    CpuEvent::ChangeUser(u) => write!(
                        f,
                        "change A's user PTE, flush_tlb_mm_range({}{})",
                        if u.all { "full" } else { "one page" },
                        if u.freed_tables { ", freed_tables" } else { "" }
                    ),
                    CpuEvent::Offline => write!(f, "go offline"),
                    CpuEvent::Online => write!(f, "come online"),
                }
            }
            Event::Kernel(e) => write!(
                f,
                "kernel: {}",
                match e {
                    KernelEvent::CpaOne => "CPA of one direct-map page, one-page flush",
                    KernelEvent::CpaMany => "CPA of many pages, flush_tlb_all()",
                    KernelEvent::MakeSensitive => "page S allocated for user data (make_sensitive)",
                    KernelEvent::VfreeLazy => "vfree() of page S's vmalloc alias (lazy purge)",
                    KernelEvent::Purge => "lazy vmap purge flushes the vmalloc range",
                    KernelEvent::Vmalloc => "page S vmalloc'ed again",
                    KernelEvent::MakeNonsensitive =>
                        "page S freed and reused by the kernel (make_nonsensitive)",
                    KernelEvent::ReclaimUser =>
                        "reclaim unmaps A's user page, arch_tlbbatch_flush()",
                }
            ),
        }
    }
}

/// The part of `struct flush_tlb_info` (tlbflush.h) a user flush needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FlushInfo {
    /// `mm`: A, or `None` for a batched flush.
    mm: Option<Mm>,
    /// One page (`end != TLB_FLUSH_ALL`).
    partial: bool,
}

/// The range of a kernel flush.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KernelRange {
    /// Up to `tlb_single_page_flush_ceiling` (33) pages; the model's one page in it.
    Pages(Va),
    /// More than 33 pages.
    Many,
}

/// One event being applied to a copy of a machine.
pub(super) struct Run<'a> {
    /// The machine.
    pub(super) m: Machine,
    /// The design.
    pub(super) cfg: &'a Config,
    /// Invariant violations seen so far.
    pub(super) found: Vec<Violation>,
    /// A description of each step, when replaying a counterexample.
    pub(super) log: Option<Vec<String>>,
}

impl Machine {
    /// Both CPUs online and running threads of A, everything mapped, page S vmalloc'ed, and
    /// every TLB holding all it can.
    pub(super) fn initial(cfg: &Config) -> Machine {
        let pcid = if cfg.pcid { kern_pcid(0) } else { 0 };
        let mut ctxs = [TlbContext::default(); MAX_ASIDS];
        ctxs[0].ctx_id = Some(Mm::A);
        let cpu = Cpu {
            online: true,
            hw: Tlb::new(
                Cr3 {
                    root: Root::AFull,
                    pcid,
                },
                cfg.pcid,
            ),
            tlb: TlbState {
                loaded_mm: Mm::A,
                loaded_mm_asid: 0,
                next_asid: 1,
                invalidate_other: false,
                is_lazy: false,
                ctxs,
            },
            asi: AsiState {
                restricted: false,
                full_cr3: CANONICAL_CR3,
                stale_full: 0,
                stale_ns: 0,
            },
        };
        let mut m = Machine {
            cpus: [cpu, cpu],
            mem: Memory {
                dm_present: true,
                page: Page::Vmapped,
                vfree_pending: false,
            },
        };
        for c in 0..NR_CPUS {
            let w = m.mem.walk(m.cpus[c].hw.cr3().root, cfg);
            m.cpus[c].hw.fill(&w);
        }
        m
    }
}

impl Machine {
    /// Both CPUs as `cpu_init()` leaves them at boot: on init_mm with ASID 0, empty TLBs
    /// refilled from swapper_pg_dir; everything mapped.
    pub(super) fn boot(cfg: &Config) -> Machine {
        let mut m = Machine::initial(cfg);
        for cpu in &mut m.cpus {
            let pcid = if cfg.pcid { kern_pcid(0) } else { 0 };
            cpu.hw = Tlb::new(
                Cr3 {
                    root: Root::Init,
                    pcid,
                },
                cfg.pcid,
            );
            cpu.hw.fill(&m.mem.walk(Root::Init, cfg));
            cpu.tlb.loaded_mm = Mm::Init;
            cpu.tlb.ctxs[0].ctx_id = Some(Mm::Init);
        }
        m
    }
}

/// The value of dead fields, so that equal states compare equal.
const CANONICAL_CR3: Cr3 = Cr3 {
    root: Root::Init,
    pcid: 0,
};

/// `kern_pcid()` (tlb.c:116-150): ASID + 1.
pub(super) fn kern_pcid(asid: u8) -> u16 {
    u16::from(asid) + 1
}

impl<'a> Run<'a> {
    /// Starts applying an event to a copy of `m`.
    pub(super) fn new(m: &Machine, cfg: &'a Config, log: bool) -> Self {
        Run {
            m: *m,
            cfg,
            found: Vec::new(),
            log: log.then(Vec::new),
        }
    }

    /// Records a line of the replay log.
    pub(super) fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(log) = &mut self.log {
            log.push(line());
        }
    }

    /// Lets CPU `c` cache everything its current tables map.
    pub(super) fn fill(&mut self, c: usize) {
        let w = self.m.mem.walk(self.m.cpus[c].hw.cr3().root, self.cfg);
        self.m.cpus[c].hw.fill(&w);
    }

    /// MOV to CR3 on CPU `c`. The CPU may use, and fill, the new space at once, so the
    /// invariants are checked right after the write.
    pub(super) fn write_cr3(&mut self, c: usize, cr3: Cr3, noflush: bool, why: Load) {
        self.note(|| {
            format!(
                "  CPU{c}: CR3 <- {cr3}{} ({why:?})",
                if noflush { " NOFLUSH" } else { "" }
            )
        });
        self.m.cpus[c].hw.write_cr3(cr3, noflush);
        self.fill(c);
        self.check_cpu(c, Moment::Load { why, noflush });
    }

    /// The ASID a CR3 value uses (either flavour).
    pub(super) fn asid_of(&self, cr3: Cr3) -> u8 {
        if self.cfg.pcid {
            // kern_pcid() is ASID + 1 (tlb.c:149) and at most MAX_ASIDS.
            ((cr3.pcid & !hw::ASI_PCID_BIT) - 1) as u8
        } else {
            0
        }
    }

    /// `build_cr3()` (tlb.c:161-172). LAM and SME bits are not modelled.
    fn build_cr3(&self, mm: Mm, asid: u8) -> Cr3 {
        let pcid = if self.cfg.pcid {
            kern_pcid(asid)
        } else {
            debug_assert_eq!(asid, 0);
            0
        };
        Cr3 {
            root: mm.pgd(),
            pcid,
        }
    }

    /// Whether kernel flushes propagate to other ASIDs under ASI (rule R3, or the review's B1
    /// fix).
    fn invalidate_other_asi(&self) -> bool {
        self.cfg.b1_fix || self.cfg.tracking.is_some_and(|t| t.invalidate_other)
    }

    /// `clear_asid_other()` (tlb.c:192-216).
    fn clear_asid_other(&mut self, c: usize) {
        // tlb.c:200-203: only PTI sets invalidate_other upstream; the tracked design also sets
        // it under ASI (see flush_tlb_one_kernel()).
        assert!(
            self.invalidate_other_asi(),
            "WARN_ON_ONCE in clear_asid_other()"
        );
        let t = &mut self.m.cpus[c].tlb;
        for asid in 0..self.cfg.nr_asids {
            // tlb.c:206-208: the loaded ASID was kept up to date as it ran.
            if asid == usize::from(t.loaded_mm_asid) {
                continue;
            }
            // tlb.c:213: ctx_id = 0 forces a flush when this ASID is next used.
            t.ctxs[asid] = TlbContext::default();
        }
        t.invalidate_other = false;
    }

    /// `choose_new_asid()` (tlb.c:225-275): the ASID for `next` and whether it needs a flush.
    fn choose_new_asid(&mut self, c: usize, next: Mm) -> (u8, bool) {
        // tlb.c:230-234: without PCID there is one ASID and every switch flushes.
        if !self.cfg.pcid {
            return (0, true);
        }
        // tlb.c:240-248: INVLPGB's global ASIDs are off under ASI and not modelled.
        // tlb.c:250-251.
        if self.m.cpus[c].tlb.invalidate_other {
            self.clear_asid_other(c);
        }
        let t = &mut self.m.cpus[c].tlb;
        // tlb.c:253-261: an ASID that already holds next; it needs a flush if behind.
        for asid in 0..self.cfg.nr_asids {
            if t.ctxs[asid].ctx_id == Some(next) {
                // `asid < MAX_ASIDS`, so the cast cannot truncate.
                return (asid as u8, t.ctxs[asid].behind > 0);
            }
        }
        // tlb.c:267-272: round-robin reuse of a slot.
        let mut asid = t.next_asid;
        t.next_asid += 1;
        if usize::from(asid) >= self.cfg.nr_asids {
            asid = 0;
            t.next_asid = 1;
        }
        (asid, true)
    }

    /// `load_new_mm_cr3()` (tlb.c:565-583) with ASI's hunk at its end.
    fn load_new_mm_cr3(&mut self, c: usize, next: Mm, asid: u8, need_flush: bool) {
        // tlb.c:570-575. invalidate_user_asid() (tlb.c:545-563) is PTI's: a no-op here. The
        // tracked design does the same for ASI's twin PCID (rule R2).
        if need_flush {
            self.tracked_new_asid(c, asid);
        }
        let cr3 = self.build_cr3(next, asid);
        if self.cfg.asi {
            // ASI: stay in the nonsensitive space, or leave it first.
            if self.cfg.restricted_switch && self.asi_switch_mm(c, next, cr3, !need_flush) {
                return;
            }
            self.asi_exit(c);
        }
        let noflush = self.tracked_noflush(c, false, asid, !need_flush);
        // tlb.c:582.
        self.write_cr3(c, cr3, noflush, Load::SwitchMm);
    }

    /// `switch_mm_irqs_off()` (tlb.c:783-972).
    pub(super) fn switch_mm_irqs_off(&mut self, c: usize, next: Mm) {
        let t = &mut self.m.cpus[c].tlb;
        let prev = t.loaded_mm;
        let prev_asid = t.loaded_mm_asid;
        let was_lazy = t.is_lazy;
        // tlb.c:808-825: DEBUG_VM's CR3 check is a sanity check only.
        // tlb.c:826-827.
        t.is_lazy = false;
        let (asid, need_flush);
        if prev == next {
            // tlb.c:841-901. Global ASIDs (tlb.c:862-874) are not modelled.
            // tlb.c:881-882: another thread of the same mm, nothing to do.
            if !was_lazy {
                return;
            }
            // tlb.c:890-894: lazy, but no flush was missed.
            if t.ctxs[usize::from(prev_asid)].behind == 0 {
                self.note(|| format!("  CPU{c}: back from lazy mode, ASID {prev_asid} current"));
                return;
            }
            // tlb.c:900-901.
            asid = prev_asid;
            need_flush = true;
        } else {
            // tlb.c:907: IBPB and friends (cond_mitigation()) are not TLB state. tlb.c:914:
            // LOADED_MM_SWITCHING and tlb.c:935-938 (mm_cpumask()) are not modelled; see the
            // simplifications in mod.rs.
            // tlb.c:940-942.
            (asid, need_flush) = self.choose_new_asid(c, next);
        }
        self.note(|| {
            format!(
                "  CPU{c}: switch_mm_irqs_off({next:?}): ASID {asid}, {}",
                if need_flush {
                    "need_flush"
                } else {
                    "up to date"
                }
            )
        });
        // tlb.c:945-959.
        if need_flush {
            self.m.cpus[c].tlb.ctxs[usize::from(asid)] = TlbContext {
                ctx_id: Some(next),
                behind: 0,
            };
        }
        self.load_new_mm_cr3(c, next, asid, need_flush);
        // tlb.c:964-965.
        let t = &mut self.m.cpus[c].tlb;
        t.loaded_mm = next;
        t.loaded_mm_asid = asid;
        // tlb.c:968-971: PCE and LDT are not TLB state.
    }

    /// `enter_lazy_tlb()` (tlbflush.h:189-196).
    fn enter_lazy_tlb(&mut self, c: usize) {
        let t = &mut self.m.cpus[c].tlb;
        if t.loaded_mm == Mm::Init {
            return;
        }
        t.is_lazy = true;
    }

    /// `initialize_tlbstate_and_flush()` (tlb.c:1058-1094) with ASI's hunk.
    fn initialize_tlbstate_and_flush(&mut self, c: usize) {
        // ASI: asi_cpu_reset().
        self.m.cpus[c].asi.restricted = false;
        let mm = self.m.cpus[c].tlb.loaded_mm;
        // tlb.c:1082: ASID 0, flushed.
        let cr3 = self.build_cr3(mm, 0);
        self.write_cr3(c, cr3, false, Load::Online);
        // tlb.c:1085-1093. invalidate_other is left as it was.
        let t = &mut self.m.cpus[c].tlb;
        t.loaded_mm_asid = 0;
        t.next_asid = 1;
        t.ctxs = [TlbContext::default(); MAX_ASIDS];
        t.ctxs[0].ctx_id = Some(mm);
    }

    /// `flush_tlb_func()` (tlb.c:1103-1274) with ASI's hunk, for a flush of mm A (`f->mm`
    /// set, one page or all) or for a batched flush (`f->mm == NULL`, all).
    fn flush_tlb_func(&mut self, c: usize, f: FlushInfo) {
        let t = &self.m.cpus[c].tlb;
        // tlb.c:1131-1135: the CPU switched away from A; it will flush when it comes back.
        if f.mm.is_some_and(|mm| mm != t.loaded_mm) {
            return;
        }
        // tlb.c:1137-1138.
        if t.loaded_mm == Mm::Init {
            return;
        }
        // tlb.c:1140-1148: global ASIDs are not modelled.
        // tlb.c:1153-1165: a lazy CPU is reached only when tables are freed; it leaves A.
        if t.is_lazy {
            self.note(|| format!("  CPU{c}: flush_tlb_func(): lazy, switch to init_mm"));
            self.asi_exit(c);
            self.switch_mm_irqs_off(c, Mm::Init);
            return;
        }
        let asid = usize::from(t.loaded_mm_asid);
        let behind = t.ctxs[asid].behind;
        // tlb.c:1169-1178 (only with a valid f->new_tlb_gen, which is mm_tlb_gen here) and
        // tlb.c:1186-1194: already up to date.
        if behind == 0 {
            return;
        }
        // tlb.c:1236-1263: partial flush only if it brings the CPU exactly up to date.
        if f.partial && behind == 1 {
            self.note(|| format!("  CPU{c}: flush_tlb_func(): INVLPG user page"));
            self.flush_tlb_one_user(c, Va::User);
        } else {
            self.note(|| format!("  CPU{c}: flush_tlb_func(): flush_tlb_local()"));
            self.flush_tlb_local(c);
        }
        // tlb.c:1266.
        self.m.cpus[c].tlb.ctxs[asid].behind = 0;
    }

    /// `inc_mm_tlb_gen()` (tlbflush.h:367-376) of A: every context of A is one more behind.
    fn inc_mm_tlb_gen(&mut self) {
        for cpu in &mut self.m.cpus {
            for ctx in &mut cpu.tlb.ctxs {
                if ctx.ctx_id == Some(Mm::A) {
                    ctx.behind = (ctx.behind + 1).min(2);
                }
            }
        }
    }

    /// `flush_tlb_mm_range()` (tlb.c:1401-1440) of mm A from CPU `c`, which runs A.
    fn flush_tlb_mm_range(&mut self, c: usize, u: UserFlush) {
        debug_assert_eq!(self.m.cpus[c].tlb.loaded_mm, Mm::A);
        // tlb.c:1411.
        self.inc_mm_tlb_gen();
        // tlb.c:1376-1399: one page is a partial flush, more than 33 is TLB_FLUSH_ALL.
        let f = FlushInfo {
            mm: Some(Mm::A),
            partial: !u.all,
        };
        // tlb.c:1420-1437: the local CPU directly, or every CPU of mm_cpumask() through
        // native_flush_tlb_multi() (tlb.c:1326-1356): all of them if tables were freed, else
        // those should_flush_tlb() (tlb.c:1276-1312) picks, which skips lazy CPUs. A CPU of
        // mm_cpumask() that no longer runs A returns at tlb.c:1131-1135, so only CPUs running A
        // matter. Offline CPUs get no IPI.
        for x in 0..NR_CPUS {
            let cpu = &self.m.cpus[x];
            if cpu.online && cpu.tlb.loaded_mm == Mm::A && (u.freed_tables || !cpu.tlb.is_lazy) {
                self.flush_tlb_func(x, f);
            }
        }
    }

    /// `arch_tlbbatch_flush()` (tlb.c:1682-1713) after reclaim unmapped A's page: a full
    /// flush with `f->mm == NULL` on the CPUs of the batch's cpumask (which holds every CPU
    /// running A) that should_flush_tlb() picks (not the lazy ones).
    fn arch_tlbbatch_flush(&mut self) {
        let f = FlushInfo {
            mm: None,
            partial: false,
        };
        for x in 0..NR_CPUS {
            let cpu = &self.m.cpus[x];
            if cpu.online && cpu.tlb.loaded_mm == Mm::A && !cpu.tlb.is_lazy {
                self.flush_tlb_func(x, f);
            }
        }
    }

    /// `do_flush_tlb_all()` and `__flush_tlb_all()` (tlb.c:1442-1446, 1663-1679) on CPU `c`;
    /// the model's CPUs have PGE.
    fn flush_tlb_all_local(&mut self, c: usize) {
        // native_flush_tlb_global() (tlb.c:1610-1635) and __native_tlb_flush_global()
        // (tlbflush.h:518-522).
        if self.cfg.invpcid {
            self.m.cpus[c].hw.invpcid(Invpcid::AllIncludingGlobal);
        } else {
            self.m.cpus[c].hw.toggle_pge();
        }
        self.fill(c);
    }

    /// `flush_tlb_all()` (tlb.c:1448-1458): an IPI to every online CPU.
    pub(super) fn flush_tlb_all(&mut self) {
        self.note(|| String::from("  every CPU: __flush_tlb_all()"));
        for c in 0..NR_CPUS {
            if self.m.cpus[c].online {
                self.flush_tlb_all_local(c);
            }
        }
    }

    /// `flush_tlb_kernel_range()` (tlb.c:1505-1517) without INVLPGB.
    fn flush_tlb_kernel_range(&mut self, range: KernelRange) {
        match range {
            // tlb.c:1497-1503 and do_kernel_range_flush() (tlb.c:1479-1487).
            KernelRange::Pages(va) => {
                self.note(|| format!("  every CPU: flush_tlb_one_kernel({va:?})"));
                for c in 0..NR_CPUS {
                    if self.m.cpus[c].online {
                        self.flush_tlb_one_kernel(c, va);
                    }
                }
            }
            // tlb.c:1489-1495.
            KernelRange::Many => self.flush_tlb_all(),
        }
    }

    /// `flush_tlb_one_kernel()` (tlb.c:1544-1571).
    fn flush_tlb_one_kernel(&mut self, c: usize, va: Va) {
        self.flush_tlb_one_user(c, va);
        // tlb.c:1561-1562: upstream propagates the flush to other ASIDs only under PTI; the
        // tracked design also does under ASI (rule R3).
        if !self.invalidate_other_asi() {
            return;
        }
        // tlb.c:1570.
        self.m.cpus[c].tlb.invalidate_other = true;
    }

    /// `native_flush_tlb_one_user()` (tlb.c:1576-1600).
    fn flush_tlb_one_user(&mut self, c: usize, va: Va) {
        // tlb.c:1582.
        self.m.cpus[c].hw.invlpg(va);
        self.fill(c);
        // tlb.c:1584-1599 are PTI's. The tracked design defers the twin's flush (rule R1).
        self.tracked_local_flush(c);
    }

    /// `native_flush_tlb_local()` (tlb.c:1640-1653).
    fn flush_tlb_local(&mut self, c: usize) {
        // tlb.c:1649: invalidate_user_asid() is PTI's. tlb.c:1652: rewrite CR3 as read, which
        // is the nonsensitive CR3 if the CPU is restricted.
        let cr3 = self.m.cpus[c].hw.cr3();
        self.write_cr3(c, cr3, false, Load::FlushLocal);
        self.tracked_local_flush(c);
    }

    /// Canonical values for dead state, then every online CPU fills its TLB and the
    /// invariants are checked.
    pub(super) fn finish(&mut self) {
        let nr_asids = self.cfg.nr_asids;
        for cpu in &mut self.m.cpus {
            if !cpu.asi.restricted {
                cpu.asi.full_cr3 = CANONICAL_CR3;
            }
            for ctx in &mut cpu.tlb.ctxs[nr_asids..] {
                *ctx = TlbContext::default();
            }
            for ctx in &mut cpu.tlb.ctxs {
                if ctx.ctx_id.is_none() {
                    ctx.behind = 0;
                }
            }
            if !cpu.online {
                // All of this is rewritten before it is read again: by the TLB flush and the
                // CR3 write of the startup code and by initialize_tlbstate_and_flush().
                cpu.hw = Tlb::new(CANONICAL_CR3, self.cfg.pcid);
                cpu.tlb.loaded_mm_asid = 0;
                cpu.tlb.next_asid = 0;
                cpu.tlb.ctxs = [TlbContext::default(); MAX_ASIDS];
            }
        }
        for c in 0..NR_CPUS {
            if self.m.cpus[c].online {
                self.fill(c);
                self.check_cpu(c, Moment::End);
            }
            self.m.cpus[c].hw.drop_shadowed();
        }
    }

    /// Every CPU's TLB entries of `pte` are now stale.
    fn pte_changed(&mut self, pte: Pte) {
        for cpu in &mut self.m.cpus {
            cpu.hw.pte_changed(pte);
        }
    }

    /// Applies one event and checks the invariants at each CR3 load and at its end.
    pub(super) fn apply(&mut self, ev: Event) {
        self.note(|| format!("{ev}"));
        match ev {
            Event::Cpu(c, e) => self.apply_cpu(c, e),
            Event::Kernel(e) => self.apply_kernel(e),
        }
        self.finish();
    }

    fn apply_cpu(&mut self, c: usize, e: CpuEvent) {
        match e {
            CpuEvent::SwitchTo(mm) => self.switch_mm_irqs_off(c, mm),
            CpuEvent::KernelThread => self.enter_lazy_tlb(c),
            CpuEvent::ReturnToUser => self.asi_enter_user(c),
            CpuEvent::Exit => self.asi_exit(c),
            CpuEvent::ChangeUser(u) => {
                // The PTE changes (zap_pte_range(), change_pte_range(), ...) and, with
                // freed_tables, its PTE table is freed; A gets a new one at its next fault.
                self.pte_changed(Pte::User);
                if u.freed_tables {
                    for cpu in &mut self.m.cpus {
                        cpu.hw.user_table_freed();
                    }
                }
                self.flush_tlb_mm_range(c, u);
            }
            CpuEvent::Offline => {
                // sched_force_init_mm() (kernel/sched/core.c:8452-8466), then play dead.
                self.switch_mm_irqs_off(c, Mm::Init);
                self.m.cpus[c].online = false;
            }
            CpuEvent::Online => {
                // INIT, then head_64.S (the CR3 load at 196, the CR4.PGE toggle at
                // 203-233), then cpu_init() (arch/x86/kernel/cpu/common.c:2508-2509):
                // initialize_tlbstate_and_flush() and enter_lazy_tlb(&init_mm), a no-op.
                let cpu = &mut self.m.cpus[c];
                cpu.online = true;
                cpu.hw.restart(CANONICAL_CR3);
                cpu.tlb.loaded_mm = Mm::Init;
                cpu.tlb.is_lazy = false;
                self.initialize_tlbstate_and_flush(c);
            }
        }
    }

    fn apply_kernel(&mut self, e: KernelEvent) {
        match e {
            KernelEvent::CpaOne | KernelEvent::CpaMany => {
                // __change_page_attr() writes the kernel's PTE, ASI's mirror() copies it.
                self.m.mem.dm_present = !self.m.mem.dm_present;
                self.pte_changed(Pte::Dm);
                // cpa_flush() (set_memory.c:479-482) and secretmem's flush_tlb_kernel_range()
                // both end in flush_tlb_one_kernel() per page, or flush_tlb_all() above 33
                // pages.
                let range = if e == KernelEvent::CpaOne {
                    KernelRange::Pages(Va::Dm)
                } else {
                    KernelRange::Many
                };
                self.flush_tlb_kernel_range(range);
            }
            KernelEvent::MakeSensitive => {
                // make_sensitive() (tables.rs): ASI's PTE is cleared (unless the weakened
                // design keeps it), then the flush. As reviewed (d55f5f5) it was
                // flush_kernel_range() of the page when no extra page was flipped, the path
                // MAIN models; since 733a6de it is always flush_kernel_all().
                self.m.mem.page = Page::Sensitive;
                if !self.cfg.ns_keeps_sensitive {
                    self.pte_changed(Pte::SensNs);
                }
                match self.cfg.make_sensitive {
                    SensitiveFlush::None => {}
                    SensitiveFlush::Range => {
                        self.flush_tlb_kernel_range(KernelRange::Pages(Va::Sens))
                    }
                    SensitiveFlush::All => self.flush_tlb_all(),
                }
            }
            KernelEvent::VfreeLazy => {
                // vfree() (vmalloc.c:3484-3514): remove_vm_area() -> free_unmap_vmap_area()
                // (vmalloc.c:2496-2504) clears the PTE and flushes only with
                // DEBUG_PAGEALLOC; free_vmap_area_noflush() defers the flush; the page is
                // freed at once (vm_area_free_pages()).
                self.m.mem.page = Page::Free;
                self.m.mem.vfree_pending = true;
                self.pte_changed(Pte::Vmalloc);
            }
            KernelEvent::Purge => {
                // __purge_vmap_area_lazy() (vmalloc.c:2357-2398); the range can be small.
                self.flush_tlb_kernel_range(KernelRange::Pages(Va::Vmalloc));
                self.m.mem.vfree_pending = false;
            }
            KernelEvent::Vmalloc => self.m.mem.page = Page::Vmapped,
            KernelEvent::ReclaimUser => {
                // try_to_unmap_one() clears the PTE; arch_tlbbatch_add_pending()
                // (tlbflush.h:378-385) bumps tlb_gen; try_to_unmap_flush() flushes.
                self.pte_changed(Pte::User);
                self.inc_mm_tlb_gen();
                self.arch_tlbbatch_flush();
            }
            KernelEvent::MakeNonsensitive => {
                // make_nonsensitive() (tables.rs): zeroed through the full direct map, then
                // ASI's PTE is set again; a not-present PTE is never cached, so no flush.
                self.m.mem.page = Page::Free;
            }
        }
    }
}

/// Every event enabled in `m`, in a fixed order.
pub(super) fn events(m: &Machine, cfg: &Config, out: &mut Vec<Event>) {
    out.clear();
    let online = m.cpus.iter().filter(|c| c.online).count();
    for (c, cpu) in m.cpus.iter().enumerate() {
        if !cpu.online {
            out.push(Event::Cpu(c, CpuEvent::Online));
            continue;
        }
        let t = &cpu.tlb;
        let user_task = t.loaded_mm != Mm::Init && !t.is_lazy;
        for mm in [Mm::A, Mm::B] {
            // A switch between two threads of one mm does nothing (tlb.c:881-882).
            if t.loaded_mm != mm || t.is_lazy {
                out.push(Event::Cpu(c, CpuEvent::SwitchTo(mm)));
            }
        }
        if user_task {
            out.push(Event::Cpu(c, CpuEvent::KernelThread));
        }
        if cfg.asi && user_task && !cpu.asi.restricted {
            out.push(Event::Cpu(c, CpuEvent::ReturnToUser));
        }
        if cpu.asi.restricted {
            out.push(Event::Cpu(c, CpuEvent::Exit));
        }
        if user_task && t.loaded_mm == Mm::A {
            for (all, freed_tables) in [(false, false), (true, false), (false, true), (true, true)]
            {
                let u = UserFlush { all, freed_tables };
                out.push(Event::Cpu(c, CpuEvent::ChangeUser(u)));
            }
        }
        if online > 1 {
            out.push(Event::Cpu(c, CpuEvent::Offline));
        }
    }
    let mem = &m.mem;
    out.push(Event::Kernel(KernelEvent::ReclaimUser));
    out.push(Event::Kernel(KernelEvent::CpaOne));
    out.push(Event::Kernel(KernelEvent::CpaMany));
    match mem.page {
        Page::Vmapped => out.push(Event::Kernel(KernelEvent::VfreeLazy)),
        Page::Free => {
            if cfg.asi {
                out.push(Event::Kernel(KernelEvent::MakeSensitive));
            }
            if !mem.vfree_pending {
                out.push(Event::Kernel(KernelEvent::Vmalloc));
            }
        }
        Page::Sensitive => out.push(Event::Kernel(KernelEvent::MakeNonsensitive)),
    }
    if mem.vfree_pending {
        out.push(Event::Kernel(KernelEvent::Purge));
    }
}
