// SPDX-License-Identifier: GPL-2.0

//! The ASI crate's only calls into C.
//!
//! Each function here wraps one function of `arch/x86/include/asm/asi.h` and turns its result
//! into a safe Rust value. No other module of the crate calls into `kernel::bindings`.
//!
//! A wrapper is safe only if it is sound whatever its arguments. One that reaches memory at an
//! address its caller names (a page-table page, a page, a page table to load) or whose
//! soundness depends on the context it runs in is an `unsafe fn`, whose `# Safety` section says
//! what the caller guarantees. The pages a test allocates come as a `test::Pages`, which owns
//! them.

use crate::{
    actions::{Site, Support},
    policy::{Action, Actions, CpuState, Pending},
    status::{BootRequest, OffReason},
};
use kernel::{
    bindings,
    str::{CStr, CStrExt},
    sync::atomic::{Atomic, Full},
};

/// What the `asi=` boot parameter asked for.
pub(crate) fn boot_request() -> BootRequest {
    // SAFETY: `asi_boot_request()` has no preconditions; it reads a variable that is only
    // written while early parameters are parsed.
    let raw = unsafe { bindings::asi_boot_request() };
    match BootRequest::from_raw(raw) {
        Some(request) => request,
        None => {
            // The C enum and `BootRequest` disagree: a kernel bug.
            kernel::warn_on!(true);
            BootRequest::Invalid
        }
    }
}

/// Whether the boot CPU has `X86_FEATURE_ASI`.
pub(crate) fn boot_cpu_has_asi() -> bool {
    // SAFETY: `asi_boot_cpu_has_asi()` has no preconditions.
    unsafe { bindings::asi_boot_cpu_has_asi() }
}

/// Whether PTI is on (`X86_FEATURE_PTI`).
pub(crate) fn pti_on() -> bool {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_pti_on() }
}

/// Why the kernel left ASI off although `asi=on` asked for it.
pub(crate) fn off_reason() -> OffReason {
    // SAFETY: No preconditions; it reads a variable that is only written during early boot.
    let raw = unsafe { bindings::asi_off_reason() };
    match OffReason::from_raw(raw) {
        Some(reason) => reason,
        None => {
            // The C enum and `OffReason` disagree: a kernel bug.
            kernel::warn_on!(true);
            OffReason::None
        }
    }
}

/// How many online CPUs there are, and how many of them show the `asi` flag.
pub(crate) struct FlagCensus {
    /// Online CPUs.
    pub(crate) online: u32,
    /// Online CPUs with `X86_FEATURE_ASI` in their capabilities.
    pub(crate) flagged: u32,
}

/// Counts the online CPUs with and without the `asi` flag. Takes the CPU hotplug lock, so it
/// may sleep.
pub(crate) fn cpu_flag_census() -> FlagCensus {
    let mut online = 0;
    let mut flagged = 0;
    // SAFETY: Both pointers are valid for writes for the duration of the call. The function
    // takes `cpus_read_lock()`, which is fine: every caller in this crate runs in process
    // context.
    unsafe { bindings::asi_cpu_flag_census(&mut online, &mut flagged) };
    FlagCensus { online, flagged }
}

/// This CPU's CR3 and the inputs it was built from, see `struct asi_cr3_snapshot`.
pub(crate) struct Cr3Snapshot {
    /// CR3 as read from the CPU.
    pub(crate) cr3: u64,
    /// Physical address of the loaded mm's PGD.
    pub(crate) pgd_pa: u64,
    /// LAM bits of the loaded mm.
    pub(crate) lam: u64,
    /// The memory-encryption bit that every CR3 carries (`sme_me_mask`), 0 without SME.
    pub(crate) me_mask: u64,
    /// ASID of the loaded mm on this CPU.
    pub(crate) asid: u16,
    /// Whether the CPU uses PCIDs.
    pub(crate) pcid: bool,
    /// Whether PTI takes a PCID bit in this kernel.
    pub(crate) pti_pcid: bool,
}

/// Takes a consistent snapshot of this CPU's CR3.
pub(crate) fn cr3_snapshot() -> Cr3Snapshot {
    let mut raw = bindings::asi_cr3_snapshot::default();
    // SAFETY: `raw` is valid for writes for the duration of the call; the function disables
    // preemption itself while it reads the per-CPU state.
    unsafe { bindings::asi_cr3_snapshot(&mut raw) };
    Cr3Snapshot {
        cr3: raw.cr3,
        pgd_pa: raw.pgd_pa,
        lam: raw.lam,
        me_mask: raw.me_mask,
        asid: raw.asid,
        pcid: raw.pcid,
        pti_pcid: raw.pti_pcid,
    }
}

/// Where the kernel's page tables and direct map are, see `struct asi_layout`.
pub(crate) fn layout() -> bindings::asi_layout {
    let mut raw = bindings::asi_layout::default();
    // SAFETY: `raw` is valid for writes for the duration of the call.
    unsafe { bindings::asi_get_layout(&mut raw) };
    raw
}

/// Page-table memory, reached through the kernel's direct map.
///
/// Its tables (see [`TableMemory`]) are the page-table pages of the kernel's own tables
/// (`init_mm`'s and each mm's PGD and the tables below), while the kernel keeps them allocated,
/// and ASI's: each page [`alloc_table`](crate::pgtable::TableMemory::alloc_table) or
/// [`alloc_ns_pgd`] returned, until [`free_table`] frees it. All of them are kernel memory that
/// the kernel's direct map maps; ASI's direct map maps them too, and where it would not, the
/// access faults and leaves the nonsensitive space first.
///
/// [`TableMemory`]: crate::pgtable::TableMemory
///
/// # Invariants
///
/// `page_offset` is the kernel's `PAGE_OFFSET`.
pub(crate) struct DirectMapTables {
    page_offset: u64,
}

impl DirectMapTables {
    /// Page-table access through the kernel's direct map.
    pub(crate) fn new() -> Self {
        // INVARIANT: `asi_get_layout()` reports `PAGE_OFFSET`.
        DirectMapTables {
            page_offset: layout().page_offset,
        }
    }

