// SPDX-License-Identifier: GPL-2.0

//! The ASI crate's only calls into C.
//!
//! Each function here wraps one function of `arch/x86/include/asm/asi.h` and turns its result
//! into a safe Rust value. No other module of the crate uses `kernel::bindings` or `unsafe`.

use crate::status::BootRequest;
use kernel::bindings;

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
