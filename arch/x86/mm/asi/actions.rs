// SPDX-License-Identifier: GPL-2.0

//! The registry of ASI's mitigation actions: their names, how the CPU supports them, the
//! `asi_actions=` boot parameter, and which of them run at each site.
//!
//! The taint model ([`crate::policy`]) says which [`Action`] a transition requires; the
//! registry says whether the kernel runs it. An action runs at a [`Site`] when all of these
//! hold:
//!
//! - the CPU supports it ([`Support`]): IBPB needs `X86_FEATURE_IBPB`, VERW
//!   `X86_FEATURE_MD_CLEAR`; the L1D flush uses `MSR_IA32_FLUSH_CMD` or else reads a 64 KiB
//!   buffer; the RSB fill is a sequence of calls that every x86-64 CPU runs;
//! - `asi_actions=` asks for it (default: all);
//! - `mitigations=off` is not given;
//! - the attack vector of the site is mitigated: user-to-kernel for the actions at an exit
//!   (they keep user code's training away from the sensitive space, where all data is
//!   mapped), user-to-user for those before user code runs (they keep one process's data and
//!   training away from another's user code). See `mitigations=auto,no_user_kernel`.
//!
//! The model's decisions are counted as *required* whatever the registry says; the kernel
//! counts an action as *executed* when it ran it.
//!
//! This file only uses `core`: it is built into the kernel and, unchanged, into the host test
//! crate.

use crate::policy::{Action, Actions};
use core::fmt;

impl Action {
    /// The name of the action in `asi_actions=`, the boot log and debugfs.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Action::Ibpb => "ibpb",
            Action::RsbFill => "rsb_fill",
            Action::L1dFlush => "l1d_flush",
            Action::Verw => "verw",
        }
    }

    /// The value of this action in `enum asi_action`.
    pub(crate) const fn index(self) -> usize {
        match self {
            Action::Ibpb => 0,
            Action::RsbFill => 1,
            Action::L1dFlush => 2,
            Action::Verw => 3,
        }
    }
}

impl Actions {
    /// The mask of `enum asi_action` bits the C side uses: bit `1 << index` per action.
    pub(crate) fn mask(self) -> u8 {
        self.iter().fold(0, |m, a| m | (1 << a.index()))
    }

    /// The actions of the C mask `mask`; bits of no action are ignored. Only the tests read
    /// masks back.
    #[cfg(any(test, CONFIG_ASI_KUNIT_TEST))]
    pub(crate) fn from_mask(mask: u8) -> Self {
        Action::ALL
            .into_iter()
            .filter(|a| mask & (1 << a.index()) != 0)
            .fold(Actions::NONE, |set, a| set.union(Actions::of(a)))
    }

    /// The actions in both `self` and `other`.
    pub(crate) fn intersection(self, other: Self) -> Self {
        Action::ALL
            .into_iter()
            .filter(|a| self.contains(*a) && other.contains(*a))
            .fold(Actions::NONE, |set, a| set.union(Actions::of(a)))
    }
}

/// How this machine can run an action (`enum asi_action_support`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Support {
    /// Not at all: the action is required but never executed.
    None,
    /// With the CPU's instruction or MSR.
    Cpu,
    /// With a software sequence.
    Software,
}

impl Support {
    /// Converts the value of the C enum; unknown values mean no support.
    pub(crate) fn from_raw(raw: u32) -> Self {
        match raw {
            1 => Support::Cpu,
            2 => Support::Software,
            _ => Support::None,
        }
    }

    /// The name used in the boot log and debugfs.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Support::None => "unsupported",
            Support::Cpu => "cpu",
            Support::Software => "software",
        }
    }
}

/// Where the kernel runs actions (`enum asi_action_site`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    /// Before CR3 switches to the full tables.
    Exit,
    /// Before user code runs.
    Run,
}

/// Why `asi_actions=` was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The value is empty or has an empty item.
    Empty,
    /// An item names no action.
    Unknown,
    /// The value is not UTF-8 or too long to be one.
    Malformed,
}

impl ParseError {
    /// A description for the boot log.
    pub(crate) const fn reason(self) -> &'static str {
        match self {
            ParseError::Empty => "empty item",
            ParseError::Unknown => "unknown action",
            ParseError::Malformed => "malformed value",
        }
    }
}