    /// The direct-map address of entry `index` (modulo [`ENTRIES`]) of the table at `table`.
    ///
    /// [`ENTRIES`]: crate::pgtable::ENTRIES
    fn entry(&self, table: u64, index: usize) -> *mut u64 {
        let index = index % crate::pgtable::ENTRIES;
        (self.page_offset.wrapping_add(table) as usize as *mut u64).wrapping_add(index)
    }
}

// SAFETY: By the type invariant, `entry()` of a table is the address of one of its entries in
// the kernel's direct map, whose mapping of a page-table page stays while the page is
// allocated; the index is kept inside the table. `alloc_table` returns pages of
// `asi_alloc_table()`, which are zeroed.
unsafe impl crate::pgtable::TableMemory for DirectMapTables {
    unsafe fn read(&self, table: u64, index: usize) -> u64 {
        // SAFETY: The caller guarantees that `table` is a table of this memory: `entry()` is a
        // mapped, naturally aligned `u64` inside it. Other CPUs may change it concurrently: a
        // volatile read is the `READ_ONCE()` the kernel uses.
        unsafe { core::ptr::read_volatile(self.entry(table, index)) }
    }

    unsafe fn write(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: As for `read`; the entry is written in one store (`WRITE_ONCE()`), and the
        // caller guarantees that no CPU translates through the table.
        unsafe { core::ptr::write_volatile(self.entry(table, index), value) }
    }

    fn alloc_table(&mut self) -> Option<u64> {
        // SAFETY: `asi_alloc_table()` has no preconditions; it may sleep, and is only
        // called while the tables are built, from an initcall.
        let pa = unsafe { bindings::asi_alloc_table() };
        (pa != 0).then_some(pa)
    }
}

impl DirectMapTables {
    /// Writes entry `index` of the table at `table` through a shared reference, in one store
    /// (`WRITE_ONCE()`), as CPUs may translate through the table meanwhile.
    ///
    /// The caller is meant to own that entry (it belongs to a page the caller is allocating, or
    /// to a table nothing else knows of yet, or is protected by the caller's lock). Two writers
    /// of one entry do not tear it, but the later store wins.
    ///
    /// # Safety
    ///
    /// - `table` is a table of this memory (see [`DirectMapTables`]).
    /// - If a CPU may translate through `table`, `value` is not present, or is a leaf that maps
    ///   its addresses to the frames the kernel's own tables map them to.
    pub(crate) unsafe fn write_owned(&self, table: u64, index: usize, value: u64) {
        // SAFETY: The caller guarantees that `table` is a table of this memory: `entry()` is a
        // mapped, naturally aligned `u64` inside it. The caller also guarantees that the new
        // entry maps nothing but what the kernel maps, so code running on these tables sees
        // the kernel's memory or faults.
        unsafe { core::ptr::write_volatile(self.entry(table, index), value) }
    }

    /// Writes `new` into entry `index` of the table at `table` and returns the entry it
    /// replaced, in one atomic operation (`xchg()`).
    ///
    /// # Safety
    ///
    /// As for [`DirectMapTables::write_owned`], for `new`.
    pub(crate) unsafe fn xchg_owned(&self, table: u64, index: usize, new: u64) -> u64 {
        // SAFETY: The caller guarantees that `table` is a table of this memory: `entry()` is a
        // mapped, naturally aligned `u64` inside it, which lives as long as the table. Every
        // access to it is a single volatile load or store (`READ_ONCE()`/`WRITE_ONCE()`) or an
        // atomic operation, as the kernel's own page-table code mixes them. The caller
        // guarantees that `new` maps nothing but what the kernel maps.
        unsafe { Atomic::from_ptr(self.entry(table, index)) }.xchg(new, Full)
    }

    /// Writes `new` into entry `index` of the table at `table` if the entry is still `old`, in
    /// one atomic operation (`cmpxchg()`). Returns the entry found: `Ok(old)` if it was
    /// replaced, `Err(current)` if not.
    ///
    /// # Safety
    ///
    /// As for [`DirectMapTables::write_owned`], for `new`.
    pub(crate) unsafe fn cmpxchg_owned(
        &self,
        table: u64,
        index: usize,
        old: u64,
        new: u64,
    ) -> core::result::Result<u64, u64> {
        // SAFETY: As for `xchg_owned()`.
        unsafe { Atomic::from_ptr(self.entry(table, index)) }.cmpxchg(old, new, Full)
    }
}

/// Frees a table of [`DirectMapTables`]'s `alloc_table` or of [`alloc_ns_pgd`].
///
/// # Safety
///
/// `table` came from one of those and has not been freed since. No table links it any more, no
/// CPU translates through it or still holds translations cached from it, and nothing reads it
/// after this call.
pub(crate) unsafe fn free_table(table: u64) {
    // SAFETY: The caller guarantees that `table` is a page of `asi_alloc_table()` or
    // `asi_alloc_ns_pgd()` (both `get_zeroed_page()`) that nothing uses any more.
    unsafe { bindings::asi_free_table(table) }
}

/// The kernel's leaf entry mapping `va` and its level, `None` if `va` is not mapped.
pub(crate) fn kernel_leaf(va: u64) -> Option<(crate::pgtable::Level, u64)> {
    let mut level = 0;
    // SAFETY: `level` is valid for writes; the lookup is lockless and works in any context.
    let e = unsafe { bindings::asi_kernel_leaf(va as usize, &mut level) };
    let l = match level {
        0 => crate::pgtable::Level::PTE,
        1 => crate::pgtable::Level::PMD,
        _ => crate::pgtable::Level::PUD,
    };
    (e != 0).then_some((l, e))
}

/// Flushes the whole TLB of every CPU, global entries included. Sends IPIs: only in task
/// context with interrupts enabled.
pub(crate) fn flush_kernel_all() {
    // SAFETY: The callers only flush where IPIs may be sent (`asi_alloc_sensitive()` checks).
    unsafe { bindings::asi_flush_kernel_all() }
}

