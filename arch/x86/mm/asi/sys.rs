// SPDX-License-Identifier: GPL-2.0

//! The ASI crate's only calls into C.
//!
//! Each function here wraps one function of `arch/x86/include/asm/asi.h` and turns its result
//! into a safe Rust value. No other module of the crate uses `kernel::bindings` or `unsafe`.

use crate::{
    actions::{Site, Support},
    policy::{Action, Actions, CpuState, Pending},
    status::BootRequest,
};
use kernel::{
    bindings,
    str::{CStr, CStrExt},
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
/// # Invariants
///
/// Every table address passed to the [`TableMemory`] methods is the physical address of a
/// page-table page that the kernel's direct map maps and that stays allocated while it is
/// used: a table of the kernel's own tree or of ASI's.
pub(crate) struct DirectMapTables {
    page_offset: u64,
}

impl DirectMapTables {
    /// Page-table access through the direct map at `page_offset`.
    ///
    /// # Safety
    ///
    /// `page_offset` is the kernel's `PAGE_OFFSET`, and the caller upholds the invariant of
    /// [`DirectMapTables`] for every table address it passes.
    pub(crate) unsafe fn new(page_offset: u64) -> Self {
        DirectMapTables { page_offset }
    }

    fn entry(&self, table: u64, index: usize) -> *mut u64 {
        let index = index % crate::pgtable::ENTRIES;
        (self.page_offset.wrapping_add(table) as usize as *mut u64).wrapping_add(index)
    }
}

impl crate::pgtable::TableMemory for DirectMapTables {
    fn read(&self, table: u64, index: usize) -> u64 {
        // SAFETY: By the type invariant `table` is a mapped page-table page, and `entry()`
        // keeps the index inside it. Entries are naturally aligned `u64`s that other CPUs
        // may change concurrently: a volatile read is the `READ_ONCE()` the kernel uses.
        unsafe { core::ptr::read_volatile(self.entry(table, index)) }
    }

    fn write(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: As for `read`; the entry is written in one store (`WRITE_ONCE()`).
        unsafe { core::ptr::write_volatile(self.entry(table, index), value) }
    }

    fn alloc_table(&mut self) -> Option<u64> {
        // SAFETY: `asi_alloc_table()` has no preconditions; it may sleep, and is only
        // called while the tables are built, from an initcall.
        let pa = unsafe { bindings::asi_alloc_table() };
        (pa != 0).then_some(pa)
    }
}

impl crate::pgtable::KernelTables for DirectMapTables {
    fn populate_kernel(&mut self, level: crate::pgtable::Level, va: u64) -> Option<u64> {
        // SAFETY: `asi_populate_kernel()` only allocates kernel page tables the way the
        // kernel does on demand; it may sleep, see `alloc_table`.
        let e = unsafe { bindings::asi_populate_kernel(level.number(), va as usize) };
        (e != 0).then_some(e)
    }
}

impl DirectMapTables {
    /// Writes entry `index` of the table at `table` through a shared reference: the caller
    /// owns that entry (it belongs to a page the caller is allocating, or is protected by the
    /// caller's lock), so no other writer can race with it.
    pub(crate) fn write_owned(&self, table: u64, index: usize, value: u64) {
        // SAFETY: As for `TableMemory::write`.
        unsafe { core::ptr::write_volatile(self.entry(table, index), value) }
    }
}

/// Frees a table allocated by [`DirectMapTables`]'s `alloc_table`.
pub(crate) fn free_table(table: u64) {
    // SAFETY: The callers pass tables that ASI allocated and no longer links anywhere.
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

/// Flushes `[start, end)` of the kernel address space from the TLB of every CPU. Sends IPIs:
/// only in task context with interrupts enabled.
pub(crate) fn flush_kernel_range(start: u64, end: u64) {
    // SAFETY: The callers only flush where IPIs may be sent (`asi_alloc_sensitive()` checks).
    unsafe { bindings::asi_flush_kernel_range(start as usize, end as usize) }
}

/// Flushes the whole TLB of every CPU. Sends IPIs, see [`flush_kernel_range`].
pub(crate) fn flush_kernel_all() {
    // SAFETY: As for `flush_kernel_range`.
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
pub(crate) fn batch_free(pfns: &[usize]) {
    let n = u32::try_from(pfns.len()).unwrap_or(0);
    // SAFETY: `pfns` holds pages `batch_alloc()` allocated, each freed once, here.
    unsafe { bindings::asi_batch_free(pfns.as_ptr(), n) }
}

/// Zeroes the page `pfn` through the kernel's direct map.
pub(crate) fn clear_page(pfn: u64) {
    // SAFETY: The callers pass a page they are allocating, which nothing else uses.
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

/// Sets the model's state of every possible CPU to `state`, before [`policy_ready`].
pub(crate) fn init_policy_states(state: CpuState) {
    for cpu in 0..nr_cpu_ids() {
        // SAFETY: No preconditions; NULL for a CPU that is not possible.
        let p = unsafe { bindings::asi_policy_state(cpu as kernel::ffi::c_int) }.cast::<CpuState>();
        if !p.is_null() {
            // SAFETY: `p` is per-CPU memory of `ASI_POLICY_STATE_BYTES`, 8-byte aligned,
            // which the assertion above shows fits a `CpuState`. Nothing reads it before
            // `policy_ready()`.
            unsafe { p.write(state) };
        }
    }
}

/// Lets the kernel use the model's states, after [`init_policy_states`].
pub(crate) fn policy_ready() {
    // SAFETY: No preconditions.
    unsafe { bindings::asi_policy_ready() }
}

/// Runs `f` on this CPU's model state.
///
/// # Safety
///
/// The caller runs with interrupts disabled, outside NMI context, after [`policy_ready`], and
/// not from inside another call of this function: then nothing else accesses the state while
/// `f` runs.
pub(crate) unsafe fn with_this_cpu_policy<R>(f: impl FnOnce(&mut CpuState) -> R) -> R {
    // SAFETY: No preconditions; with a negative CPU the result is this CPU's state.
    let p = unsafe { bindings::asi_policy_state(-1) }.cast::<CpuState>();
    // SAFETY: `init_policy_states()` wrote a `CpuState` there, and the caller guarantees that
    // this is the only reference to it.
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

    /// Allocates `1 << order` pages for user data (`user`) or for the kernel, with interrupts
    /// disabled and without sleeping if `irqs_off`. The first PFN, `None` on failure.
    pub(crate) fn alloc(user: bool, irqs_off: bool, order: u32) -> Option<u64> {
        // SAFETY: No preconditions; the pages belong to the caller, who frees them with
        // `free()`.
        let pfn = unsafe { bindings::asi_test_alloc(user, irqs_off, order) };
        (pfn != 0).then_some(pfn as u64)
    }

    /// Frees the order-0 page `pfn` and allocates one like [`alloc`] on the same CPU.
    pub(crate) fn free_then_alloc(pfn: u64, user: bool, irqs_off: bool) -> Option<u64> {
        // SAFETY: The tests pass an order-0 page `alloc()` returned, which this frees once.
        let pfn = unsafe { bindings::asi_test_free_then_alloc(pfn as usize, user, irqs_off) };
        (pfn != 0).then_some(pfn as u64)
    }

    /// Frees what [`alloc`] returned.
    pub(crate) fn free(pfn: u64, order: u32) {
        // SAFETY: The tests pass what `alloc()` returned, once.
        unsafe { bindings::asi_test_free(pfn as usize, order) }
    }

    /// Fills the page `pfn` with `value` through the kernel's direct map.
    pub(crate) fn fill(pfn: u64, value: u8) {
        // SAFETY: The tests pass pages they allocated.
        unsafe { bindings::asi_test_fill(pfn as usize, value) }
    }

    /// Whether every byte of the page `pfn` is `value`.
    pub(crate) fn is_filled(pfn: u64, value: u8) -> bool {
        // SAFETY: The tests pass pages they allocated.
        unsafe { bindings::asi_test_is_filled(pfn as usize, value) }
    }

    /// Maps the page `pfn` a second time, in the vmalloc area. Its address, `None` on failure.
    pub(crate) fn vmap(pfn: u64) -> Option<u64> {
        // SAFETY: The tests pass pages they allocated and unmap before freeing them.
        let va = unsafe { bindings::asi_test_vmap(pfn as usize) };
        (va != 0).then_some(va as u64)
    }

    /// Removes a mapping made by [`vmap`].
    pub(crate) fn vunmap(va: u64) {
        // SAFETY: The tests pass what `vmap()` returned, once.
        unsafe { bindings::asi_test_vunmap(va as usize) }
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
    /// `check(pgd, domain)` with its PGD and nonsensitive table, and drops it.
    pub(crate) fn mm_domain(fail: bool, check: &mut dyn FnMut(u64, u64)) -> kernel::error::Result {
        /// # Safety
        ///
        /// `ctx` is the `&mut &mut dyn FnMut` below.
        unsafe extern "C" fn trampoline(ctx: *mut kernel::ffi::c_void, pgd: u64, domain: u64) {
            // SAFETY: `ctx` is the `&mut &mut dyn FnMut` passed below, alive for the call.
            let f = unsafe { &mut *ctx.cast::<&mut dyn FnMut(u64, u64)>() };
            f(pgd, domain);
        }
        let mut check = check;
        let ctx = core::ptr::from_mut::<&mut dyn FnMut(u64, u64)>(&mut check).cast();
        // SAFETY: `trampoline` matches the callback type and `ctx` outlives the call.
        let ret = unsafe { bindings::asi_test_mm_domain(fail, Some(trampoline), ctx) };
        kernel::error::to_result(ret)
    }

    /// Makes the kernel's direct-map entry of `pfn` read-only (`ro`) or writable again.
    pub(crate) fn set_ro(pfn: u64, ro: bool) -> kernel::error::Result {
        // SAFETY: The tests pass a page they allocated and make it writable before freeing it.
        kernel::error::to_result(unsafe { bindings::asi_test_set_ro(pfn as usize, ro) })
    }

    /// Allocates `size` bytes with `kvmalloc(GFP_USER)`, as the kernel does for copies of user
    /// buffers; large sizes come from vmalloc. Frees them after calling `f`.
    pub(crate) fn with_kvmalloc_user(size: usize, f: impl FnOnce()) -> kernel::error::Result {
        // SAFETY: No preconditions.
        let p = unsafe { bindings::asi_test_kvmalloc_user(size) };
        if p.is_null() {
            return Err(kernel::error::code::ENOMEM);
        }
        f();
        // SAFETY: `p` came from `asi_test_kvmalloc_user()` and is freed once.
        unsafe { bindings::asi_test_kvfree(p) };
        Ok(())
    }

    /// Runs `f` in the nonsensitive address space at `pgd` with interrupts disabled, where a
    /// kernel-mode page fault switches to the full address space.
    ///
    /// # Safety
    ///
    /// `f` must not rely on staying in the nonsensitive space.
    pub(crate) unsafe fn run_restricted(
        pgd: u64,
        f: extern "C" fn(*mut kernel::ffi::c_void) -> i32,
        arg: *mut kernel::ffi::c_void,
    ) -> i32 {
        // SAFETY: The caller guarantees `f` copes with leaving the nonsensitive space.
        unsafe { bindings::asi_test_run_restricted(pgd, Some(f), arg) }
    }

    /// Whether this CPU runs in the nonsensitive address space, and its CR3.
    pub(crate) fn restricted() -> (bool, u64) {
        let mut cr3 = 0;
        // SAFETY: `cr3` is valid for writes.
        let r = unsafe { bindings::asi_test_restricted(&mut cr3) };
        (r, cr3)
    }

    /// Calls `f` with the NMI handler (`nmi`) or the irq_work that [`nested_read_page`] uses
    /// installed.
    pub(crate) fn with_nested<R>(nmi: bool, f: impl FnOnce() -> R) -> kernel::error::Result<R> {
        // SAFETY: No preconditions; torn down below.
        kernel::error::to_result(unsafe { bindings::asi_test_nested_setup(nmi) })?;
        let r = f();
        // SAFETY: Set up above; `f` has returned, so nothing triggers it any more.
        unsafe { bindings::asi_test_nested_teardown(nmi) };
        Ok(r)
    }

    /// Reads the first word of page `pfn` from an NMI (`nmi`) or an interrupt this CPU sends
    /// itself, inside [`with_nested`]. Must run with IRQs and preemption disabled (in
    /// [`run_restricted`]); for the interrupt it enables IRQs while it waits.
    pub(crate) fn nested_read_page(pfn: u64, nmi: bool) -> kernel::error::Result<u64> {
        let mut value = 0;
        // SAFETY: The tests pass a page they allocated and call this from `run_restricted()`.
        let r = unsafe { bindings::asi_test_nested_read_page(pfn as usize, nmi, &mut value) };
        kernel::error::to_result(r).map(|()| value)
    }

    /// `__get_current_cr3_fast()`, which KVM uses for the host CR3. Preemption must be disabled.
    pub(crate) fn cr3_fast() -> u64 {
        // SAFETY: The tests call this from `run_restricted()`, with preemption disabled.
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

    /// Reads the first word of the page `pfn` through the kernel's direct map.
    pub(crate) fn read_page(pfn: u64) -> u64 {
        // SAFETY: The tests pass pages they allocated.
        unsafe { bindings::asi_test_read_page(pfn as usize) }
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
    pub(crate) fn exit(pgd: u64, foreign: bool) {
        // SAFETY: `pgd` comes from the caller's nonsensitive tables, which map all the code
        // and data this runs.
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
    /// test can use a state of its own. Interrupts must stay disabled until the state is
    /// swapped back.
    pub(crate) fn policy_swap(saved: &mut [u8; SAVED_POLICY_BYTES]) {
        // SAFETY: `saved` has the size the function reads and writes.
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
/// `fail_asi_domain`). Its physical address, `None` on failure.
pub(crate) fn alloc_domain() -> Option<u64> {
    // SAFETY: No preconditions; may sleep, called from `init_new_context()`.
    let pa = unsafe { bindings::asi_alloc_domain() };
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
pub(crate) unsafe fn mm_domain(mm: *mut bindings::mm_struct) -> u64 {
    // SAFETY: The caller guarantees `mm` is live.
    unsafe { bindings::asi_mm_domain(mm) }
}

/// Sets `mm`'s nonsensitive top-level table (0 for none).
///
/// # Safety
///
/// `mm` is a live `struct mm_struct` that only the caller changes the table of, and `pgd` is
/// 0 or a table page that stays allocated until it is replaced.
pub(crate) unsafe fn mm_set_domain(mm: *mut bindings::mm_struct, pgd: u64) {
    // SAFETY: The caller guarantees `mm` is live and `pgd` valid.
    unsafe { bindings::asi_mm_set_domain(mm, pgd) }
}

/// Calls `f(mm_pgd, asi_pgd)` for the mm of each process, under `task_lock()`: `f` must not
/// sleep.
pub(crate) fn visit_domains(f: &mut dyn FnMut(u64, u64)) {
    /// # Safety
    ///
    /// `ctx` is the `&mut &mut dyn FnMut` below.
    unsafe extern "C" fn trampoline(ctx: *mut kernel::ffi::c_void, pgd: u64, domain: u64) {
        // SAFETY: `ctx` is the `&mut &mut dyn FnMut` passed below, alive for the call.
        let f = unsafe { &mut *ctx.cast::<&mut dyn FnMut(u64, u64)>() };
        f(pgd, domain);
    }
    let mut f = f;
    let ctx = core::ptr::from_mut::<&mut dyn FnMut(u64, u64)>(&mut f).cast();
    // SAFETY: `trampoline` matches `asi_domain_fn` and `ctx` outlives the call.
    unsafe { bindings::asi_visit_domains(Some(trampoline), ctx) };
}
