// SPDX-License-Identifier: GPL-2.0

//! What ASI reports about itself: at boot in the kernel log and at any time in
//! `/sys/kernel/debug/asi/status`.
//!
//! This file only uses `core`: it is built into the kernel and, unchanged, into the host test
//! crate.

use core::fmt;

/// What the `asi=` boot parameter asked for (`enum asi_boot_request` in `asm/asi.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BootRequest {
    /// No `asi=` on the command line.
    Default,
    /// `asi=on`.
    On,
    /// `asi=off`.
    Off,
    /// `asi=` with a value that was not understood.
    Invalid,
}

impl BootRequest {
    /// Converts the value of the C enum, `None` for a value the enum does not have.
    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Default),
            1 => Some(Self::On),
            2 => Some(Self::Off),
            3 => Some(Self::Invalid),
            _ => None,
        }
    }

    /// Whether ASI is to be enabled. Everything but `asi=on` keeps the default, which is off.
    pub(crate) fn wants_asi(self) -> bool {
        self == Self::On
    }

    /// The name used in the status file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::On => "on",
            Self::Off => "off",
            Self::Invalid => "invalid",
        }
    }

    /// Why ASI is in the state this request leads to, for the boot log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Default => "off by default, boot with asi=on to enable",
            Self::On => "asi=on",
            Self::Off => "asi=off",
            Self::Invalid => "invalid asi= value, using the default",
        }
    }
}

/// Why `asi=on` left ASI off (`enum asi_off_reason` in `asm/asi.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OffReason {
    /// Not refused: ASI is on, or was not asked for.
    None,
    /// PTI is on.
    Pti,
    /// The CPU is affected by Meltdown and PTI is off.
    Meltdown,
    /// `mitigations=off`.
    MitigationsOff,
    /// A hypervisor's remote TLB flush, which may miss the nonsensitive address spaces.
    PvFlush,
    /// A step of the setup failed.
    SetupFailed,
}

impl OffReason {
    /// Converts the value of the C enum, `None` for a value the enum does not have.
    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::None),
            1 => Some(Self::Pti),
            2 => Some(Self::Meltdown),
            3 => Some(Self::MitigationsOff),
            4 => Some(Self::PvFlush),
            5 => Some(Self::SetupFailed),
            _ => None,
        }
    }

    /// The name used in the status file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pti => "pti",
            Self::Meltdown => "meltdown",
            Self::MitigationsOff => "mitigations_off",
            Self::PvFlush => "pv_tlb_flush",
            Self::SetupFailed => "setup_failed",
        }
    }

    /// The end of the boot line of a refused `asi=on`.
    fn text(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Pti => "PTI is on",
            Self::Meltdown => "the CPU is affected by Meltdown",
            Self::MitigationsOff => "mitigations=off",
            Self::PvFlush => "the hypervisor's remote TLB flush is not supported",
            Self::SetupFailed => "its setup failed",
        }
    }
}

/// A snapshot of ASI's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Status {
    /// Whether the boot CPU has `X86_FEATURE_ASI`.
    pub(crate) enabled: bool,
    /// What the boot parameter asked for.
    pub(crate) request: BootRequest,
    /// Whether PTI is on, which keeps ASI off.
    pub(crate) pti: bool,
    /// Why the kernel left ASI off although `asi=on` asked for it.
    pub(crate) off_reason: OffReason,
    /// Whether the CPU tags TLB entries with PCIDs.
    pub(crate) pcid: bool,
    /// Online CPUs.
    pub(crate) cpus_online: u32,
    /// Online CPUs whose `/proc/cpuinfo` entry shows the `asi` flag.
    pub(crate) cpus_flagged: u32,
    /// Whether ASI's CR3 encoder reproduces the CR3 the reading CPU runs with.
    pub(crate) cr3_encoding_ok: bool,
}

impl Status {
    /// Whether the state is what the boot parameter asked for, on every CPU.
    pub(crate) fn consistent(&self) -> bool {
        let expected = if self.enabled { self.cpus_online } else { 0 };
        self.enabled == self.expected() && self.cpus_flagged == expected
    }

    /// Whether ASI should be on: asked for, PTI off and not refused for another reason.
    pub(crate) fn expected(&self) -> bool {
        self.request.wants_asi() && !self.pti && self.off_reason == OffReason::None
    }

    /// The line logged at boot, without the `asi: ` prefix.
    pub(crate) fn boot_line(&self) -> BootLine<'_> {
        BootLine(self)
    }
}

/// Writes the content of the debugfs `status` file: one `key: value` pair per line.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "enabled: {}", yes_no(self.enabled))?;
        writeln!(f, "boot_param: {}", self.request.name())?;
        writeln!(f, "pti: {}", yes_no(self.pti))?;
        writeln!(f, "off_reason: {}", self.off_reason.name())?;
        writeln!(f, "pcid: {}", yes_no(self.pcid))?;
        writeln!(f, "cpus_online: {}", self.cpus_online)?;
        writeln!(f, "cpus_with_flag: {}", self.cpus_flagged)?;
        let cr3 = if self.cr3_encoding_ok {
            "ok"
        } else {
            "mismatch"
        };
        writeln!(f, "cr3_encoding: {cr3}")?;
        writeln!(f, "consistent: {}", yes_no(self.consistent()))
    }
}

/// The boot log line, see [`Status::boot_line`].
pub(crate) struct BootLine<'a>(&'a Status);

