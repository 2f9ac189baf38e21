// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/asi/`.
//!
//! - `status`: the state of ASI, one `key: value` pair per line, see [`crate::status::Status`].
//! - `stats`: counters of the nonsensitive direct map, see [`crate::stats::Stats`].
//! - `verify`: walks the nonsensitive tables on each read, see [`crate::stats::Report`].
//! - `transitions`: enters into and exits from the nonsensitive address space, in total and
//!   per CPU; writing `0` resets them.

use crate::{
    stats::{self, CounterLine},
    sys::{self, Transition},
};
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    sync::SetOnce,
    uaccess::UserSliceReader,
};

/// The directory and its files. They live as long as the kernel.
struct Debugfs {
    _dir: Dir,
    _status: Pin<KBox<File<()>>>,
    _stats: Pin<KBox<File<()>>>,
    _verify: Pin<KBox<File<()>>>,
    _transitions: Pin<KBox<File<()>>>,
}

/// Most CPUs listed on one line of the `transitions` file; the total covers all.
const MAX_CPUS_LISTED: usize = 64;

/// The counter `what` summed over all possible CPUs.
pub(crate) fn transition_total(what: Transition) -> u64 {
    (0..sys::nr_cpu_ids())
        .filter_map(|cpu| sys::transition_count(cpu, what))
        .fold(0u64, u64::saturating_add)
}

/// Writes the `transitions` file.
fn write_transitions(f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
    for (what, name) in Transition::ALL {
        let mut per_cpu = [(0u32, 0u64); MAX_CPUS_LISTED];
        let mut listed = 0;
        for cpu in 0..sys::nr_cpu_ids() {
            if let (Some(n), Some(slot)) =
                (sys::transition_count(cpu, what), per_cpu.get_mut(listed))
            {
                *slot = (cpu, n);
                listed += 1;
            }
        }
        let line = CounterLine {
            name,
            per_cpu: per_cpu.get(..listed).unwrap_or(&[]),
        };
        write!(f, "{}", LineWithTotal(line, transition_total(what)))?;
    }
    Ok(())
}

/// A [`CounterLine`] and its total, for the kernel's formatter.
struct LineWithTotal<'a>(CounterLine<'a>, u64);

impl core::fmt::Display for LineWithTotal<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.write(f, self.1)
    }
}

impl kernel::fmt::Display for LineWithTotal<'_> {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// A write to the `transitions` file: `0` resets the counters, anything else is `EINVAL`.
fn reset_transitions(reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 8];
    let len = reader.len();
    let input = buf.get_mut(..len).ok_or(EINVAL)?;
    reader.read_slice(input)?;
    stats::parse_reset(input).map_err(|()| EINVAL)?;
    sys::reset_transition_counts();
    Ok(())
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
    let transitions = KBox::pin_init(
        dir.read_write_callback_file(
            c"transitions",
            (),
            &|(): &(), f| write_transitions(f),
            &|(): &(), r| reset_transitions(r),
        ),
        GFP_KERNEL,
    )?;
    if DEBUGFS.populate(Debugfs {
        _dir: dir,
        _status: status,
        _stats: stats,
        _verify: verify,
        _transitions: transitions,
    }) {
        Ok(())
    } else {
        Err(EBUSY)
    }
}