/// Parses the value of `asi_actions=`: `all`, `none`, or a comma-separated list of action
/// names.
pub(crate) fn parse(value: &[u8]) -> Result<Actions, ParseError> {
    let value = core::str::from_utf8(value).map_err(|_| ParseError::Malformed)?;
    let value = value.trim_end_matches('\n');
    match value {
        "all" => return Ok(Actions::clearing(crate::policy::Taints::ALL)),
        "none" => return Ok(Actions::NONE),
        _ => {}
    }
    let mut set = Actions::NONE;
    for item in value.split(',') {
        if item.is_empty() {
            return Err(ParseError::Empty);
        }
        let action = Action::ALL
            .into_iter()
            .find(|a| a.name() == item)
            .ok_or(ParseError::Unknown)?;
        set = set.union(Actions::of(action));
    }
    Ok(set)
}

/// Everything that decides which actions run where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Setup {
    /// Support per action, in the order of [`Action::ALL`].
    pub(crate) support: [Support; 4],
    /// The actions `asi_actions=` asks for.
    pub(crate) requested: Actions,
    /// `mitigations=off`.
    pub(crate) mitigations_off: bool,
    /// Whether the user-to-kernel attack vector is mitigated.
    pub(crate) user_kernel: bool,
    /// Whether the user-to-user attack vector is mitigated.
    pub(crate) user_user: bool,
}

impl Setup {
    /// How the CPU supports `action`.
    pub(crate) fn support_of(&self, action: Action) -> Support {
        self.support
            .get(action.index())
            .copied()
            .unwrap_or(Support::None)
    }

    /// The actions the CPU supports.
    pub(crate) fn supported(&self) -> Actions {
        Action::ALL
            .into_iter()
            .filter(|a| self.support_of(*a) != Support::None)
            .fold(Actions::NONE, |set, a| set.union(Actions::of(a)))
    }

    /// The actions that run at `site`.
    pub(crate) fn at(&self, site: Site) -> Actions {
        let vector = match site {
            Site::Exit => self.user_kernel,
            Site::Run => self.user_user,
        };
        if self.mitigations_off || !vector {
            return Actions::NONE;
        }
        self.supported().intersection(self.requested)
    }

    /// The boot log's description, one line without the prefix.
    pub(crate) fn boot_line(&self) -> BootLine<'_> {
        BootLine(self)
    }

    /// One line of the debugfs file per action: support and where it runs.
    pub(crate) fn table(&self) -> Table<'_> {
        Table(self)
    }
}

/// Writes the names of `actions`, separated by spaces, or `none`.
fn write_names(f: &mut fmt::Formatter<'_>, actions: Actions) -> fmt::Result {
    if actions.is_empty() {
        return f.write_str("none");
    }
    for (i, a) in actions.iter().enumerate() {
        write!(f, "{}{}", if i == 0 { "" } else { " " }, a.name())?;
    }
    Ok(())
}

/// See [`Setup::boot_line`].
pub(crate) struct BootLine<'a>(&'a Setup);

impl fmt::Display for BootLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setup = self.0;
        f.write_str("actions:")?;
        for (i, a) in Action::ALL.into_iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{}{} {}", sep, a.name(), setup.support_of(a).name())?;
        }
        f.write_str("; at exits: ")?;
        write_names(f, setup.at(Site::Exit))?;
        f.write_str("; before user code: ")?;
        write_names(f, setup.at(Site::Run))?;
        if setup.mitigations_off {
            f.write_str(" (mitigations=off)")?;
        } else if !setup.user_kernel || !setup.user_user {
            f.write_str(" (attack vectors of mitigations=)")?;
        }
        Ok(())
    }
}

