// SPDX-License-Identifier: GPL-2.0

//! Address Space Isolation (ASI), the Rust core.
//!
//! See `Documentation/arch/x86/asi.rst`. The boot decision and all code that runs in `noinstr`
//! context are C (`arch/x86/mm/asi/asi.c`); this crate owns what can run instrumented: the
//! state and its reporting, the debugfs interface and the tests.
//!
//! Layout of the crate:
//!
//! - [`actions`], [`cr3`], [`pcid_rules`], [`pgtable`], [`policy`], [`stats`] and [`status`] are
//!   pure logic on `core` alone, shared with the host test crate (`cargo test` at the top of the
//!   repository); the host model of the TLB runs [`pcid_rules`] too.
//! - [`sys`] is the only module that calls C. It wraps each function of `asm/asi.h` once.
//! - [`tables`] builds the nonsensitive page tables and keeps the sensitivity of each page.
//! - [`mitigation`] drives the taint model on each CPU and sets up the mitigation actions.
//! - [`debugfs`] builds `/sys/kernel/debug/asi/`.
//! - [`kunit`] is the KUnit suite `asi`.

use kernel::prelude::*;

mod actions;
#[expect(
    dead_code,
    reason = "the nonsensitive encoding and PTI's user space serve the tests only"
)]
mod cr3;
mod debugfs;
mod kunit;
mod mitigation;
mod ns_pgd;
mod pcid_rules;
mod pgtable;
mod policy;
mod stats;
mod status;
mod sys;
mod tables;

/// The decisions of the PCID rules, [`pcid_rules::TABLE`], for `asi.c`: its CR3 writes are
/// `noinstr` and cannot call Rust, so they look the rules' decisions up here.
#[export_name = "asi_pcid_rules"]
static ASI_PCID_RULES: [[u8; 4]; pcid_rules::NR_EVENTS] = pcid_rules::TABLE;

// C's names for the events and the bits of the table are the rules' own.
const _: () = {
    use kernel::bindings as b;
    use pcid_rules::Event as E;
    let events = [
        (
            b::asi_pcid_event_ASI_PCID_LOCAL_FLUSH_FULL,
            E::LocalFlushFull,
        ),
        (b::asi_pcid_event_ASI_PCID_LOCAL_FLUSH_NS, E::LocalFlushNs),
        (b::asi_pcid_event_ASI_PCID_NEW_ASID, E::NewAsid),
        (b::asi_pcid_event_ASI_PCID_LOAD_FULL, E::LoadFull),
        (b::asi_pcid_event_ASI_PCID_LOAD_FULL_KEEP, E::LoadFullKeep),
        (b::asi_pcid_event_ASI_PCID_LOAD_NS, E::LoadNs),
        (b::asi_pcid_event_ASI_PCID_LOAD_NS_KEEP, E::LoadNsKeep),
    ];
    let mut i = 0;
    while i < events.len() {
        assert!(events[i].0 as u64 == events[i].1 as u64);
        i += 1;
    }
    assert!(b::asi_pcid_event_ASI_PCID_NR_EVENTS as usize == pcid_rules::NR_EVENTS);
    assert!(b::ASI_PCID_FULL as u64 == pcid_rules::FULL as u64);
    assert!(b::ASI_PCID_NS as u64 == pcid_rules::NS as u64);
    assert!(b::ASI_PCID_NOFLUSH as u64 == pcid_rules::NOFLUSH as u64);
};

/// Prefix of this crate's kernel log lines: `asi: `.
const __LOG_PREFIX: &[u8] = b"asi\0";

/// The current state of ASI.
///
/// Counts CPUs with the CPU hotplug lock held, so it may sleep.
fn current_status() -> status::Status {
    let census = sys::cpu_flag_census();
    let snap = sys::cr3_snapshot();
    status::Status {
        enabled: sys::boot_cpu_has_asi(),
        request: sys::boot_request(),
        pti: sys::pti_on(),
        off_reason: sys::off_reason(),
        pcid: snap.pcid,
        cpus_online: census.online,
        cpus_flagged: census.flagged,
        cr3_encoding_ok: cr3_encoding_of(&snap) == Ok(cr3::Cr3::from_raw(snap.cr3)),
    }
}

