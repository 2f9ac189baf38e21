// SPDX-License-Identifier: GPL-2.0
/*
 * Address Space Isolation: boot control and the C side of the Rust core.
 *
 * asi= is parsed as an early parameter and acted on from init_mem_mapping(),
 * next to the PTI decision: that is before the direct map is built and long
 * before alternatives are patched, so X86_FEATURE_ASI is final by the time
 * anything can test it. Everything that can run instrumented (state,
 * debugfs, tests) is in Rust; this file only holds what the Rust code cannot
 * reach by itself.
 */

#define pr_fmt(fmt) "asi: " fmt

#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/init.h>
#include <linux/printk.h>
#include <linux/smp.h>
#include <linux/string.h>

#include <asm/asi.h>
#include <asm/processor.h>
#include <asm/tlbflush.h>

static enum asi_boot_request asi_request __ro_after_init = ASI_BOOT_DEFAULT;

/*
 * asi=on|off. The last occurrence wins, like for most x86 parameters. A value
 * that is not understood is reported and leaves ASI at its default (off).
 */
static int __init asi_parse_cmdline(char *arg)
{
	if (arg && !strcmp(arg, "on")) {
		asi_request = ASI_BOOT_ON;
	} else if (arg && !strcmp(arg, "off")) {
		asi_request = ASI_BOOT_OFF;
	} else {
		pr_warn("ignoring invalid asi=%s, expected asi=on or asi=off; ASI stays off\n",
			arg ? arg : "");
		asi_request = ASI_BOOT_INVALID;
	}
	return 0;
}
early_param("asi", asi_parse_cmdline);

/* Called from init_mem_mapping(), after early parameters have been parsed. */
void __init asi_check_boottime(void)
{
	if (asi_request != ASI_BOOT_ON)
		return;

	setup_force_cpu_cap(X86_FEATURE_ASI);
}

enum asi_boot_request asi_boot_request(void)
{
	return asi_request;
}

bool asi_boot_cpu_has_asi(void)
{
	return boot_cpu_has(X86_FEATURE_ASI);
}

/* Count the online CPUs, and those whose /proc/cpuinfo shows "asi". */
void asi_cpu_flag_census(unsigned int *online, unsigned int *flagged)
{
	unsigned int cpu;

	*online = 0;
	*flagged = 0;

	cpus_read_lock();
	for_each_online_cpu(cpu) {
		(*online)++;
		if (cpu_has(&cpu_data(cpu), X86_FEATURE_ASI))
			(*flagged)++;
	}
	cpus_read_unlock();
}

/*
 * Read CR3 and the state switch_mm_irqs_off() built it from, with preemption
 * disabled so that all of it describes the same CPU at the same time.
 */
void asi_cr3_snapshot(struct asi_cr3_snapshot *snap)
{
	struct mm_struct *loaded_mm;

	preempt_disable();
	loaded_mm = this_cpu_read(cpu_tlbstate.loaded_mm);
	snap->cr3 = __read_cr3();
	snap->pgd_pa = __pa(loaded_mm->pgd);
	snap->lam = tlbstate_lam_cr3_mask();
	snap->asid = this_cpu_read(cpu_tlbstate.loaded_mm_asid);
	preempt_enable();

	snap->pcid = boot_cpu_has(X86_FEATURE_PCID);
	snap->pti_pcid = IS_ENABLED(CONFIG_MITIGATION_PAGE_TABLE_ISOLATION);
}

static int __init asi_early_init(void)
{
	return asi_core_init();
}
early_initcall(asi_early_init);

static int __init asi_late_init(void)
{
	return asi_debugfs_init();
}
late_initcall(asi_late_init);
