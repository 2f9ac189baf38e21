// SPDX-License-Identifier: GPL-2.0

//! Drives the taint model on every CPU and sets up the actions it asks for.
//!
//! Each CPU has a [`CpuState`] in per-CPU memory (`arch/x86/mm/asi/actions.c`). The kernel
//! tells it what happened at each return to user mode ([`CpuState::return_to_user`]): that is
//! the one point that both needs the model's answer (the actions before user code) and runs
//! with interrupts disabled in instrumentable code. What happened in between was noted by C
//! code as pending events; the actions the next exit needs are armed for the C exit path.

use crate::{
    actions::{self, Setup, Site, Support},
    policy::{Action, Actions, CpuState, Event, MmId, Taints},
    sys,
};
use kernel::{prelude::*, sync::SetOnce};

/// The setup decided at boot, for debugfs.
static SETUP: SetOnce<Setup> = SetOnce::new();

/// Every action.
const ALL: Actions = Actions::clearing(Taints::ALL);

/// Decides which actions run where, initialises the model on every CPU and logs the result.
/// Called once at boot with ASI on, before user space runs.
pub(crate) fn init() {
    let requested = match sys::actions_param().map(actions::parse) {
        None => ALL,
        Some(Ok(requested)) => requested,
        Some(Err(e)) => {
            pr_warn!(
                "ignoring invalid asi_actions= ({}); expected all, none or a list of {}, {}, {}, {}; using all\n",
                e.reason(),
                Action::Ibpb.name(),
                Action::RsbFill.name(),
                Action::L1dFlush.name(),
                Action::Verw.name()
            );
            ALL
        }
    };
    let setup = Setup {
        support: Action::ALL.map(sys::action_support),
        requested,
        mitigations_off: sys::mitigations_off(),
        user_kernel: sys::vector_mitigated(Site::Exit),
        user_user: sys::vector_mitigated(Site::Run),
    };
    sys::set_actions(setup.at(Site::Exit), setup.at(Site::Run));
    // Nothing is known about the data the kernel touched while booting: the first return to
    // user mode on each CPU clears the data state.
    let mut state = CpuState::new(MmId(0));
    state.step(Event::Interrupt);
    sys::start_policy(state);
    pr_info!("{}\n", BootLine(setup));
    for a in Action::ALL {
        if setup.support_of(a) == Support::None {
            pr_info!(
                "{} is not supported by this CPU: counted when required, never executed\n",
                a.name()
            );
        }
    }
    // The only caller runs once.
    let _ = SETUP.populate(setup);
}

/// The setup decided at boot, `None` with ASI off.
pub(crate) fn setup() -> Option<&'static Setup> {
    SETUP.as_ref()
}

/// Logs a [`Setup`]'s boot line with the kernel's formatter.
struct BootLine(Setup);

impl kernel::fmt::Display for BootLine {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(&self.0.boot_line(), f)
    }
}

/// A return to user mode of the mm with `ctx_id` on this CPU: catches the model up on what
/// happened since the last one, counts what it required, arms the next exit's actions and
/// returns those to run now.
///
/// # Safety
///
/// Called with interrupts disabled, outside NMI context, after [`init`], and not from inside
/// itself.
pub(crate) unsafe fn return_to_user(ctx_id: u64) -> Actions {
    let pending = sys::take_pending();
    // SAFETY: As guaranteed by the caller.
    let ret = unsafe { sys::with_this_cpu_policy(|s| s.return_to_user(pending, MmId(ctx_id))) };
    sys::count_required(
        ret.at_exit.union(ret.at_foreign),
        Site::Exit,
        pending.foreign,
    );
    sys::count_required(ret.at_run, Site::Run, false);
    sys::arm_exit_actions(ret.next_exit);
    ret.at_run
}
