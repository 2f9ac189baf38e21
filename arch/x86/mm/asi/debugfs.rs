// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/asi/`.
//!
//! - `status`: the state of ASI, one `key: value` pair per line, see [`crate::status::Status`].

use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    sync::SetOnce,
};

/// The directory and its files. They live as long as the kernel.
struct Debugfs {
    _dir: Dir,
    _status: Pin<KBox<File<()>>>,
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
    if DEBUGFS.populate(Debugfs {
        _dir: dir,
        _status: status,
    }) {
        Ok(())
    } else {
        Err(EBUSY)
    }
}
