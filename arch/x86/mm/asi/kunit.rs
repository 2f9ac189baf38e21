// SPDX-License-Identifier: GPL-2.0

//! KUnit suite `asi`.
//!
//! Checks what the boot parameter asked for against what the kernel did: the CPU feature flag
//! of every CPU (what `/proc/cpuinfo` shows) and the content of the debugfs `status` file. Run
//! once with `asi=on` and once without, these tests pass only if ASI follows the parameter. It
//! also checks the CR3 encoder against the CR3 the CPU is running with.

#[cfg(CONFIG_ASI_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(asi)]
mod tests {
    use crate::{cr3::Cr3, sys};
    use kernel::{prelude::*, str::CString};

    /// Whether ASI should be on: `asi=on`, PTI off, and not refused for another reason.
    fn asi_expected() -> bool {
        sys::boot_request().wants_asi()
            && !sys::pti_on()
            && sys::off_reason() == crate::status::OffReason::None
    }

    #[test]
    fn boot_cpu_flag_follows_boot_parameter() {
        assert_eq!(sys::boot_cpu_has_asi(), asi_expected());
    }

    #[test]
    fn every_cpu_flag_follows_boot_parameter() {
        let census = sys::cpu_flag_census();
        assert!(census.online > 0);
        let expected = if asi_expected() { census.online } else { 0 };
        assert_eq!(census.flagged, expected);
    }

    #[test]
    fn status_file_follows_boot_parameter() -> Result {
        let request = sys::boot_request();
        let text = CString::try_from_fmt(format_args!("{}", crate::current_status()))?;
        let text = text.to_str()?;
        let enabled = if asi_expected() {
            "enabled: yes\n"
        } else {
            "enabled: no\n"
        };
        assert!(text.starts_with(enabled));
        let param = CString::try_from_fmt(format_args!("\nboot_param: {}\n", request.name()))?;
        assert!(text.contains(param.to_str()?));
        assert!(text.ends_with("consistent: yes\n"));
        Ok(())
    }

    #[test]
    fn running_cr3_matches_the_encoder() {
        let snap = sys::cr3_snapshot();
        assert_eq!(crate::cr3_encoding_of(&snap), Ok(Cr3::from_raw(snap.cr3)));
    }

    use crate::{pgtable::TableMemory, stats::ProblemKind, tables};