/// Takes free order-0 pages off the free lists, without sleeping, into `pfns`; returns how
/// many. They go back with [`batch_free`].
pub(crate) fn batch_alloc(pfns: &mut [usize], movable: bool) -> usize {
    let n = u32::try_from(pfns.len()).unwrap_or(0);
    // SAFETY: `pfns` is valid for writes of `n` entries.
    let got = unsafe { bindings::asi_batch_alloc(pfns.as_mut_ptr(), n, movable) };
    (got as usize).min(pfns.len())
}

/// Frees the pages [`batch_alloc`] returned.
///
/// # Safety
///
/// `pfns` holds pages that [`batch_alloc`] returned and that have not been freed since, each
/// once, and nothing uses them any more.
pub(crate) unsafe fn batch_free(pfns: &[usize]) {
    let n = u32::try_from(pfns.len()).unwrap_or(0);
    // SAFETY: `pfns` is valid for reads of `n` entries, and the caller guarantees that they
    // are pages of `asi_batch_alloc()` that nothing uses, each freed once, here.
    unsafe { bindings::asi_batch_free(pfns.as_ptr(), n) }
}

/// Zeroes the page `pfn` through the kernel's direct map.
///
/// # Safety
///
/// The caller owns the page `pfn`, which the kernel's direct map maps: it is allocating it, and
/// nothing else reads or writes the page while it is zeroed.
pub(crate) unsafe fn clear_page(pfn: u64) {
    // SAFETY: The caller guarantees that the page is mapped and that nothing else uses it.
    unsafe { bindings::asi_clear_page(pfn as usize) }
}

/// Which transition counter: enters, or exits for one reason (`enum asi_exit_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Entries into the nonsensitive address space, returns from NMIs that left included.
    Enter,
    /// Exits on a kernel-mode page fault on a kernel address.
    ExitPageFault,
    /// Exits before `switch_mm_irqs_off()` loads another CR3.
    ExitSwitchMm,
    /// Exits before code reads CR3 to load it again later.
    ExitCr3Read,
    /// Exits of a lazy CPU that a TLB flush moves to `init_mm`.
    ExitTlbFlush,
    /// Exits on a page fault inside an NMI, undone when the NMI returns.
    ExitNmi,
    /// Other exits: oops, double fault, kexec, tests.
    ExitOther,
    /// Switches to another mm that stay in the nonsensitive space.
    Switch,
}

impl Transition {
    /// All counters, in the order the debugfs file shows them, with their names.
    pub(crate) const ALL: [(Transition, &'static str); 8] = [
        (Transition::Enter, "enters"),
        (Transition::ExitPageFault, "exits_page_fault"),
        (Transition::ExitSwitchMm, "exits_switch_mm"),
        (Transition::ExitCr3Read, "exits_cr3_read"),
        (Transition::ExitTlbFlush, "exits_tlb_flush"),
        (Transition::ExitNmi, "exits_nmi"),
        (Transition::ExitOther, "exits_other"),
        (Transition::Switch, "switches"),
    ];

    fn raw(self) -> i32 {
        let reason = match self {
            Transition::Enter => return -1,
            Transition::Switch => return -2,
            Transition::ExitPageFault => bindings::asi_exit_reason_ASI_EXIT_PAGE_FAULT,
            Transition::ExitSwitchMm => bindings::asi_exit_reason_ASI_EXIT_SWITCH_MM,
            Transition::ExitCr3Read => bindings::asi_exit_reason_ASI_EXIT_CR3_READ,
            Transition::ExitTlbFlush => bindings::asi_exit_reason_ASI_EXIT_TLB_FLUSH,
            Transition::ExitNmi => bindings::asi_exit_reason_ASI_EXIT_NMI,
            Transition::ExitOther => bindings::asi_exit_reason_ASI_EXIT_OTHER,
        };
        reason as i32
    }
}

/// The counter `what` of `cpu`, `None` if that CPU is not possible.
pub(crate) fn transition_count(cpu: u32, what: Transition) -> Option<u64> {
    let mut count = 0;
    // SAFETY: `count` is valid for writes; the function checks `cpu` and `what`.
    unsafe { bindings::asi_transition_count(cpu, what.raw(), &mut count) }.then_some(count)
}

/// ASI's CR3 writes on `cpu` that kept (`noflush`) or flushed the PCID they load, `None` if
/// that CPU is not possible.
pub(crate) fn cr3_write_count(cpu: u32, noflush: bool) -> Option<u64> {
    let mut count = 0;
    let what = if noflush { -4 } else { -3 };
    // SAFETY: `count` is valid for writes; the function checks `cpu`.
    unsafe { bindings::asi_transition_count(cpu, what, &mut count) }.then_some(count)
}

/// One more than the highest possible CPU number.
pub(crate) fn nr_cpu_ids() -> u32 {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_nr_cpu_ids() }
}

/// Zeroes the transition counters of all CPUs.
pub(crate) fn reset_transition_counts() {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_reset_transition_counts() }
}

/// The monotonic clock, in nanoseconds.
pub(crate) fn ktime_ns() -> u64 {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_ktime_ns() }
}

/// Calls `f` with each range of kernel memory that must stay mapped: `(what, va, len)`.
/// Runs `f` under `rcu_read_lock()`: it must not sleep.
pub(crate) fn for_each_required(f: &mut dyn FnMut(&'static CStr, u64, u64)) {
    /// # Safety
    ///
    /// `ctx` is the `&mut &mut dyn FnMut` below and `what` a C string literal.
    unsafe extern "C" fn trampoline(
        ctx: *mut kernel::ffi::c_void,
        what: *const kernel::ffi::c_char,
        va: usize,
        len: usize,
    ) {
        // SAFETY: `ctx` is the `&mut &mut dyn FnMut` passed below, alive for the call.
        let f = unsafe { &mut *ctx.cast::<&mut dyn FnMut(&'static CStr, u64, u64)>() };
        // SAFETY: The C side passes string literals.
        let what = unsafe { CStr::from_char_ptr(what) };
        f(what, va as u64, len as u64);
    }
    let mut f = f;
    let ctx = core::ptr::from_mut::<&mut dyn FnMut(&'static CStr, u64, u64)>(&mut f).cast();
    // SAFETY: `trampoline` matches `asi_required_fn` and `ctx` outlives the call.
    unsafe { bindings::asi_visit_required(Some(trampoline), ctx) };
}

/// How this machine runs `action`.
pub(crate) fn action_support(action: Action) -> Support {
    // SAFETY: No preconditions; the C function checks the value.
    Support::from_raw(unsafe {
        bindings::asi_action_support(action.index() as bindings::asi_action)
    })
}

/// Whether `mitigations=off` was given.
pub(crate) fn mitigations_off() -> bool {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_mitigations_off() }
}

/// Whether the attack vector that the actions at `site` guard against is mitigated.
pub(crate) fn vector_mitigated(site: Site) -> bool {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_vector_mitigated(raw_site(site)) }
}

/// The value of `asi_actions=`, `None` if it was not given.
pub(crate) fn actions_param() -> Option<&'static [u8]> {
    // SAFETY: No preconditions.
    let p = unsafe { bindings::asi_actions_param() };
    // SAFETY: A non-NULL result is a NUL-terminated string that lives as long as the kernel.
    (!p.is_null()).then(|| unsafe { CStr::from_char_ptr(p) }.to_bytes())
}

/// Lets the kernel run `exit` at exits and `run` before user code, once, before user space.
pub(crate) fn set_actions(exit: Actions, run: Actions) {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_set_actions(exit.mask(), run.mask()) }
}

