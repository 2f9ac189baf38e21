// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/asi/`.
//!
//! - `status`: the state of ASI, one `key: value` pair per line, see [`crate::status::Status`].
//! - `stats`: counters of the nonsensitive direct map, see [`crate::stats::Stats`].
//! - `verify`: walks the nonsensitive tables on each read, see [`crate::stats::Report`].

use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    sync::SetOnce,
};

/// The directory and its files. They live as long as the kernel.
struct Debugfs {
    _dir: Dir,
    _status: Pin<KBox<File<()>>>,
    _stats: Pin<KBox<File<()>>>,
    _verify: Pin<KBox<File<()>>>,
}

static DEBUGFS: SetOnce<Debugfs> = SetOnce::new();

/// Creates the directory and its files. Fails with `EBUSY` if called twice and with `ENOMEM` if
/// an allocation fails, in which case nothing is left behind.
pub(crate) fn init() -> Result {
    let dir = Dir::new(c"asi");
    let status = KBox::pin_init(
        dir.read_callback_file(c"status", (), &|(): &(), f| {
            write!(f, "{}", crate::current_status())
        }),
        GFP_KERNEL,
    )?;
    let stats = KBox::pin_init(
        dir.read_callback_file(c"stats", (), &|(): &(), f| {
            write!(f, "{}", crate::tables::stats())
        }),
        GFP_KERNEL,
    )?;
    let verify = KBox::pin_init(
        dir.read_callback_file(c"verify", (), &|(): &(), f| {
            write!(f, "{}", crate::tables::verify())
        }),
        GFP_KERNEL,
    )?;
    if DEBUGFS.populate(Debugfs {
        _dir: dir,
        _status: status,
        _stats: stats,
        _verify: verify,
    }) {
        Ok(())
    } else {
        Err(EBUSY)
    }
}