    /// The tests below need the nonsensitive tables, which exist only with `asi=on`.
    fn tables_or_none() -> Option<&'static tables::Tables> {
        let t = tables::get();
        // With ASI off nothing may be allocated for it.
        assert_eq!(t.is_some(), sys::boot_cpu_has_asi());
        t
    }

    /// Whether the direct-map address of `pfn` is mapped in the nonsensitive tables.
    fn mapped(t: &tables::Tables, pfn: u64) -> bool {
        let l = sys::layout();
        t.translate(l.page_offset + (pfn << 12)).is_some()
    }

    #[test]
    fn tables_exist_only_with_asi() {
        let _ = tables_or_none();
        let s = tables::stats();
        assert_eq!(s.tables, sys::boot_cpu_has_asi());
        assert_eq!((s.global_table_pages > 0), sys::boot_cpu_has_asi());
    }

    struct RunOn {
        buf: KBox<[u8; 256]>,
        cpu: u32,
        sum: u64,
    }

    extern "C" fn on_nonsensitive(arg: *mut kernel::ffi::c_void) -> i32 {
        // SAFETY: `arg` is the `RunOn` of the test below, alive and not otherwise borrowed
        // during the call.
        let r = unsafe { &mut *arg.cast::<RunOn>() };
        let mut local = [0u8; 64];
        for (i, b) in local.iter_mut().enumerate() {
            *b = i as u8;
        }
        for (i, b) in r.buf.iter_mut().enumerate() {
            *b = local[i % 64] ^ 0x5a;
        }
        r.sum = r.buf.iter().map(|&b| u64::from(b)).sum();
        r.cpu = sys::test::cpu();
        0
    }

    #[test]
    fn kernel_runs_on_nonsensitive_tables() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let mut r = RunOn {
            buf: KBox::new([0u8; 256], GFP_KERNEL)?,
            cpu: u32::MAX,
            sum: 0,
        };
        let expected: u64 = (0..256u64).map(|i| (i % 64) ^ 0x5a).sum();
        // SAFETY: The function uses its stack, per-CPU data through `asi_test_cpu()` and a
        // kmalloc'ed buffer, all of which the nonsensitive tables map; that is the test.
        let ret = unsafe { sys::test::run_on(t.pgd(), on_nonsensitive, (&raw mut r).cast()) };
        assert_eq!(ret, 0);
        assert_eq!(r.sum, expected);
        assert!(r.cpu < 4096);
        Ok(())
    }

    #[test]
    fn direct_map_is_not_global() -> Result {
        if tables_or_none().is_none() {
            return Ok(());
        }
        let global = crate::pgtable::bits::GLOBAL;
        let l = sys::layout();
        // The first page, one in the middle and the last of the direct map.
        for pfn in [
            0x100,
            l.direct_map_pages / 2,
            l.direct_map_pages.saturating_sub(1),
        ] {
            if let Some((_, e)) = sys::kernel_leaf(l.page_offset + (pfn << 12)) {
                assert_eq!(e & global, 0);
            }
        }
        Ok(())
    }

    #[test]
    fn direct_map_is_built_non_global() {
        if tables_or_none().is_none() {
            return;
        }
        // init_memory_mapping(), which hot-added memory goes through too, built the direct map
        // without _PAGE_GLOBAL: asi_setup() found nothing to convert (review m3).
        assert_eq!(sys::test::dm_global_at_setup(), 0);
        assert_eq!(crate::tables::global_direct_map_leaves(), 0);
    }

    #[test]
    fn direct_map_is_global_without_asi() {
        let (va, pge) = sys::test::image_alias();
        // PTI maps the kernel non-global itself.
        if sys::boot_cpu_has_asi() || sys::pti_on() || !pge {
            return;
        }
        // ASI off, or its setup failed and was undone: the direct map is as the kernel built it.
        let global = sys::kernel_leaf(va).map(|(_, e)| e & crate::pgtable::bits::GLOBAL != 0);
        assert_eq!(global, Some(true));
    }

    #[test]
    fn verifier_finds_the_tables_complete() {
        if tables_or_none().is_none() {
            return;
        }
        let r = tables::verify();
        if r.problems() != 0 {
            pr_err!("verifier:\n{}", r);
        }
        assert_eq!(r.problems(), 0);
        assert!(r.entries > 0 && r.tables > 0 && r.required_pages > 0);
    }

    struct ReadUser<'a> {
        page: &'a sys::test::Pages,
        value: u64,
    }

    extern "C" fn read_user_page(arg: *mut kernel::ffi::c_void) -> i32 {
        // SAFETY: `arg` is the `ReadUser` of the test below, alive and not otherwise borrowed
        // during the call.
        let r = unsafe { &mut *arg.cast::<ReadUser<'_>>() };
        r.value = r.page.read();
        0
    }

    #[test]
    fn user_data_access_exits_once_and_reads_the_data() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let mut user = sys::test::alloc(true, false, 0).ok_or(ENOMEM)?;
        user.fill(0x5a);
        let mut r = ReadUser {
            page: &user,
            value: 0,
        };
        let before = sys::test::page_fault_exits();
        let enters = crate::debugfs::transition_total(sys::Transition::Enter);
        // SAFETY: The function only reads the page; the fault on it is the point.
        let ret =
            unsafe { sys::test::run_nonsensitive(t.pgd(), read_user_page, (&raw mut r).cast()) };
        let after = sys::test::page_fault_exits();
        let entered = crate::debugfs::transition_total(sys::Transition::Enter);
        let pf_total = crate::debugfs::transition_total(sys::Transition::ExitPageFault);
        // Code that touches no user data stays in the nonsensitive space.
        let mut quiet = RunOn {
            buf: KBox::new([0u8; 256], GFP_KERNEL)?,
            cpu: u32::MAX,
            sum: 0,
        };
        // SAFETY: As in `kernel_runs_on_nonsensitive_tables`.
        let ret2 = unsafe {
            sys::test::run_nonsensitive(t.pgd(), on_nonsensitive, (&raw mut quiet).cast())
        };
        let last = sys::test::page_fault_exits();
        let value = r.value;
        user.free();
        assert_eq!((ret, ret2), (0, 0));
        assert_eq!(value, 0x5a5a_5a5a_5a5a_5a5a);
        assert_eq!(after - before, 1);
        assert_eq!(last, after);
        assert_eq!(entered - enters, 1);
        assert_eq!(pf_total, after);
        // A reset zeroes every counter.
        sys::reset_transition_counts();
        for (what, _) in sys::Transition::ALL {
            assert_eq!(crate::debugfs::transition_total(what), 0);
        }
        Ok(())
    }

    /// What the nesting tests read from an interrupt or NMI, and where they end up.
    struct Nested {
        value: Result<u64>,
        nonsensitive_before: (bool, u64),
        nonsensitive_after: (bool, u64),
    }

    /// The argument of [`read_nested`]: the page to read, how, and what it saw.
    struct NestedRun<'a> {
        page: &'a sys::test::Pages,
        nmi: bool,
        seen: Nested,
    }

    extern "C" fn read_nested(arg: *mut kernel::ffi::c_void) -> i32 {
        // SAFETY: `arg` is the `NestedRun` of the test below, alive and not otherwise borrowed
        // during the call.
        let n = unsafe { &mut *arg.cast::<NestedRun<'_>>() };
        n.seen.nonsensitive_before = sys::test::in_nonsensitive();
        n.seen.value = n.page.nested_read(n.nmi);
        n.seen.nonsensitive_after = sys::test::in_nonsensitive();
        0
    }

    /// Runs `f` and returns how much each transition counter moved meanwhile, in the order of
    /// [`sys::Transition::ALL`]: enters, then exits by reason (page_fault, switch_mm, cr3_read,
    /// tlb_flush, nmi, other), then switches that stay in the nonsensitive space.
    fn transitions_during(f: impl FnOnce()) -> [u64; 8] {
        let before = sys::Transition::ALL.map(|(w, _)| crate::debugfs::transition_total(w));
        f();
        let mut delta = [0u64; 8];
        for (i, (w, _)) in sys::Transition::ALL.iter().enumerate() {
            delta[i] = crate::debugfs::transition_total(*w).wrapping_sub(before[i]);
        }
        delta
    }

    /// Runs [`read_nested`] in the nonsensitive space; returns it and the change of each
    /// transition counter.
    fn nested(t: &tables::Tables, page: &sys::test::Pages, nmi: bool) -> (Nested, [u64; 8]) {
        let mut n = NestedRun {
            page,
            nmi,
            seen: Nested {
                value: Err(EINVAL),
                nonsensitive_before: (false, 0),
                nonsensitive_after: (false, 0),
            },
        };
        let delta = transitions_during(|| {
            let run = sys::test::with_nested(nmi, || {
                // SAFETY: The function copes with leaving the nonsensitive space: leaving is the
                // point.
                unsafe { sys::test::run_nonsensitive(t.pgd(), read_nested, (&raw mut n).cast()) }
            });
            if let Err(e) = run {
                n.seen.value = Err(e);
            }
        });
        (n.seen, delta)
    }

    #[test]
    fn nmi_that_leaves_returns_to_the_nonsensitive_space() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let mut user = sys::test::alloc(true, false, 0).ok_or(ENOMEM)?;
        user.fill(0x3c);
        let cr3_writes = || {
            (0..sys::nr_cpu_ids())
                .filter_map(|cpu| {
                    Some(
                        sys::cr3_write_count(cpu, false)?
                            .wrapping_add(sys::cr3_write_count(cpu, true)?),
                    )
                })
                .fold(0u64, u64::wrapping_add)
        };
        let writes = cr3_writes();
        let (n, delta) = nested(t, &user, true);
        let writes = cr3_writes().wrapping_sub(writes);
        user.free();
        assert_eq!(n.value, Ok(0x3c3c_3c3c_3c3c_3c3c));
        // Each of the four transitions below wrote CR3 once, counted as kept or flushed.
        assert_eq!(writes, 4);
        // The NMI left (its #PF counts as an NMI exit), and its return put the CPU back on the
        // tables it interrupted: counted as a second enter.
        assert!(n.nonsensitive_before.0);
        assert_eq!(n.nonsensitive_after, n.nonsensitive_before);
        // enters, page_fault, switch_mm, cr3_read, tlb_flush, nmi, other: the test's own enter
        // and the NMI's return; the NMI's exit; the test's exit at its end.
        assert_eq!(delta, [2, 0, 0, 0, 0, 1, 1, 0]);
        Ok(())
    }

    #[test]
    fn interrupt_that_leaves_leaves_for_good() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let mut user = sys::test::alloc(true, false, 0).ok_or(ENOMEM)?;
        user.fill(0xc3);
        let (n, delta) = nested(t, &user, false);
        user.free();
        assert_eq!(n.value, Ok(0xc3c3_c3c3_c3c3_c3c3));
        // An interrupt's exit stands: the interrupted code goes on in the full space, the CR3 it
        // came from, until the next return to user mode enters again.
        assert!(n.nonsensitive_before.0);
        assert!(!n.nonsensitive_after.0);
        assert_ne!(n.nonsensitive_after.1, n.nonsensitive_before.1);
        assert_eq!(delta, [1, 1, 0, 0, 0, 0, 0, 0]);
        Ok(())
    }

    /// What [`read_cr3_fast`] saw: the CR3 it got and the state after.
    struct Cr3Fast {
        cr3: u64,
        before: (bool, u64),
        after: (bool, u64),
    }

    extern "C" fn read_cr3_fast(arg: *mut kernel::ffi::c_void) -> i32 {
        // SAFETY: `arg` is the `Cr3Fast` of the test below, alive and not otherwise borrowed
        // during the call.
        let r = unsafe { &mut *arg.cast::<Cr3Fast>() };
        r.before = sys::test::in_nonsensitive();
        r.cr3 = sys::test::cr3_fast();
        r.after = sys::test::in_nonsensitive();
        0
    }

    #[test]
    fn reading_cr3_to_load_it_later_leaves_first() {
        let Some(t) = tables_or_none() else {
            return;
        };
        let mut r = Cr3Fast {
            cr3: 0,
            before: (false, 0),
            after: (false, 0),
        };
        let delta = transitions_during(|| {
            // SAFETY: The function copes with leaving the nonsensitive space: leaving is the
            // point.
            unsafe { sys::test::run_nonsensitive(t.pgd(), read_cr3_fast, (&raw mut r).cast()) };
        });
        // The CR3 handed out is the full one, and the one the CPU runs on from then on.
        assert!(r.before.0);
        assert!(!r.after.0);
        assert_eq!(r.cr3, r.after.1);
        assert_ne!(r.cr3, r.before.1);
        // enters, page_fault, switch_mm, cr3_read, tlb_flush, nmi, other.
        assert_eq!(delta, [1, 0, 0, 1, 0, 0, 0, 0]);
    }

    /// The marks of stale PCIDs follow the rules of `struct asi_cpu_state` through the kernel's
    /// own flush and switch paths. Without PCIDs they are kept all the same, but leaving does
    /// not consume them (every CR3 write flushes).
    #[test]
    fn stale_pcid_marks_follow_the_flushes() -> Result {
        use kernel::bindings;

        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        use crate::pcid_rules::{step, Event, Marks};

        let pcid = sys::cr3_snapshot().pcid;
        let m = sys::test::stale_marks(t.pgd())?;
        let at = |s: u32| m[s as usize];
        let marks = |s: u32| {
            let m = at(s);
            Marks {
                full: m.full & m.bit != 0,
                ns: m.ns & m.bit != 0,
            }
        };
        // The marks the shared rules (pcid_rules.rs, which the host model checks) give after
        // `events`, from `m`. Without PCIDs, ASI's CR3 writes are not PCID loads.
        let after = |events: &[Event], m: Marks| {
            events
                .iter()
                .filter(|&&e| pcid || !matches!(e, Event::LoadNs | Event::LoadNsKeep))
                .fold(m, |m, &e| step(e, m).marks)
        };
        let clean = Marks::default();
        // R1: a local flush on the full tables leaves the nonsensitive PCID stale.
        let local = marks(bindings::asi_test_mark_step_ASI_TEST_MARKS_LOCAL);
        assert_eq!(local, after(&[Event::LocalFlushFull], clean));
        assert_eq!(
            local,
            Marks {
                full: false,
                ns: true
            }
        );
        // R1: and on the nonsensitive tables (entered from unmarked PCIDs), the full one.
        let ns = marks(bindings::asi_test_mark_step_ASI_TEST_MARKS_NONSENSITIVE);
        assert_eq!(ns, after(&[Event::LoadNsKeep, Event::LocalFlushNs], clean));
        assert_eq!(
            ns,
            Marks {
                full: true,
                ns: false
            }
        );
        // R4: leaving flushes the marked full PCID and consumes the mark (with PCIDs).
        let left = marks(bindings::asi_test_mark_step_ASI_TEST_MARKS_LEFT);
        let expected = if pcid {
            step(Event::LoadFullKeep, ns).marks
        } else {
            ns
        };
        assert_eq!(left, expected);
        assert_eq!(
            left,
            Marks {
                full: !pcid,
                ns: false
            }
        );
        // R1 and R3: a one-page kernel flush marks the other PCID and the other ASIDs.
        let kernel = marks(bindings::asi_test_mark_step_ASI_TEST_MARKS_KERNEL);
        assert_eq!(kernel, after(&[Event::LocalFlushFull], clean));
        assert!(at(bindings::asi_test_mark_step_ASI_TEST_MARKS_KERNEL).invalidate_other);
        // R4: a marked PCID is not clean, an unmarked one is; both marks are gone after.
        let marked = Marks {
            full: true,
            ns: false,
        };
        let taken = at(bindings::asi_test_mark_step_ASI_TEST_MARKS_TAKEN);
        let first = step(Event::LoadFullKeep, marked);
        let second = step(Event::LoadNsKeep, first.marks);
        assert_eq!(taken.taken_marked, first.noflush);
        assert!(!taken.taken_marked);
        assert_eq!(taken.taken_clean, second.noflush);
        assert!(taken.taken_clean);
        assert_eq!(
            marks(bindings::asi_test_mark_step_ASI_TEST_MARKS_TAKEN),
            second.marks
        );
        assert_eq!(second.marks, clean);
        // R2 and R4: a new mm's ASID is loaded with a flush of its full PCID, its nonsensitive
        // PCID stays marked.
        let switched = marks(bindings::asi_test_mark_step_ASI_TEST_MARKS_SWITCHED);
        assert_eq!(switched, after(&[Event::NewAsid, Event::LoadFull], clean));
        assert_eq!(
            switched,
            Marks {
                full: false,
                ns: true
            }
        );
        Ok(())
    }

    #[test]
    fn nonsensitive_cr3_matches_the_encoder() {
        // Every CPU, PCIDs or not: the C and Rust encodings of the CR3 that enters the
        // nonsensitive space must agree. With PCIDs this covers ASI's PCID bit.
        let snap = sys::cr3_snapshot();
        let full = Cr3::from_raw(snap.cr3);
        let layout = crate::cr3::PcidLayout::new(snap.pti_pcid, true);
        let enc = crate::cr3::Cr3Encoder::new(snap.pcid, layout, snap.me_mask);
        for pgd in [0x1000u64, 0x1234_5000, snap.pgd_pa] {
            let c = sys::test::asi_cr3(snap.cr3, pgd);
            assert_eq!(enc.nonsensitive(full, pgd, false), Ok(Cr3::from_raw(c)));
            if snap.pcid {
                assert_eq!(
                    enc.space_of(Cr3::from_raw(c)),
                    Some(crate::cr3::Space::Nonsensitive)
                );
            }
        }
    }

    #[test]
    fn user_pages_are_absent_kernel_pages_present() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let user = sys::test::alloc(true, false, 0).ok_or(ENOMEM)?;
        let kern = sys::test::alloc(false, false, 0).ok_or(ENOMEM)?;
        assert!(!mapped(t, user.pfn()));
        assert_eq!(tables::is_sensitive(user.pfn()), Some(true));
        assert_eq!(tables::direct_map_present(user.pfn()), Some(false));
        assert!(mapped(t, kern.pfn()));
        assert_eq!(tables::is_sensitive(kern.pfn()), Some(false));
        user.free();
        kern.free();
        Ok(())
    }

    #[test]
    fn reused_user_page_is_zeroed_and_mapped() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let before = tables::stats();
        let mut user = sys::test::alloc(true, false, 0).ok_or(ENOMEM)?;
        user.fill(0xa5);
        let user_pfn = user.pfn();
        // The per-CPU free list hands the page just freed out first. Interrupts stay off from
        // the free to the allocation, so that no other task takes it in between; making a page
        // nonsensitive needs no flush, so it works there.
        let kern = user.free_then_alloc(false, true).ok_or(ENOMEM)?;
        let found = kern.pfn() == user_pfn;
        if found {
            assert!(mapped(t, user_pfn));
            assert!(kern.is_filled(0));
            assert_eq!(tables::is_sensitive(user_pfn), Some(false));
            let after = tables::stats();
            assert!(after.zeroed_pages > before.zeroed_pages);
            assert!(after.flips_to_nonsensitive > before.flips_to_nonsensitive);
        }
        kern.free();
        assert!(found);
        Ok(())
    }

    /// CPA may change any page at any time, so the mirror of the kernel's direct map can race
    /// with a page becoming sensitive (review M4). The mirror only replaces the entry it read:
    /// once the page is sensitive, an entry read before fails to replace its entry.
    #[test]
    fn mirror_never_maps_a_page_that_became_sensitive() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let user = sys::test::alloc(true, false, 0).ok_or(ENOMEM)?;
        let pfn = user.pfn();
        let entry = tables::test_direct_map_entry(pfn);
        let step = tables::test_follow_kernel(pfn);
        let after = tables::test_direct_map_entry(pfn);
        let still_out = !mapped(t, pfn);
        user.free();
        assert_eq!(entry, Some(tables::SENSITIVE_ENTRY));
        assert_eq!(step, Some(Err(tables::SENSITIVE_ENTRY)));
        assert_eq!(after, entry);
        assert!(still_out);
        Ok(())
    }

    /// Memory hotplug: memory that goes offline or comes online becomes sensitive as a whole,
    /// and memory beyond ASI's direct map, which ASI has no tables for, is refused unchanged.
    #[test]
    fn hotplug_makes_memory_sensitive_and_refuses_what_is_not_covered() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let pages = sys::layout().direct_map_pages;
        let last = pages - 1;
        let last_before = (tables::is_sensitive(last), mapped(t, last));
        let beyond = tables::hotplug_make_sensitive(pages, 512);
        let straddling = tables::hotplug_make_sensitive(last, 2);
        let wrapping = tables::hotplug_make_sensitive(u64::MAX, 2);
        let last_after = (tables::is_sensitive(last), mapped(t, last));

        // A page the test owns stands for a page of memory held offline.
        let page = sys::test::alloc(false, false, 0).ok_or(ENOMEM)?;
        let pfn = page.pfn();
        let was_mapped = mapped(t, pfn);
        let covered = tables::hotplug_make_sensitive(pfn, 1);
        let state = (tables::is_sensitive(pfn), mapped(t, pfn));
        let entry = tables::test_direct_map_entry(pfn);
        page.free();

        assert!(!beyond && !straddling && !wrapping);
        assert_eq!(last_after, last_before);
        assert!(was_mapped && covered);
        assert_eq!(state, (Some(true), false));
        assert_eq!(entry, Some(tables::SENSITIVE_ENTRY));
        Ok(())
    }

    #[test]
    fn atomic_user_allocation_is_never_mapped() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        // A page that is sensitive already needs no flush: it can be handed out with
        // interrupts off.
        let user = sys::test::alloc(true, false, 0).ok_or(ENOMEM)?;
        let user_pfn = user.pfn();
        let again = user.free_then_alloc(true, true);
        let again_pfn = again.as_ref().map(sys::test::Pages::pfn);
        if let Some(p) = again {
            assert!(!mapped(t, p.pfn()));
            assert_eq!(tables::is_sensitive(p.pfn()), Some(true));
            p.free();
        }
        // A page that is mapped needs a flush, which cannot be sent with interrupts off:
        // the allocation must fail rather than hand out a mapped page.
        let kern = sys::test::alloc(false, false, 0).ok_or(ENOMEM)?;
        let refused = tables::stats().refused;
        match kern.free_then_alloc(true, true) {
            Some(p) => {
                assert!(!mapped(t, p.pfn()));
                p.free();
            }
            None => assert!(tables::stats().refused > refused),
        }
        assert_eq!(again_pfn, Some(user_pfn));
        Ok(())
    }

    #[test]
    fn user_allocation_without_preemption_sends_no_flush() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        // With preemption off, as under a spinlock, the synchronous flush IPI could wait
        // forever for a CPU that spins with interrupts off on what this one holds. A page that
        // is mapped, as the kernel page just freed is, would need one: the allocation must not
        // flip it, but fail or hand out a page that is sensitive already.
        let kern = sys::test::alloc(false, false, 0).ok_or(ENOMEM)?;
        let kern_pfn = kern.pfn();
        let refused = tables::stats().refused;
        match kern.free_then_alloc_nopreempt() {
            Some(p) => {
                let pfn = p.pfn();
                let state = (tables::is_sensitive(pfn), mapped(t, pfn));
                p.free();
                assert!(pfn != kern_pfn);
                assert_eq!(state, (Some(true), false));
            }
            None => assert!(tables::stats().refused > refused),
        }
        Ok(())
    }

    #[test]
    fn compound_pages_follow_the_same_rules() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let user = sys::test::alloc(true, false, 2).ok_or(ENOMEM)?;
        let kern = sys::test::alloc(false, false, 2).ok_or(ENOMEM)?;
        for i in 0..4 {
            assert!(!mapped(t, user.pfn() + i));
            assert!(mapped(t, kern.pfn() + i));
        }
        user.free();
        kern.free();
        Ok(())
    }

    #[test]
    fn vmalloc_with_user_flags_is_not_sensitive() -> Result {
        if tables_or_none().is_none() {
            return Ok(());
        }
        // 8 MiB, more than kmalloc() serves: kvmalloc() takes it from vmalloc, whose
        // mapping is shared.
        let mut problems = u64::MAX;
        sys::test::with_kvmalloc_user(8 << 20, |_| problems = tables::verify().problems())?;
        assert_eq!(problems, 0);
        Ok(())
    }

    #[test]
    fn gfp_user_pages_are_sensitive() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        // GFP_USER lacks __GFP_HIGHMEM but holds user data (the block-device page cache).
        let user = sys::test::alloc_gfp_user().ok_or(ENOMEM)?;
        let pfn = user.pfn();
        let (sensitive, absent) = (tables::is_sensitive(pfn), !mapped(t, pfn));
        user.free();
        assert_eq!(sensitive, Some(true));
        assert!(absent);
        Ok(())
    }

    #[test]
    fn kmalloc_with_user_flags_is_not_sensitive() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        // 64 KiB: kvmalloc() serves it from the page allocator through kmalloc(), whose
        // objects are the kernel's however the caller allocated them.
        let mut seen = None;
        sys::test::with_kvmalloc_user(64 << 10, |pfn| {
            seen = Some((tables::is_sensitive(pfn), mapped(t, pfn)))
        })?;
        assert_eq!(seen, Some((Some(false), true)));
        Ok(())
    }

    #[test]
    fn contiguous_ranges_follow_the_same_rules() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        // alloc_contig_range() isolates its range itself; gigantic hugetlb folios come from it.
        // The kernel's range first, then the same range for user data, which has to leave the
        // nonsensitive direct map.
        let mut at = None;
        for user in [false, true] {
            let mut right = 0;
            let configured = sys::test::with_contig(user, at, |pfn| {
                at = Some(pfn);
                for p in pfn..pfn + sys::test::CONTIG_PAGES {
                    if tables::is_sensitive(p) == Some(user) && mapped(t, p) != user {
                        right += 1;
                    }
                }
            })?;
            if configured {
                assert_eq!(right, sys::test::CONTIG_PAGES);
            }
        }
        Ok(())
    }

    #[test]
    fn verifier_reports_a_planted_mapping() -> Result {
        if tables_or_none().is_none() {
            return Ok(());
        }
        let clean = tables::verify();
        if clean.problems() != 0 {
            pr_err!("verifier:\n{}", clean);
        }
        assert_eq!(clean.problems(), 0);
        assert!(clean.entries > 0 && clean.required_pages > 0);
        let user = sys::test::alloc(true, false, 0).ok_or(ENOMEM)?;
        let user_pfn = user.pfn();
        let alias = user.vmap().ok_or(ENOMEM)?;
        let va = alias.va();
        let planted = tables::verify();
        drop(alias);
        let after = tables::verify();
        user.free();
        assert_eq!(planted.problems(), 1);
        assert_eq!(planted.sensitive_mapped, 1);
        let p = planted.listed().next().copied();
        assert_eq!(
            p.map(|p| (p.kind, p.va, p.pfn)),
            Some((ProblemKind::SensitiveMapped, va, Some(user_pfn)))
        );
        assert_eq!(after.problems(), 0);
        Ok(())
    }

    /// A global entry in the kernel's own direct map is reported (review m3): its TLB entries
    /// would outlive a switch to the nonsensitive space.
    #[test]
    fn verifier_reports_a_global_direct_map_entry() -> Result {
        if tables_or_none().is_none() {
            return Ok(());
        }
        let page = sys::test::alloc(false, false, 0).ok_or(ENOMEM)?;
        let va = sys::layout().page_offset + (page.pfn() << 12);
        let before = tables::verify();
        page.set_global(true)?;
        let planted = tables::verify();
        page.set_global(false)?;
        let after = tables::verify();
        let pfn = page.pfn();
        page.free();
        assert_eq!(before.global, 0);
        assert_eq!(
            (planted.global, planted.problems()),
            (1, before.problems() + 1)
        );
        let p = planted
            .listed()
            .find(|p| p.kind == ProblemKind::GlobalDirectMap)
            .copied();
        assert_eq!(p.map(|p| (p.va, p.pfn)), Some((va, Some(pfn))));
        assert_eq!(after.global, 0);
        Ok(())
    }

    #[test]
    fn verifier_reports_a_mapping_the_kernel_does_not_grant() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let rw = crate::pgtable::bits::RW;
        let page = sys::test::alloc(false, false, 0).ok_or(ENOMEM)?;
        let kern = page.pfn();
        // SAFETY: Nothing writes the page while it is read-only, and it is made writable again
        // before it is freed; if that fails, it is never freed.
        unsafe { page.set_read_only() }?;
        // CPA made the kernel's entry read-only; ASI's followed.
        let va = sys::layout().page_offset + (kern << 12);
        let entry = t.translate(va).map_or(0, |l| l.entry);
        // Plant a writable entry in ASI's direct map only.
        // SAFETY: `entry` is 0 or ASI's leaf for the direct-map address of `kern`, which maps
        // `kern`'s frame; with `rw` it still does, or is still not present.
        let old = unsafe { tables::test_set_direct_map_entry(kern, entry | rw) };
        let planted = tables::verify();
        if let Some(old) = old {
            // SAFETY: `old` is what ASI's entry for `kern` was: not present, or a leaf of
            // `kern`'s frame.
            unsafe { tables::test_set_direct_map_entry(kern, old) };
        }
        page.set_writable()?;
        let after = tables::verify();
        let writable_again = t.translate(va).is_some_and(|l| l.entry & rw != 0);
        page.free();
        assert!(entry != 0 && entry & rw == 0);
        assert_eq!((planted.extra, planted.problems()), (1, 1));
        let p = planted.listed().next().copied();
        assert_eq!(
            p.map(|p| (p.kind, p.va, p.pfn)),
            Some((ProblemKind::ExtraMapping, va, Some(kern)))
        );
        assert_eq!(after.problems(), 0);
        assert!(writable_again);
        Ok(())
    }

    #[test]
    fn ns_pgds_follow_the_mm() -> Result {
        let Some(t) = tables_or_none() else {
            return Ok(());
        };
        let before = tables::stats();
        let mut checked = false;
        let mut ran = false;
        sys::test::mm_ns_pgd(false, &mut |pgd, ns_pgd| {
            checked = ns_pgd != 0;
            if !checked {
                return;
            }
            let mem = t.mem();
            for i in 0..crate::pgtable::ENTRIES {
                let src = if t.paging().kernel_half().contains(&i) {
                    t.pgd()
                } else {
                    pgd
                };
                // SAFETY: `mm_ns_pgd()` passes the PGD and the nonsensitive table of an mm that
                // it drops only after this returns: both are tables of `mem`.
                let ours = unsafe { mem.read(ns_pgd, i) };
                // SAFETY: `src` is that PGD, or the global nonsensitive top-level table, a table
                // of `mem` that is never freed.
                checked &= ours == unsafe { mem.read(src, i) };
            }
            // The kernel can run on it, as on the global table.
            let mut r = RunOn {
                buf: match KBox::new([0u8; 256], GFP_KERNEL) {
                    Ok(b) => b,
                    Err(_) => {
                        checked = false;
                        return;
                    }
                },
                cpu: u32::MAX,
                sum: 0,
            };
            // SAFETY: The mm's table has the kernel half of the global one, which maps the
            // function's code, stack, per-CPU data and buffer (see the test above).
            let ret = unsafe { sys::test::run_on(ns_pgd, on_nonsensitive, (&raw mut r).cast()) };
            let expected: u64 = (0..256u64).map(|i| (i % 64) ^ 0x5a).sum();
            ran = ret == 0 && r.sum == expected;
        })?;
        let after = tables::stats();
        assert!(checked);
        assert!(ran);
        assert_eq!(after.ns_pgds_created, before.ns_pgds_created + 1);
        // Freed with the mm.
        assert_eq!(after.ns_pgds, before.ns_pgds);
        Ok(())
    }

    #[test]
    fn failed_ns_pgd_fails_the_mm_and_leaks_nothing() {
        if tables_or_none().is_none() {
            return;
        }
        let before = tables::stats();
        let mut called = false;
        let r = sys::test::mm_ns_pgd(true, &mut |_, _| called = true);
        let after = tables::stats();
        assert_eq!(r, Err(ENOMEM));
        assert!(!called);
        assert_eq!(after.ns_pgd_failures, before.ns_pgd_failures + 1);
        assert_eq!(after.ns_pgds, before.ns_pgds);
        assert_eq!(after.ns_pgds_created, before.ns_pgds_created);
    }

    use crate::{
        actions::Site,
        policy::{Action, Actions, CpuState, Event, MmId},
        sys::ActionCounter,
    };

    /// What happens before one return to user mode in [`actions_follow_the_model`]: an exit
    /// (`Some(foreign)`) or none, and the mm that returns.
    const BETWEEN: [(Option<bool>, u64); 6] = [
        (None, 1),
        (Some(false), 1),
        (Some(true), 1),
        (None, 2),
        (Some(false), 2),
        (Some(true), 2),
    ];

    /// Returns to user mode in one sequence of [`actions_follow_the_model`].
    const RETURNS: usize = 4;

    /// This CPU's counters of `action`: (required, executed, required before user code).
    fn action_counts(cpu: u32, action: Action) -> (u64, u64, u64) {
        (
            sys::action_count(cpu, ActionCounter::Required(action)).unwrap_or(0),
            sys::action_count(cpu, ActionCounter::Executed(action)).unwrap_or(0),
            sys::action_count(cpu, ActionCounter::RequiredRun(action)).unwrap_or(0),
        )
    }

    /// Runs the returns `seq` (indices into [`BETWEEN`]) through the kernel's machinery, on a
    /// model state of the test's own: real exits from the global nonsensitive tables of `t`,
    /// which run the armed actions, and the kernel's return-to-user path, which runs the model.
    /// Checks the actions each site was asked to run against the eager model, step by step,
    /// and this CPU's counters against both.
    /// Logs the details of a failure if `verbose`.
    ///
    /// # Safety
    ///
    /// Interrupts are disabled.
    unsafe fn check_sequence(t: &tables::Tables, seq: &[usize], verbose: bool) -> bool {
        let cpu = sys::test::cpu();
        let setup = crate::mitigation::setup().copied();
        let Some(setup) = setup else { return false };
        let before = Action::ALL.map(|a| action_counts(cpu, a));
        let start = CpuState::new(MmId(0));
        let mut saved = sys::test::saved_policy(start);
        // SAFETY: The caller guarantees that interrupts are disabled, and `saved` is a state
        // of `saved_policy()`.
        unsafe { sys::test::policy_swap(&mut saved) };
        sys::test::record_actions(true);
        for &i in seq {
            let Some(&(exit, mm)) = BETWEEN.get(i) else {
                continue;
            };
            if let Some(foreign) = exit {
                // SAFETY: `t.pgd()` is the global nonsensitive top-level table, which maps the
                // kernel's code, stacks and per-CPU data (`kernel_runs_on_nonsensitive_tables`).
                unsafe { sys::test::exit(t.pgd(), foreign) };
            }
            sys::test::return_to_user(mm);
        }
        sys::test::record_actions(false);
        let (recorded, n) = sys::test::recorded();
        // SAFETY: Interrupts are still disabled, and `saved` is the state the first swap
        // returned.
        unsafe { sys::test::policy_swap(&mut saved) };

        // The eager model, event by event.
        let mut model = start;
        let mut expected = [(Site::Exit, Actions::NONE); sys::test::MAX_RECORDED];
        let mut len = 0;
        let mut push = |site: Site, actions: Actions| {
            if actions.is_empty() {
                return true;
            }
            let Some(slot) = expected.get_mut(len) else {
                return false;
            };
            *slot = (site, actions);
            len += 1;
            true
        };
        let mut required = [0u64; 4];
        let mut executed = [0u64; 4];
        let mut required_run = [0u64; 4];
        let mut count = |site: Site, actions: Actions| {
            for a in actions.iter() {
                if let Some(r) = required.get_mut(a.index()) {
                    *r += 1;
                }
                if site == Site::Run {
                    if let Some(r) = required_run.get_mut(a.index()) {
                        *r += 1;
                    }
                }
                if setup.at(site).contains(a) {
                    if let Some(e) = executed.get_mut(a.index()) {
                        *e += 1;
                    }
                }
            }
        };
        for &i in seq {
            let Some(&(exit, mm)) = BETWEEN.get(i) else {
                continue;
            };
            if let Some(foreign) = exit {
                let actions = model.step(Event::Exit);
                count(Site::Exit, actions);
                if !push(Site::Exit, actions) {
                    return false;
                }
                if foreign {
                    // In the sensitive space already: nothing to run.
                    if !model.step(Event::Interrupt).is_empty() {
                        return false;
                    }
                }
            }
            if model.mm() != MmId(mm) {
                model.step(Event::SwitchMm(MmId(mm)));
            }
            let actions = model.step(Event::Run(crate::policy::Class::User));
            count(Site::Run, actions);
            if !push(Site::Run, actions) {
                return false;
            }
        }
        let after = Action::ALL.map(|a| action_counts(cpu, a));
        let counters_ok = Action::ALL.into_iter().all(|a| {
            let i = a.index();
            let (Some(b), Some(f)) = (before.get(i), after.get(i)) else {
                return false;
            };
            let (Some(r), Some(e), Some(rr)) =
                (required.get(i), executed.get(i), required_run.get(i))
            else {
                return false;
            };
            f.0.wrapping_sub(b.0) == *r
                && f.1.wrapping_sub(b.1) == *e
                && f.2.wrapping_sub(b.2) == *rr
        });
        let ok = n == len && recorded.get(..n) == expected.get(..len) && counters_ok;
        if !ok && verbose {
            pr_err!(
                "returns {:?}: recorded {} {:?} expected {} {:?} counters {} before {:?} after {:?} req {:?} exe {:?}\n",
                seq,
                n,
                recorded.get(..n.min(4)),
                len,
                expected.get(..len.min(4)),
                counters_ok,
                before,
                after,
                required,
                executed
            );
        }
        ok
    }

    #[test]
    fn actions_follow_the_model() {
        let Some(t) = tables_or_none() else {
            return;
        };
        let mut sequences = 0u32;
        let mut failed = 0u32;
        let mut seq = [0usize; RETURNS];
        for len in 1..=RETURNS {
            let total = BETWEEN.len().pow(len as u32);
            for n in 0..total {
                let mut rest = n;
                for slot in seq.iter_mut().take(len) {
                    *slot = rest % BETWEEN.len();
                    rest /= BETWEEN.len();
                }
                let Some(seq) = seq.get(..len) else { continue };
                let mut ok = false;
                let verbose = failed == 0;
                sys::test::with_irqs_off(&mut || {
                    // SAFETY: `with_irqs_off()` runs this with interrupts disabled.
                    ok = unsafe { check_sequence(t, seq, verbose) };
                });
                sequences += 1;
                if !ok {
                    failed += 1;
                }
            }
        }
        assert_eq!(sequences, 6 + 36 + 216 + 1296);
        assert_eq!(failed, 0);
    }

    #[test]
    fn only_enabled_actions_execute() {
        let Some(setup) = crate::mitigation::setup().copied() else {
            return;
        };
        let all = Actions::clearing(crate::policy::Taints::ALL);
        for site in [Site::Exit, Site::Run] {
            let cpu_counts = |cpu| Action::ALL.map(|a| action_counts(cpu, a));
            let mut ok = false;
            sys::test::with_irqs_off(&mut || {
                let cpu = sys::test::cpu();
                let before = cpu_counts(cpu);
                sys::test::run_actions(all, site);
                let after = cpu_counts(cpu);
                ok = Action::ALL.into_iter().all(|a| {
                    let i = a.index();
                    let (Some(b), Some(f)) = (before.get(i), after.get(i)) else {
                        return false;
                    };
                    // Running is not requiring: only the model counts that.
                    f.0 == b.0 && f.1.wrapping_sub(b.1) == u64::from(setup.at(site).contains(a))
                });
            });
            assert!(ok);
        }
        // Whatever the CPU cannot do is never enabled.
        for a in Action::ALL {
            if setup.support_of(a) == crate::actions::Support::None {
                assert!(!setup.at(Site::Exit).contains(a) && !setup.at(Site::Run).contains(a));
            }
        }
    }
}