/// The sensitive CR3 that ASI's encoder builds from the inputs in `snap`. It must be the CR3
/// that the CPU runs with, which is in `snap.cr3`.
fn cr3_encoding_of(snap: &sys::Cr3Snapshot) -> Result<cr3::Cr3, cr3::Cr3Error> {
    // The kernel's ASID allocator does not reserve ASI's PCID bit yet.
    let layout = cr3::PcidLayout::new(snap.pti_pcid, true);
    let enc = cr3::Cr3Encoder::new(snap.pcid, layout, snap.me_mask);
    enc.sensitive(snap.pgd_pa, snap.asid, snap.lam)
}

/// Builds the nonsensitive page tables and sets up the mitigation actions: the part of ASI's
/// setup that is Rust's. Called by `asi_setup()` on the boot CPU before alternatives are
/// patched; on failure nothing is left allocated and ASI stays off.
///
/// # Safety
///
/// No requirements: the function is `unsafe` only because `#[export]` checks it against the
/// bindgen declaration of its C prototype, which is `unsafe`. It is called once, from
/// `asi_setup()` in `arch/x86/mm/asi/asi.c`.
#[export]
pub unsafe extern "C" fn asi_core_setup() -> c_int {
    if let Err(e) = tables::init() {
        return e.to_errno();
    }
    mitigation::init();
    0
}

/// Counts the global leaves of the kernel's direct map, see [`tables::global_direct_map_leaves`].
///
/// # Safety
///
/// No requirements: the lookups are lockless and only read the kernel's page tables. Called
/// from `asi_setup()` in `arch/x86/mm/asi/asi.c`.
#[export]
pub unsafe extern "C" fn asi_count_global_direct_map() -> u64 {
    tables::global_direct_map_leaves()
}

/// Logs ASI's state. Called from an early initcall, before SMP bring-up.
///
/// # Safety
///
/// No requirements, see [`asi_core_setup`]. It is called once, from `asi_early_init()` in
/// `arch/x86/mm/asi/asi.c`.
#[export]
pub unsafe extern "C" fn asi_core_init() -> c_int {
    let status = current_status();
    pr_info!("{}\n", status.boot_line());
    // asi_check_boottime() and asi_setup() set the flag and the reason together; anything else
    // is a kernel bug.
    kernel::warn_on!(status.enabled != status.expected());
    0
}