impl fmt::Display for BootLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let state = if s.enabled { "enabled" } else { "disabled" };
        write!(
            f,
            "Address Space Isolation {state} ({})",
            s.request.reason()
        )?;
        if s.enabled {
            let pcid = if s.pcid { "with" } else { "without" };
            write!(f, ", {pcid} PCID")?;
        } else if s.request.wants_asi() && s.pti {
            write!(f, ", but PTI is on")?;
        } else if s.request.wants_asi() && s.off_reason != OffReason::None {
            write!(f, ", but {}", s.off_reason.text())?;
        }
        Ok(())
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn status(enabled: bool, request: BootRequest) -> Status {
        Status {
            enabled,
            request,
            pti: false,
            off_reason: OffReason::None,
            pcid: false,
            cpus_online: 2,
            cpus_flagged: if enabled { 2 } else { 0 },
            cr3_encoding_ok: true,
        }
    }

    #[test]
    fn raw_values_match_the_c_enum() {
        assert_eq!(BootRequest::from_raw(0), Some(BootRequest::Default));
        assert_eq!(BootRequest::from_raw(1), Some(BootRequest::On));
        assert_eq!(BootRequest::from_raw(2), Some(BootRequest::Off));
        assert_eq!(BootRequest::from_raw(3), Some(BootRequest::Invalid));
        assert_eq!(BootRequest::from_raw(4), None);
        assert_eq!(OffReason::from_raw(0), Some(OffReason::None));
        assert_eq!(OffReason::from_raw(1), Some(OffReason::Pti));
        assert_eq!(OffReason::from_raw(2), Some(OffReason::Meltdown));
        assert_eq!(OffReason::from_raw(3), Some(OffReason::MitigationsOff));
        assert_eq!(OffReason::from_raw(4), Some(OffReason::PvFlush));
        assert_eq!(OffReason::from_raw(5), Some(OffReason::SetupFailed));
        assert_eq!(OffReason::from_raw(6), None);
    }

    #[test]
    fn only_on_enables() {
        assert!(BootRequest::On.wants_asi());
        assert!(!BootRequest::Off.wants_asi());
        assert!(!BootRequest::Default.wants_asi());
        assert!(!BootRequest::Invalid.wants_asi());
    }

    #[test]
    fn status_file_format() {
        let s = status(true, BootRequest::On);
        assert_eq!(
            s.to_string(),
            concat!(
                "enabled: yes\n",
                "boot_param: on\n",
                "pti: no\n",
                "off_reason: none\n",
                "pcid: no\n",
                "cpus_online: 2\n",
                "cpus_with_flag: 2\n",
                "cr3_encoding: ok\n",
                "consistent: yes\n",
            )
        );
        let mut s = status(false, BootRequest::Invalid);
        s.cr3_encoding_ok = false;
        let text = s.to_string();
        assert!(text.starts_with("enabled: no\nboot_param: invalid\n"));
        assert!(text.contains("\ncr3_encoding: mismatch\n"));
    }

    #[test]
    fn consistency() {
        assert!(status(true, BootRequest::On).consistent());
        assert!(status(false, BootRequest::Off).consistent());
        assert!(status(false, BootRequest::Default).consistent());
        assert!(!status(true, BootRequest::Off).consistent());
        assert!(!status(false, BootRequest::On).consistent());
        let mut partial = status(true, BootRequest::On);
        partial.cpus_flagged = 1;
        assert!(!partial.consistent());
        let mut stray = status(false, BootRequest::Off);
        stray.cpus_flagged = 1;
        assert!(!stray.consistent());
        // PTI keeps ASI off, even with asi=on.
        let mut pti = status(false, BootRequest::On);
        pti.pti = true;
        assert!(pti.consistent());
        let mut both = status(true, BootRequest::On);
        both.pti = true;
        assert!(!both.consistent());
        // So do the other refusals.
        let mut refused = status(false, BootRequest::On);
        refused.off_reason = OffReason::MitigationsOff;
        assert!(refused.consistent());
        refused.enabled = true;
        refused.cpus_flagged = 2;
        assert!(!refused.consistent());
    }

    #[test]
    fn boot_line() {
        let mut s = status(true, BootRequest::On);
        assert_eq!(
            s.boot_line().to_string(),
            "Address Space Isolation enabled (asi=on), without PCID"
        );
        s.pcid = true;
        assert_eq!(
            s.boot_line().to_string(),
            "Address Space Isolation enabled (asi=on), with PCID"
        );
        assert_eq!(
            status(false, BootRequest::Invalid).boot_line().to_string(),
            "Address Space Isolation disabled (invalid asi= value, using the default)"
        );
        let mut pti = status(false, BootRequest::On);
        pti.pti = true;
        assert_eq!(
            pti.boot_line().to_string(),
            "Address Space Isolation disabled (asi=on), but PTI is on"
        );
        let mut off = status(false, BootRequest::On);
        off.off_reason = OffReason::MitigationsOff;
        assert_eq!(
            off.boot_line().to_string(),
            "Address Space Isolation disabled (asi=on), but mitigations=off"
        );
        off.off_reason = OffReason::PvFlush;
        assert!(off
            .boot_line()
            .to_string()
            .ends_with("TLB flush is not supported"));
        off.off_reason = OffReason::SetupFailed;
        assert!(off
            .boot_line()
            .to_string()
            .ends_with(", but its setup failed"));
    }
}