// The per-CPU memory for the model's state is sized and aligned for it.
const _: () = assert!(
    core::mem::size_of::<CpuState>() <= bindings::ASI_POLICY_STATE_BYTES as usize
        && core::mem::align_of::<CpuState>() <= 8
);

/// Sets the model's state of every possible CPU to `state`, then lets the kernel use the states
/// (`asi_policy_ready()`). Only the first call does anything: once the kernel uses the states,
/// writing them would race with it.
pub(crate) fn start_policy(state: CpuState) {
    static STARTED: Atomic<u64> = Atomic::new(0);

    if STARTED.cmpxchg(0, 1, Full).is_err() {
        return;
    }
    for cpu in 0..nr_cpu_ids() {
        // SAFETY: No preconditions; NULL for a CPU that is not possible.
        let p = unsafe { bindings::asi_policy_state(cpu as kernel::ffi::c_int) }.cast::<CpuState>();
        if !p.is_null() {
            // SAFETY: `p` is per-CPU memory of `ASI_POLICY_STATE_BYTES`, 8-byte aligned,
            // which the assertion above shows fits a `CpuState`. Nothing reads it before
            // `asi_policy_ready()`, which only this first call makes, below.
            unsafe { p.write(state) };
        }
    }
    // SAFETY: No preconditions; every possible CPU's state is written.
    unsafe { bindings::asi_policy_ready() }
}

/// Runs `f` on this CPU's model state.
///
/// # Safety
///
/// The caller runs with interrupts disabled, outside NMI context, after [`start_policy`], and
/// not from inside another call of this function: then nothing else accesses the state while
/// `f` runs.
pub(crate) unsafe fn with_this_cpu_policy<R>(f: impl FnOnce(&mut CpuState) -> R) -> R {
    // SAFETY: No preconditions; with a negative CPU the result is this CPU's state.
    let p = unsafe { bindings::asi_policy_state(-1) }.cast::<CpuState>();
    // SAFETY: `start_policy()` wrote a `CpuState` there, and the caller guarantees that this is
    // the only reference to it.
    f(unsafe { &mut *p })
}

/// Takes what the C side noted on this CPU since the last call.
pub(crate) fn take_pending() -> Pending {
    // SAFETY: No preconditions.
    let raw = u32::from(unsafe { bindings::asi_take_pending() });
    Pending {
        exit: raw & bindings::ASI_PENDING_EXIT != 0,
        foreign: raw & bindings::ASI_PENDING_FOREIGN != 0,
    }
}

/// Arms `actions` for this CPU's exits.
pub(crate) fn arm_exit_actions(actions: Actions) {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_arm_exit_actions(actions.mask()) }
}

/// Counts `actions` as required on this CPU at `site`, and a return after foreign code if
/// `foreign`.
pub(crate) fn count_required(actions: Actions, site: Site, foreign: bool) {
    if !actions.is_empty() || foreign {
        // SAFETY: No preconditions.
        unsafe { bindings::asi_count_required(actions.mask(), raw_site(site), foreign) }
    }
}

/// The C value of `site`.
fn raw_site(site: Site) -> bindings::asi_action_site {
    match site {
        Site::Exit => bindings::asi_action_site_ASI_SITE_EXIT,
        Site::Run => bindings::asi_action_site_ASI_SITE_RUN,
    }
}

/// A per-CPU counter of the actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActionCounter {
    /// How often the model required the action.
    Required(Action),
    /// How often the kernel executed it.
    Executed(Action),
    /// How often the model required it before user code, rather than at an exit.
    RequiredRun(Action),
    /// Returns to user mode.
    Returns,
    /// Returns to user mode of an mm other than the last one on the CPU.
    MmSwitches,
    /// Returns to user mode after code that may touch any mm's data ran in the sensitive space.
    Foreign,
}

impl ActionCounter {
    fn raw(self) -> i32 {
        let n = Action::ALL.len() as i32;
        match self {
            ActionCounter::Required(a) => a.index() as i32,
            ActionCounter::Executed(a) => n + a.index() as i32,
            ActionCounter::RequiredRun(a) => 2 * n + a.index() as i32,
            ActionCounter::Returns => 3 * n,
            ActionCounter::MmSwitches => 3 * n + 1,
            ActionCounter::Foreign => 3 * n + 2,
        }
    }
}

/// The counter `what` of `cpu`, `None` if that CPU is not possible.
pub(crate) fn action_count(cpu: u32, what: ActionCounter) -> Option<u64> {
    let mut count = 0;
    // SAFETY: `count` is valid for writes; the function checks `cpu` and `what`.
    unsafe { bindings::asi_action_count(cpu, what.raw(), &mut count) }.then_some(count)
}

/// Zeroes the action counters of all CPUs.
pub(crate) fn reset_action_counts() {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_reset_action_counts() }
}

/// Helpers of the KUnit suite: page allocations and mappings that the tests inspect.
#[cfg(CONFIG_ASI_KUNIT_TEST)]
pub(crate) mod test {
    use crate::{actions::Site, policy::Actions};
    use kernel::bindings;