/// See [`Setup::table`].
pub(crate) struct Table<'a>(&'a Setup);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setup = self.0;
        let yes = |b: bool| if b { "yes" } else { "no" };
        for a in Action::ALL {
            writeln!(
                f,
                "{}: {}, at exits: {}, before user code: {}",
                a.name(),
                setup.support_of(a).name(),
                yes(setup.at(Site::Exit).contains(a)),
                yes(setup.at(Site::Run).contains(a)),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    const ALL: Setup = Setup {
        support: [Support::Cpu, Support::Software, Support::Cpu, Support::Cpu],
        requested: Actions::clearing(crate::policy::Taints::ALL),
        mitigations_off: false,
        user_kernel: true,
        user_user: true,
    };

    /// QEMU's TCG: no IBPB, no MD_CLEAR, no FLUSH_CMD MSR.
    const TCG: Setup = Setup {
        support: [
            Support::None,
            Support::Software,
            Support::Software,
            Support::None,
        ],
        ..ALL
    };

    fn set(list: &[Action]) -> Actions {
        list.iter()
            .fold(Actions::NONE, |s, a| s.union(Actions::of(*a)))
    }

    #[test]
    fn parse_values() {
        assert_eq!(parse(b"all"), Ok(set(&Action::ALL)));
        assert_eq!(parse(b"none"), Ok(Actions::NONE));
        assert_eq!(parse(b"ibpb"), Ok(set(&[Action::Ibpb])));
        assert_eq!(
            parse(b"verw,ibpb,verw"),
            Ok(set(&[Action::Ibpb, Action::Verw]))
        );
        assert_eq!(
            parse(b"rsb_fill,l1d_flush\n"),
            Ok(set(&[Action::RsbFill, Action::L1dFlush]))
        );
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"ibpb,"), Err(ParseError::Empty));
        assert_eq!(parse(b"ibpb,,verw"), Err(ParseError::Empty));
        assert_eq!(parse(b"IBPB"), Err(ParseError::Unknown));
        assert_eq!(parse(b"all,ibpb"), Err(ParseError::Unknown));
        assert_eq!(parse(b"l1d"), Err(ParseError::Unknown));
        assert_eq!(parse(&[0xff, 0xfe]), Err(ParseError::Malformed));
        assert_eq!(ParseError::Unknown.reason(), "unknown action");
        assert_eq!(ParseError::Empty.reason(), "empty item");
        assert_eq!(ParseError::Malformed.reason(), "malformed value");
    }

    #[test]
    fn masks_match_the_c_enum() {
        assert_eq!(Actions::of(Action::Ibpb).mask(), 1);
        assert_eq!(Actions::of(Action::RsbFill).mask(), 2);
        assert_eq!(Actions::of(Action::L1dFlush).mask(), 4);
        assert_eq!(Actions::of(Action::Verw).mask(), 8);
        for m in 0..=255u8 {
            assert_eq!(Actions::from_mask(m).mask(), m & 0xf);
        }
        assert_eq!(Support::from_raw(0), Support::None);
        assert_eq!(Support::from_raw(1), Support::Cpu);
        assert_eq!(Support::from_raw(2), Support::Software);
        assert_eq!(Support::from_raw(7), Support::None);
    }

    #[test]
    fn sites() {
        assert_eq!(ALL.at(Site::Exit), set(&Action::ALL));
        assert_eq!(ALL.at(Site::Run), set(&Action::ALL));
        assert_eq!(TCG.at(Site::Run), set(&[Action::RsbFill, Action::L1dFlush]));
        let off = Setup {
            mitigations_off: true,
            ..ALL
        };
        assert_eq!(off.at(Site::Exit), Actions::NONE);
        assert_eq!(off.at(Site::Run), Actions::NONE);
        let no_user_kernel = Setup {
            user_kernel: false,
            ..ALL
        };
        assert_eq!(no_user_kernel.at(Site::Exit), Actions::NONE);
        assert_eq!(no_user_kernel.at(Site::Run), set(&Action::ALL));
        let no_user_user = Setup {
            user_user: false,
            ..ALL
        };
        assert_eq!(no_user_user.at(Site::Exit), set(&Action::ALL));
        assert_eq!(no_user_user.at(Site::Run), Actions::NONE);
        let only_ibpb = Setup {
            requested: set(&[Action::Ibpb]),
            ..TCG
        };
        assert_eq!(only_ibpb.at(Site::Exit), Actions::NONE);
    }

    #[test]
    fn reports() {
        assert_eq!(
            format!("{}", TCG.boot_line()),
            "actions: ibpb unsupported, rsb_fill software, l1d_flush software, \
             verw unsupported; at exits: rsb_fill l1d_flush; before user code: \
             rsb_fill l1d_flush"
        );
        let off = Setup {
            mitigations_off: true,
            ..TCG
        };
        assert!(format!("{}", off.boot_line())
            .ends_with("at exits: none; before user code: none (mitigations=off)"));
        let table = format!("{}", TCG.table());
        assert_eq!(
            table,
            "ibpb: unsupported, at exits: no, before user code: no\n\
             rsb_fill: software, at exits: yes, before user code: yes\n\
             l1d_flush: software, at exits: yes, before user code: yes\n\
             verw: unsupported, at exits: no, before user code: no\n"
        );
    }
}
