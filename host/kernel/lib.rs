// SPDX-License-Identifier: GPL-2.0

//! Host build of the parts of the kernel crate (`rust/kernel/`) that use only `core`.

#![no_std]

#[path = "../../rust/kernel/mm/pgtable.rs"]
#[doc(hidden)]
pub mod pgtable;

/// Memory management (`rust/kernel/mm.rs`), the parts that build on the host.
pub mod mm {
    pub use crate::pgtable;
}