    /// Pages that a test allocated with [`alloc`], until it frees them with [`Pages::free`].
    ///
    /// A value that is dropped instead leaks its pages.
    ///
    /// # Invariants
    ///
    /// `pfn` is the first of `1 << order` pages that `asi_test_alloc()` (or, for order 0,
    /// `asi_test_alloc_gfp_user()`, `asi_test_free_then_alloc()` or
    /// `asi_test_free_then_alloc_nopreempt()`) allocated for this value
    /// alone. They stay allocated, and
    /// mapped in the kernel's direct map, as long as it exists.
    pub(crate) struct Pages {
        pfn: u64,
        order: u32,
    }

    /// Allocates `1 << order` pages for user data (`user`) or for the kernel, with interrupts
    /// disabled and without sleeping if `irqs_off`. `None` on failure.
    pub(crate) fn alloc(user: bool, irqs_off: bool, order: u32) -> Option<Pages> {
        // SAFETY: No preconditions; the pages belong to the caller.
        let pfn = unsafe { bindings::asi_test_alloc(user, irqs_off, order) };
        // INVARIANT: A PFN that is not 0 starts an allocation of `1 << order` pages.
        (pfn != 0).then_some(Pages {
            pfn: pfn as u64,
            order,
        })
    }

    /// Allocates one page with `GFP_USER`, which holds user data but, unlike the
    /// `GFP_HIGHUSER` family, lacks `__GFP_HIGHMEM`. `None` on failure.
    pub(crate) fn alloc_gfp_user() -> Option<Pages> {
        // SAFETY: No preconditions; the page belongs to the caller.
        let pfn = unsafe { bindings::asi_test_alloc_gfp_user() };
        // INVARIANT: A PFN that is not 0 is an order-0 allocation.
        (pfn != 0).then_some(Pages {
            pfn: pfn as u64,
            order: 0,
        })
    }

    impl Pages {
        /// The first PFN.
        pub(crate) fn pfn(&self) -> u64 {
            self.pfn
        }

        /// Frees the pages.
        pub(crate) fn free(self) {
            // SAFETY: By the type invariant, the pages are an allocation of this order that
            // only `self` uses; `self` is gone after this, so they are freed once.
            unsafe { bindings::asi_test_free(self.pfn as usize, self.order) }
        }

        /// Frees the page, an order-0 one, and allocates one like [`alloc`] on the same CPU.
        /// `None` if that fails, or if there is more than one page (which are freed).
        pub(crate) fn free_then_alloc(self, user: bool, irqs_off: bool) -> Option<Pages> {
            if self.order != 0 {
                self.free();
                return None;
            }
            // SAFETY: By the type invariant, `self.pfn` is an order-0 allocation that only
            // `self` uses; `self` is gone after this, so it is freed once.
            let pfn =
                unsafe { bindings::asi_test_free_then_alloc(self.pfn as usize, user, irqs_off) };
            // INVARIANT: A PFN that is not 0 is an order-0 page allocated for the result.
            (pfn != 0).then_some(Pages {
                pfn: pfn as u64,
                order: 0,
            })
        }

        /// Frees the page, an order-0 one, and allocates a user page without sleeping, with
        /// preemption disabled and interrupts enabled (as under a spinlock), on the same CPU.
        /// `None` if that fails, or if there is more than one page (which are freed).
        pub(crate) fn free_then_alloc_nopreempt(self) -> Option<Pages> {
            if self.order != 0 {
                self.free();
                return None;
            }
            // SAFETY: By the type invariant, `self.pfn` is an order-0 allocation that only
            // `self` uses; `self` is gone after this, so it is freed once.
            let pfn = unsafe { bindings::asi_test_free_then_alloc_nopreempt(self.pfn as usize) };
            // INVARIANT: A PFN that is not 0 is an order-0 page allocated for the result.
            (pfn != 0).then_some(Pages {
                pfn: pfn as u64,
                order: 0,
            })
        }

        /// Fills the first page with `value` through the kernel's direct map.
        pub(crate) fn fill(&mut self, value: u8) {
            // SAFETY: By the type invariant, the page is allocated and mapped, and only `self`
            // uses it, which is borrowed mutably.
            unsafe { bindings::asi_test_fill(self.pfn as usize, value) }
        }

        /// Whether every byte of the first page is `value`.
        pub(crate) fn is_filled(&self, value: u8) -> bool {
            // SAFETY: By the type invariant, the page is allocated and mapped.
            unsafe { bindings::asi_test_is_filled(self.pfn as usize, value) }
        }

        /// Reads the first word of the first page through the kernel's direct map.
        pub(crate) fn read(&self) -> u64 {
            // SAFETY: By the type invariant, the page is allocated and mapped.
            unsafe { bindings::asi_test_read_page(self.pfn as usize) }
        }

        /// Reads the first word of the first page from an NMI (`nmi`) or an interrupt this CPU
        /// sends itself, inside [`with_nested`]. Must run with IRQs and preemption disabled (in
        /// [`run_nonsensitive`]); for the interrupt it enables IRQs while it waits.
        pub(crate) fn nested_read(&self, nmi: bool) -> kernel::error::Result<u64> {
            let mut value = 0;
            // SAFETY: By the type invariant, the page is allocated and mapped; `value` is valid
            // for writes.
            let r =
                unsafe { bindings::asi_test_nested_read_page(self.pfn as usize, nmi, &mut value) };
            kernel::error::to_result(r).map(|()| value)
        }

        /// Maps the first page a second time, in the vmalloc area, until the result is
        /// dropped. `None` on failure.
        pub(crate) fn vmap(&self) -> Option<Vmap<'_>> {
            // SAFETY: By the type invariant, the page is allocated; the mapping borrows `self`,
            // so the page is not freed before the mapping is removed.
            let va = unsafe { bindings::asi_test_vmap(self.pfn as usize) };
            // INVARIANT: A non-zero address is the new mapping.
            (va != 0).then_some(Vmap {
                va: va as u64,
                _pages: core::marker::PhantomData,
            })
        }

