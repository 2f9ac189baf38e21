// SPDX-License-Identifier: GPL-2.0

//! Host build of the pure logic of the ASI kernel crate (`arch/x86/mm/asi/rust_asi.rs`).
//!
//! The modules below are the kernel's files, included by path: `cargo test` runs their
//! `#[cfg(test)]` tests on the host. They use only `core`, as in the kernel; the tests may use
//! `std`.

#![no_std]
#![cfg_attr(not(test), expect(dead_code, reason = "the kernel crate is the user"))]

#[cfg(test)]
extern crate std;

#[path = "../arch/x86/mm/asi/actions.rs"]
mod actions;
#[path = "../arch/x86/mm/asi/cr3.rs"]
mod cr3;
#[path = "../arch/x86/mm/asi/pcid_rules.rs"]
mod pcid_rules;
#[path = "../arch/x86/mm/asi/pgtable.rs"]
mod pgtable;
#[path = "../arch/x86/mm/asi/policy.rs"]
mod policy;
#[path = "../arch/x86/mm/asi/stats.rs"]
mod stats;
#[path = "../arch/x86/mm/asi/status.rs"]
mod status;
/// A host model of the x86 TLB driven by tlb.c's flush algorithm and ASI's CR3 switches.
#[cfg(test)]
mod tlbmodel;
