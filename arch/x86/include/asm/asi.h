/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_X86_ASI_H
#define _ASM_X86_ASI_H

/*
 * Address Space Isolation (ASI), see Documentation/arch/x86/asi.rst.
 *
 * The boot decision and everything that must run in noinstr context is C
 * and lives in arch/x86/mm/asi/asi.c. The rest (state, policy, debugfs and
 * tests) is the Rust crate in arch/x86/mm/asi/rust_asi.rs. The functions
 * below are the whole interface between the two: the ones marked "Rust"
 * are implemented in Rust and called from C, the others the other way
 * round.
 */

#include <linux/types.h>
#include <asm/cpufeature.h>

/* What the asi= boot parameter asked for. */
enum asi_boot_request {
	ASI_BOOT_DEFAULT,	/* no asi= on the command line */
	ASI_BOOT_ON,		/* asi=on */
	ASI_BOOT_OFF,		/* asi=off */
	ASI_BOOT_INVALID,	/* asi= with a value that is not understood */
};

/* This CPU's CR3 together with the inputs the kernel built it from. */
struct asi_cr3_snapshot {
	u64	cr3;		/* CR3 as read from the CPU */
	u64	pgd_pa;		/* physical address of the loaded mm's PGD */
	u64	lam;		/* LAM bits of the loaded mm */
	u16	asid;		/* dynamic ASID the loaded mm runs with */
	bool	pcid;		/* X86_FEATURE_PCID */
	bool	pti_pcid;	/* PTI reserves a PCID bit (compiled in) */
};

#ifdef CONFIG_ASI

static __always_inline bool asi_enabled(void)
{
	return cpu_feature_enabled(X86_FEATURE_ASI);
}

void asi_check_boottime(void);

/* C, called from Rust. */
enum asi_boot_request asi_boot_request(void);
bool asi_boot_cpu_has_asi(void);
void asi_cpu_flag_census(unsigned int *online, unsigned int *flagged);
void asi_cr3_snapshot(struct asi_cr3_snapshot *snap);

/* Rust, called from C. */
int asi_core_init(void);
int asi_debugfs_init(void);

#else /* !CONFIG_ASI */

static __always_inline bool asi_enabled(void)
{
	return false;
}

static inline void asi_check_boottime(void) { }

#endif /* CONFIG_ASI */

#endif /* _ASM_X86_ASI_H */
