// SPDX-License-Identifier: GPL-2.0

//! KUnit suite `asi`.
//!
//! Checks what the boot parameter asked for against what the kernel did: the CPU feature flag
//! of every CPU (what `/proc/cpuinfo` shows) and the content of the debugfs `status` file. Run
//! once with `asi=on` and once without, these tests pass only if ASI follows the parameter. It
//! also checks the CR3 encoder against the CR3 the CPU is running with.

#[cfg(CONFIG_ASI_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(asi)]
mod tests {
    use crate::{cr3::Cr3, sys};
    use kernel::{prelude::*, str::CString};

    #[test]
    fn boot_cpu_flag_follows_boot_parameter() {
        assert_eq!(sys::boot_cpu_has_asi(), sys::boot_request().wants_asi());
    }

    #[test]
    fn every_cpu_flag_follows_boot_parameter() {
        let census = sys::cpu_flag_census();
        assert!(census.online > 0);
        let expected = if sys::boot_request().wants_asi() {
            census.online
        } else {
            0
        };
        assert_eq!(census.flagged, expected);
    }

    #[test]
    fn status_file_follows_boot_parameter() -> Result {
        let request = sys::boot_request();
        let text = CString::try_from_fmt(format_args!("{}", crate::current_status()))?;
        let text = text.to_str()?;
        let enabled = if request.wants_asi() {
            "enabled: yes\n"
        } else {
            "enabled: no\n"
        };
        assert!(text.starts_with(enabled));
        let param = CString::try_from_fmt(format_args!("\nboot_param: {}\n", request.name()))?;
        assert!(text.contains(param.to_str()?));
        assert!(text.ends_with("consistent: yes\n"));
        Ok(())
    }

    #[test]
    fn running_cr3_matches_the_encoder() {
        let snap = sys::cr3_snapshot();
        assert_eq!(crate::cr3_encoding_of(&snap), Ok(Cr3::from_raw(snap.cr3)));
    }
}
