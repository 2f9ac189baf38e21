// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/asi/`.
//!
//! - `status`: the state of ASI, one `key: value` pair per line, see [`crate::status::Status`].
//! - `stats`: counters of the nonsensitive direct map, see [`crate::stats::Stats`].
//! - `verify`: walks the nonsensitive tables on each read, see [`crate::stats::Report`].
//! - `transitions`: enters into and exits from the nonsensitive address space, in total and
//!   per CPU; writing `0` resets them.
//! - `actions`: the mitigation actions, their support and where they run, and how often each
//!   was required and executed, with the returns to user mode and mm switches they compare
//!   with, in total and per CPU; writing `0` resets the counters.
//! - `page`: write a page frame number, then read whether that page is sensitive and whether
//!   ASI's direct map maps it, see [`crate::stats::PageState`]. For tests that follow a
//!   process's pages through `/proc/PID/pagemap`.

use crate::{
    policy::Action,
    stats::{self, CounterLine, PageState},
    sys::{self, ActionCounter, Transition},
    tables,
};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
    _actions: Pin<KBox<File<()>>>,
    _page: Pin<KBox<File<()>>>,
}

/// The page frame the `page` file reports, last written. `u64::MAX` before the first write,
/// which no direct map covers.
static SELECTED_PFN: AtomicU64 = AtomicU64::new(u64::MAX);

/// Writes the `page` file.
fn write_page(f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
    let pfn = SELECTED_PFN.load(Relaxed);
    match (tables::is_sensitive(pfn), tables::direct_map_present(pfn)) {
        (Some(sensitive), Some(mapped)) => write!(
            f,
            "{}",
            PageState {
                pfn,
                sensitive,
                mapped
            }
        ),
        _ => writeln!(f, "no page selected"),
    }
}

/// A write to the `page` file: a page frame that ASI's direct map covers, else `EINVAL`;
/// `ENODEV` without the nonsensitive tables.
fn select_page(reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 24];
    let len = reader.len();
    let input = buf.get_mut(..len).ok_or(EINVAL)?;
    reader.read_slice(input)?;
    let pfn = stats::parse_pfn(input).map_err(|()| EINVAL)?;
    tables::get().ok_or(ENODEV)?;
    tables::direct_map_present(pfn).ok_or(EINVAL)?;
    SELECTED_PFN.store(pfn, Relaxed);
    Ok(())
}

/// Most CPUs listed on one line of the `transitions` file; the total covers all.
const MAX_CPUS_LISTED: usize = 64;

/// The counter `what` summed over all possible CPUs, for the KUnit suite.
#[cfg(CONFIG_ASI_KUNIT_TEST)]
pub(crate) fn transition_total(what: Transition) -> u64 {
    (0..sys::nr_cpu_ids())
        .filter_map(|cpu| sys::transition_count(cpu, what))
        .fold(0u64, u64::saturating_add)
}

/// Writes the line of a per-CPU counter `name`, read by `count`, with its total.
fn write_counter(
    f: &mut kernel::fmt::Formatter<'_>,
    name: &str,
    count: &dyn Fn(u32) -> Option<u64>,
) -> kernel::fmt::Result {
    let mut per_cpu = [(0u32, 0u64); MAX_CPUS_LISTED];
    let mut listed = 0;
    let mut total = 0u64;
    for cpu in 0..sys::nr_cpu_ids() {
        let Some(n) = count(cpu) else { continue };
        total = total.saturating_add(n);
        if let Some(slot) = per_cpu.get_mut(listed) {
            *slot = (cpu, n);
            listed += 1;
        }
    }
    let line = CounterLine {
        name,
        per_cpu: per_cpu.get(..listed).unwrap_or(&[]),
    };
    write!(f, "{}", LineWithTotal(line, total))
}

/// Writes the `transitions` file.
fn write_transitions(f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
    for (what, name) in Transition::ALL {
        write_counter(f, name, &|cpu| sys::transition_count(cpu, what))?;
    }
    write_counter(f, "cr3_writes_flush", &|cpu| {
        sys::cr3_write_count(cpu, false)
    })?;
    write_counter(f, "cr3_writes_noflush", &|cpu| {
        sys::cr3_write_count(cpu, true)
    })
}

/// The counter names of the `actions` file, without the action's name.
const REQUIRED: &str = "required_";
const EXECUTED: &str = "executed_";
const REQUIRED_RUN: &str = "required_before_user_";

/// Writes the `actions` file.
fn write_actions(f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
    let Some(setup) = crate::mitigation::setup() else {
        return writeln!(f, "ASI is off: no actions");
    };
    write!(f, "{}", setup.table())?;
    for (prefix, counter) in [
        (
            REQUIRED,
            ActionCounter::Required as fn(Action) -> ActionCounter,
        ),
        (EXECUTED, ActionCounter::Executed),
        (REQUIRED_RUN, ActionCounter::RequiredRun),
    ] {
        for a in Action::ALL {
            let mut name = [0u8; 32];
            let name = join(&mut name, prefix, a.name());
            write_counter(f, name, &|cpu| sys::action_count(cpu, counter(a)))?;
        }
    }
    write_counter(f, "returns_to_user", &|cpu| {
        sys::action_count(cpu, ActionCounter::Returns)
    })?;
    write_counter(f, "mm_switches", &|cpu| {
        sys::action_count(cpu, ActionCounter::MmSwitches)
    })?;
    write_counter(f, "foreign_returns", &|cpu| {
        sys::action_count(cpu, ActionCounter::Foreign)
    })
}

/// `a` followed by `b` in `buf`; as much as fits.
fn join<'a>(buf: &'a mut [u8; 32], a: &str, b: &str) -> &'a str {
    let mut len = 0;
    for (slot, byte) in buf
        .iter_mut()
        .zip(core::iter::Iterator::chain(a.bytes(), b.bytes()))
    {
        *slot = byte;
        len += 1;
    }
    // Both parts are ASCII, so any prefix is UTF-8.
    core::str::from_utf8(buf.get(..len).unwrap_or(&[])).unwrap_or("")
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

/// A write to a file of counters: `0` calls `reset`, anything else is `EINVAL`.
fn reset_on_zero(reader: &mut UserSliceReader, reset: fn()) -> Result {
    let mut buf = [0u8; 8];
    let len = reader.len();
    let input = buf.get_mut(..len).ok_or(EINVAL)?;
    reader.read_slice(input)?;
    stats::parse_reset(input).map_err(|()| EINVAL)?;
    reset();
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
            &|(): &(), r| reset_on_zero(r, sys::reset_transition_counts),
        ),
        GFP_KERNEL,
    )?;
    let actions = KBox::pin_init(
        dir.read_write_callback_file(
            c"actions",
            (),
            &|(): &(), f| write_actions(f),
            &|(): &(), r| reset_on_zero(r, sys::reset_action_counts),
        ),
        GFP_KERNEL,
    )?;
    let page = KBox::pin_init(
        dir.read_write_callback_file(c"page", (), &|(): &(), f| write_page(f), &|(): &(), r| {
            select_page(r)
        }),
        GFP_KERNEL,
    )?;
    if DEBUGFS.populate(Debugfs {
        _dir: dir,
        _status: status,
        _stats: stats,
        _verify: verify,
        _transitions: transitions,
        _actions: actions,
        _page: page,
    }) {
        Ok(())
    } else {
        Err(EBUSY)
    }
}