        /// Makes the kernel's direct-map entry of the first page read-only.
        ///
        /// # Safety
        ///
        /// Nothing writes the page while it is read-only (no [`Pages::fill`]), and
        /// [`Pages::set_writable`] makes it writable again before it is freed.
        pub(crate) unsafe fn set_read_only(&self) -> kernel::error::Result {
            // SAFETY: By the type invariant, the page is allocated; the caller guarantees that
            // nothing writes it while it is read-only, and that it is not freed so.
            kernel::error::to_result(unsafe { bindings::asi_test_set_ro(self.pfn as usize, true) })
        }

        /// Makes the kernel's direct-map entry of the first page global (`global`), or
        /// non-global again, as CPA does for any kernel page.
        pub(crate) fn set_global(&self, global: bool) -> kernel::error::Result {
            // SAFETY: By the type invariant, the page is allocated, and only `self` uses it;
            // the global bit changes no access the kernel makes.
            kernel::error::to_result(unsafe {
                bindings::asi_test_set_global(self.pfn as usize, global)
            })
        }

        /// Makes the kernel's direct-map entry of the first page writable again.
        pub(crate) fn set_writable(&self) -> kernel::error::Result {
            // SAFETY: By the type invariant, the page is allocated, and only `self` uses it.
            kernel::error::to_result(unsafe { bindings::asi_test_set_ro(self.pfn as usize, false) })
        }
    }

    /// A second mapping of a test's page, in the vmalloc area, made by [`Pages::vmap`]; dropping
    /// it removes the mapping.
    ///
    /// # Invariants
    ///
    /// `va` is what `asi_test_vmap()` returned for the page of the [`Pages`] this borrows, and
    /// has not been unmapped.
    pub(crate) struct Vmap<'a> {
        va: u64,
        _pages: core::marker::PhantomData<&'a Pages>,
    }

    impl Vmap<'_> {
        /// The address of the mapping.
        pub(crate) fn va(&self) -> u64 {
            self.va
        }
    }

    impl Drop for Vmap<'_> {
        fn drop(&mut self) {
            // SAFETY: By the type invariant, `self.va` is a mapping of `asi_test_vmap()`,
            // removed once, here.
            unsafe { bindings::asi_test_vunmap(self.va as usize) }
        }
    }

    /// The direct-map address of the kernel's text, and whether the CPU has global pages.
    pub(crate) fn image_alias() -> (u64, bool) {
        let mut pge = false;
        // SAFETY: `pge` is valid for writes for the duration of the call.
        let va = unsafe { bindings::asi_test_image_alias(&mut pge) };
        (va as u64, pge)
    }

    /// The number of global leaves that `asi_setup()` found in the kernel's direct map before it
    /// converted them.
    pub(crate) fn dm_global_at_setup() -> u64 {
        // SAFETY: The function only reads a variable written once at boot.
        unsafe { bindings::asi_test_dm_global_at_setup() as u64 }
    }

    /// Runs `f` with CR3 pointing at the tables at physical address `pgd`, with interrupts
    /// disabled on this CPU.
    ///
    /// # Safety
    ///
    /// Everything `f` touches, its code, stack and data, must be mapped in those tables.
    pub(crate) unsafe fn run_on(
        pgd: u64,
        f: extern "C" fn(*mut kernel::ffi::c_void) -> i32,
        arg: *mut kernel::ffi::c_void,
    ) -> i32 {
        // SAFETY: The caller guarantees that `f` only touches what the tables map.
        unsafe { bindings::asi_test_run_on(pgd, Some(f), arg) }
    }

    /// Creates an mm (its nonsensitive table failing to allocate if `fail`), calls
    /// `check(pgd, ns_pgd)` with its PGD and nonsensitive table, and drops it.
    pub(crate) fn mm_ns_pgd(fail: bool, check: &mut dyn FnMut(u64, u64)) -> kernel::error::Result {
        /// # Safety
        ///
        /// `ctx` is the `&mut &mut dyn FnMut` below.
        unsafe extern "C" fn trampoline(ctx: *mut kernel::ffi::c_void, pgd: u64, ns_pgd: u64) {
            // SAFETY: `ctx` is the `&mut &mut dyn FnMut` passed below, alive for the call.
            let f = unsafe { &mut *ctx.cast::<&mut dyn FnMut(u64, u64)>() };
            f(pgd, ns_pgd);
        }
        let mut check = check;
        let ctx = core::ptr::from_mut::<&mut dyn FnMut(u64, u64)>(&mut check).cast();
        // SAFETY: `trampoline` matches the callback type and `ctx` outlives the call.
        let ret = unsafe { bindings::asi_test_mm_ns_pgd(fail, Some(trampoline), ctx) };
        kernel::error::to_result(ret)
    }

    /// Allocates `size` bytes with `kvmalloc(GFP_USER)`, as the kernel does for copies of user
    /// buffers; large sizes come from vmalloc. Frees them after calling `f` with the PFN of
    /// their first page.
    pub(crate) fn with_kvmalloc_user(size: usize, f: impl FnOnce(u64)) -> kernel::error::Result {
        // SAFETY: No preconditions.
        let p = unsafe { bindings::asi_test_kvmalloc_user(size) };
        if p.is_null() {
            return Err(kernel::error::code::ENOMEM);
        }
        // SAFETY: `p` is a live kvmalloc() allocation of at least one byte.
        f(unsafe { bindings::asi_test_kv_pfn(p) } as u64);
        // SAFETY: `p` came from `asi_test_kvmalloc_user()` and is freed once.
        unsafe { bindings::asi_test_kvfree(p) };
        Ok(())
    }

    /// How many pages [`with_contig`] allocates.
    pub(crate) const CONTIG_PAGES: u64 = bindings::ASI_TEST_CONTIG_PAGES as u64;

    /// Allocates [`CONTIG_PAGES`] contiguous pages for user data (`user`) or the kernel, with
    /// `alloc_contig_pages()`, or at `at` with `alloc_contig_range()`, and frees them after
    /// calling `f` with the first PFN. `Ok(false)` without `CONFIG_CONTIG_ALLOC`, `ENOMEM` if
    /// the allocation fails.
    pub(crate) fn with_contig(
        user: bool,
        at: Option<u64>,
        f: impl FnOnce(u64),
    ) -> kernel::error::Result<bool> {
        // SAFETY: No preconditions.
        if !unsafe { bindings::asi_test_contig_configured() } {
            return Ok(false);
        }
        // SAFETY: No preconditions; the pages belong to this function until it frees them.
        let pfn = unsafe { bindings::asi_test_alloc_contig(user, at.unwrap_or(0) as usize) };
        if pfn == 0 {
            return Err(kernel::error::code::ENOMEM);
        }
        f(pfn as u64);
        // SAFETY: `pfn` starts the range allocated above, freed once.
        unsafe { bindings::asi_test_free_contig(pfn) };
        Ok(true)
    }

    /// Runs `f` in the nonsensitive address space at `pgd` with interrupts disabled, where a
    /// kernel-mode page fault switches to the full address space.
    ///
    /// # Safety
    ///
    /// `f` must not rely on staying in the nonsensitive space.
    pub(crate) unsafe fn run_nonsensitive(
        pgd: u64,
        f: extern "C" fn(*mut kernel::ffi::c_void) -> i32,
        arg: *mut kernel::ffi::c_void,
    ) -> i32 {
        // SAFETY: The caller guarantees `f` copes with leaving the nonsensitive space.
        unsafe { bindings::asi_test_run_nonsensitive(pgd, Some(f), arg) }
    }

    /// Whether this CPU runs in the nonsensitive address space, and its CR3.
    pub(crate) fn in_nonsensitive() -> (bool, u64) {
        let mut cr3 = 0;
        // SAFETY: `cr3` is valid for writes.
        let r = unsafe { bindings::asi_test_in_nonsensitive(&mut cr3) };
        (r, cr3)
    }

    /// Calls `f` with the NMI handler (`nmi`) or the irq_work that [`Pages::nested_read`] uses
    /// installed.
    pub(crate) fn with_nested<R>(nmi: bool, f: impl FnOnce() -> R) -> kernel::error::Result<R> {
        // SAFETY: No preconditions; torn down below.
        kernel::error::to_result(unsafe { bindings::asi_test_nested_setup(nmi) })?;
        let r = f();
        // SAFETY: Set up above; `f` has returned, so nothing triggers it any more.
        unsafe { bindings::asi_test_nested_teardown(nmi) };
        Ok(r)
    }

    /// The marks of stale PCIDs after each step of `asi_test_stale_marks()`, indexed by
    /// `enum asi_test_mark_step`; `ENOMEM` if no mm could be created.
    pub(crate) fn stale_marks(
        pgd: u64,
    ) -> kernel::error::Result<
        [bindings::asi_test_marks; bindings::asi_test_mark_step_ASI_TEST_MARK_STEPS as usize],
    > {
        let mut m = [bindings::asi_test_marks::default();
            bindings::asi_test_mark_step_ASI_TEST_MARK_STEPS as usize];
        // SAFETY: `m` has room for every step. The function runs only the kernel's own flush
        // paths, on the nonsensitive tables at `pgd` for one of them, which maps the stack
        // and per-CPU data it uses.
        let ret = unsafe { bindings::asi_test_stale_marks(pgd, m.as_mut_ptr()) };
        kernel::error::to_result(ret)?;
        Ok(m)
    }

    /// `__get_current_cr3_fast()`, which KVM uses for the host CR3. Preemption must be disabled.
    pub(crate) fn cr3_fast() -> u64 {
        // SAFETY: The tests call this from `run_nonsensitive()`, with preemption disabled.
        unsafe { bindings::asi_test_cr3_fast() }
    }

    /// The CR3 that C builds to enter the nonsensitive tables at `pgd` from the full CR3 `full`.
    pub(crate) fn asi_cr3(full: u64, pgd: u64) -> u64 {
        // SAFETY: Pure computation.
        unsafe { bindings::asi_test_cr3(full, pgd) }
    }

    /// Exits from the nonsensitive address space on a kernel-mode page fault, all CPUs.
    pub(crate) fn page_fault_exits() -> u64 {
        // SAFETY: No preconditions.
        unsafe { bindings::asi_exit_count(bindings::asi_exit_reason_ASI_EXIT_PAGE_FAULT) }
    }

    /// This CPU's number, read from per-CPU data.
    pub(crate) fn cpu() -> u32 {
        // SAFETY: No preconditions.
        unsafe { bindings::asi_test_cpu() }
    }

    /// Runs `f` on this CPU with interrupts disabled.
    pub(crate) fn with_irqs_off(f: &mut dyn FnMut()) {
        /// # Safety
        ///
        /// `arg` is the `&mut &mut dyn FnMut()` below.
        unsafe extern "C" fn trampoline(arg: *mut kernel::ffi::c_void) -> i32 {
            // SAFETY: `arg` is the `&mut &mut dyn FnMut()` passed below, alive for the call.
            let f = unsafe { &mut *arg.cast::<&mut dyn FnMut()>() };
            f();
            0
        }
        let mut f = f;
        let arg = core::ptr::from_mut::<&mut dyn FnMut()>(&mut f).cast();
        // SAFETY: `trampoline` has the C signature and `arg` outlives the call.
        unsafe { bindings::asi_test_irqs_off(Some(trampoline), arg) };
    }

    /// Runs the actions of `required` that `site` allows, as the kernel does there.
    pub(crate) fn run_actions(required: Actions, site: Site) {
        let raw = match site {
            Site::Exit => bindings::asi_action_site_ASI_SITE_EXIT,
            Site::Run => bindings::asi_action_site_ASI_SITE_RUN,
        };
        // SAFETY: No preconditions.
        unsafe { bindings::asi_run_actions(required.mask(), raw) }
    }

    /// Most actions recorded at once.
    pub(crate) const MAX_RECORDED: usize = 32;

    /// Starts (`on`) or stops recording the actions this CPU is asked to run.
    pub(crate) fn record_actions(on: bool) {
        // SAFETY: No preconditions.
        unsafe { bindings::asi_test_record_actions(on) }
    }

    /// The recorded `(site, required actions)` and how many were asked for in all.
    pub(crate) fn recorded() -> ([(Site, Actions); MAX_RECORDED], usize) {
        let mut masks = [0u8; MAX_RECORDED];
        let mut sites = [0u8; MAX_RECORDED];
        // SAFETY: Both arrays hold `MAX_RECORDED` bytes.
        let n = unsafe {
            bindings::asi_test_recorded(masks.as_mut_ptr(), sites.as_mut_ptr(), MAX_RECORDED as u32)
        } as usize;
        let mut out = [(Site::Exit, Actions::NONE); MAX_RECORDED];
        for ((o, m), site) in out.iter_mut().zip(masks).zip(sites) {
            let site = if u32::from(site) == bindings::asi_action_site_ASI_SITE_RUN {
                Site::Run
            } else {
                Site::Exit
            };
            *o = (site, Actions::from_mask(m));
        }
        (out, n)
    }

    /// Enters the nonsensitive tables at `pgd` and exits, as the kernel does; `foreign` if the
    /// code that exited may have touched any mm's data.
    ///
    /// # Safety
    ///
    /// `pgd` is a nonsensitive top-level table, the global one or an mm's, which maps all the
    /// code and data that this runs.
    pub(crate) unsafe fn exit(pgd: u64, foreign: bool) {
        // SAFETY: The caller guarantees that the tables at `pgd` map all the code and data
        // this runs.
        unsafe { bindings::asi_test_exit(pgd, foreign) }
    }

    /// Returns to user mode of mm `mm` as far as the model is concerned, running its actions.
    pub(crate) fn return_to_user(mm: u64) {
        // SAFETY: No preconditions.
        unsafe { bindings::asi_test_return_to_user(mm) }
    }

    /// The size of a saved model state, see [`policy_swap`].
    pub(crate) const SAVED_POLICY_BYTES: usize = bindings::ASI_POLICY_STATE_BYTES as usize + 2;

    /// Swaps this CPU's model state, armed actions and pending events with `saved`, so that a
    /// test can use a state of its own.
    ///
    /// # Safety
    ///
    /// Interrupts are disabled, and stay so until the state is swapped back. `saved` holds a
    /// state that [`saved_policy`] made or that an earlier call returned: the kernel goes on
    /// with it as a `CpuState`.
    pub(crate) unsafe fn policy_swap(saved: &mut [u8; SAVED_POLICY_BYTES]) {
        // SAFETY: `saved` has the size the function reads and writes. The caller guarantees
        // that it holds a valid state and that nothing on this CPU uses the state meanwhile.
        unsafe { bindings::asi_test_policy_swap(saved.as_mut_ptr().cast()) }
    }

    /// A model state as the bytes [`policy_swap`] takes: `state`, nothing armed or pending.
    pub(crate) fn saved_policy(state: crate::policy::CpuState) -> [u8; SAVED_POLICY_BYTES] {
        let mut bytes = [0u8; SAVED_POLICY_BYTES];
        // SAFETY: `bytes` is large enough (see the assertion on `ASI_POLICY_STATE_BYTES`);
        // the write is unaligned-safe.
        unsafe {
            bytes
                .as_mut_ptr()
                .cast::<crate::policy::CpuState>()
                .write_unaligned(state)
        };
        bytes
    }
}