/// Gives a new mm its nonsensitive top-level table, see [`ns_pgd::init_mm`].
///
/// # Safety
///
/// Called from `init_new_context()` with the new mm, which has its PGD and no user yet.
#[export]
pub unsafe extern "C" fn asi_mm_init(mm: *mut kernel::bindings::mm_struct) -> c_int {
    // SAFETY: As guaranteed by the caller.
    match unsafe { ns_pgd::init_mm(mm) } {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Frees an mm's nonsensitive top-level table, see [`ns_pgd::destroy_mm`].
///
/// # Safety
///
/// Called from `destroy_context()`: nothing uses the mm any more.
#[export]
pub unsafe extern "C" fn asi_mm_destroy(mm: *mut kernel::bindings::mm_struct) {
    // SAFETY: As guaranteed by the caller.
    unsafe { ns_pgd::destroy_mm(mm) }
}

/// Makes `nr` pages from `pfn` sensitive, see [`tables::make_sensitive`].
///
/// # Safety
///
/// The caller owns the pages: it is allocating them.
#[export]
pub unsafe extern "C" fn asi_make_sensitive(
    pfn: usize,
    nr: usize,
    can_flush: bool,
    movable: bool,
) -> bool {
    tables::make_sensitive(pfn as u64, nr as u64, can_flush, movable)
}

/// Makes `nr` pages from `pfn` that come online or went offline sensitive, see
/// [`tables::hotplug_make_sensitive`].
#[export]
pub extern "C" fn asi_hotplug_sensitive(pfn: usize, nr: usize) -> bool {
    tables::hotplug_make_sensitive(pfn as u64, nr as u64)
}

/// Makes the sensitive pages among `nr` pages from `pfn` nonsensitive, see
/// [`tables::make_nonsensitive`].
///
/// # Safety
///
/// The caller owns the pages: it is allocating them, and has mapped them in the kernel's
/// direct map (`post_alloc_hook()`).
#[export]
pub unsafe extern "C" fn asi_make_nonsensitive(pfn: usize, nr: usize) {
    // SAFETY: As guaranteed by the caller.
    unsafe { tables::make_nonsensitive(pfn as u64, nr as u64) }
}

/// How many of `nr` pages from `pfn` are sensitive, see [`tables::count_sensitive`].
///
/// # Safety
///
/// No requirements: it only reads the state of each page, in any context.
#[export]
pub unsafe extern "C" fn asi_nr_sensitive(pfn: usize, nr: usize) -> usize {
    // The count is at most `nr`, a `usize`.
    tables::count_sensitive(pfn as u64, nr as u64) as usize
}

/// Follows a change of the kernel's direct map, see [`tables::mirror`].
///
/// # Safety
///
/// Called by CPA after it changed the kernel's mapping of `nr` pages at `va`, on pages their
/// owner allocated.
#[export]
pub unsafe extern "C" fn asi_mirror_direct_map(va: usize, nr: usize) {
    tables::mirror(va as u64, nr as u64)
}

/// Whether the kernel's own tables grant the access of a kernel-mode page fault at `address`
/// with `error_code`, which happened on the nonsensitive tables: then the fault was ASI's alone
/// and the instruction can be retried on the full tables. See [`pgtable::fault_granted`].
///
/// # Safety
///
/// No requirements, see [`asi_core_init`]. Called from `exc_page_fault()` after it left the
/// nonsensitive space, in any context the page-fault handler runs in, NMI included: it neither
/// sleeps nor allocates nor takes locks.
#[export]
pub unsafe extern "C" fn asi_fault_granted(address: usize, error_code: usize) -> bool {
    sys::kernel_leaf(address as u64)
        .is_some_and(|(_, leaf)| pgtable::fault_granted(leaf, error_code as u64))
}

/// A return to user mode of the mm with `ctx_id` on this CPU: the actions to run before user
/// code, as a mask of `enum asi_action` bits. See [`mitigation::return_to_user`].
///
/// # Safety
///
/// Called with interrupts disabled, outside NMI context, after the model was initialised
/// (`asi_policy_ready()`), from `__asi_return_to_user()` or the KUnit suite.
#[export]
pub unsafe extern "C" fn asi_policy_return_to_user(ctx_id: u64) -> u8 {
    // SAFETY: As guaranteed by the caller.
    unsafe { mitigation::return_to_user(ctx_id) }.mask()
}

/// Creates `/sys/kernel/debug/asi/`. Called from a late initcall.
///
/// # Safety
///
/// No requirements, see [`asi_core_init`]. It is called once, from `asi_late_init()` in
/// `arch/x86/mm/asi/asi.c`; a second call fails with `EBUSY`.
#[export]
pub unsafe extern "C" fn asi_debugfs_init() -> c_int {
    match debugfs::init() {
        Ok(()) => 0,
        Err(e) => {
            pr_err!("cannot create the debugfs interface: {:?}\n", e);
            e.to_errno()
        }
    }
}

/// Lets the kernel's print macros format the core-only types of this crate.
macro_rules! kernel_display {
    ($($t:ty),* $(,)?) => {
        $(
            impl kernel::fmt::Display for $t {
                fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
                    core::fmt::Display::fmt(self, f)
                }
            }
        )*
    };
}

kernel_display!(
    status::Status,
    status::BootLine<'_>,
    stats::Stats,
    stats::Report
);