/// A zeroed page for an mm's nonsensitive top-level table (fault injection:
/// `fail_asi_ns_pgd`). Its physical address, `None` on failure.
pub(crate) fn alloc_ns_pgd() -> Option<u64> {
    // SAFETY: No preconditions; may sleep, called from `init_new_context()`.
    let pa = unsafe { bindings::asi_alloc_ns_pgd() };
    (pa != 0).then_some(pa)
}

/// Physical address of `mm`'s PGD.
///
/// # Safety
///
/// `mm` is a live `struct mm_struct` whose PGD is allocated.
pub(crate) unsafe fn mm_pgd(mm: *mut bindings::mm_struct) -> u64 {
    // SAFETY: The caller guarantees `mm` is live.
    unsafe { bindings::asi_mm_pgd(mm) }
}

/// Physical address of `mm`'s nonsensitive top-level table, 0 if it has none.
///
/// # Safety
///
/// `mm` is a live `struct mm_struct`.
pub(crate) unsafe fn mm_ns_pgd(mm: *mut bindings::mm_struct) -> u64 {
    // SAFETY: The caller guarantees `mm` is live.
    unsafe { bindings::asi_mm_ns_pgd(mm) }
}

/// Sets `mm`'s nonsensitive top-level table (0 for none).
///
/// # Safety
///
/// `mm` is a live `struct mm_struct` that only the caller changes the table of, and `pgd` is
/// 0 or a table page that stays allocated until it is replaced.
pub(crate) unsafe fn mm_set_ns_pgd(mm: *mut bindings::mm_struct, pgd: u64) {
    // SAFETY: The caller guarantees `mm` is live and `pgd` valid.
    unsafe { bindings::asi_mm_set_ns_pgd(mm, pgd) }
}

/// Calls `f(mm_pgd, asi_pgd)` for the mm of each process, under `task_lock()`: `f` must not
/// sleep. The lock keeps the mm alive, and with it its PGD and its nonsensitive top-level table
/// (`asi_pgd`, 0 if it has none), while `f` runs.
pub(crate) fn visit_ns_pgds(f: &mut dyn FnMut(u64, u64)) {
    /// # Safety
    ///
    /// `ctx` is the `&mut &mut dyn FnMut` below.
    unsafe extern "C" fn trampoline(ctx: *mut kernel::ffi::c_void, pgd: u64, ns_pgd: u64) {
        // SAFETY: `ctx` is the `&mut &mut dyn FnMut` passed below, alive for the call.
        let f = unsafe { &mut *ctx.cast::<&mut dyn FnMut(u64, u64)>() };
        f(pgd, ns_pgd);
    }
    let mut f = f;
    let ctx = core::ptr::from_mut::<&mut dyn FnMut(u64, u64)>(&mut f).cast();
    // SAFETY: `trampoline` matches `asi_ns_pgd_fn` and `ctx` outlives the call.
    unsafe { bindings::asi_visit_ns_pgds(Some(trampoline), ctx) };
}
