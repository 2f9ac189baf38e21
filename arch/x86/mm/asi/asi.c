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
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/fault-inject.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/init.h>
#include <linux/irq_work.h>
#include <linux/mem_encrypt.h>
#include <linux/memory.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/printk.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/vmalloc.h>

#include <asm/apic.h>
#include <asm/asi_internal.h>
#include <asm/cpu_entry_area.h>
#include <asm/desc.h>
#include <asm/mmu_context.h>
#include <asm/nmi.h>
#include <asm/paravirt.h>
#include <asm/pgalloc.h>
#include <asm/processor.h>
#include <asm/sections.h>
#include <asm/set_memory.h>
#include <asm/setup.h>
#include <asm/tlbflush.h>

#define CREATE_TRACE_POINTS
#include <asm/trace/asi.h>

static enum asi_boot_request asi_request __ro_after_init = ASI_BOOT_DEFAULT;

#ifdef CONFIG_FAULT_INJECTION
/*
 * A fault attribute @name and its boot parameter "@name=".
 *
 * setup_fault_attr() cannot run while the command line is parsed: its
 * prandom_init_once() allocates (to disable the static key it uses), and
 * the slab allocator is not up yet, so a boot with any complete value
 * would die before printing anything. The value is kept, and
 * @name_apply() applies it once the allocator is up.
 */
#define ASI_FAULT_ATTR(name)					\
	static DECLARE_FAULT_ATTR(name);			\
	static char name##_param[32] __initdata;		\
								\
	static int __init name##_setup(char *str)		\
	{							\
		strscpy(name##_param, str);			\
		return 1;					\
	}							\
	__setup(#name "=", name##_setup);			\
								\
	static void __init name##_apply(void)			\
	{							\
		if (name##_param[0])				\
			setup_fault_attr(&name, name##_param);	\
	}
#endif

/*
 * Whether this CPU runs on ASI's nonsensitive tables, and the
 * CR3 of the full address space to go back to.
 *
 * A CPU enters on its way back to user mode (__asi_enter_nonsensitive())
 * and stays nonsensitive, in user mode and in the kernel, until something
 * needs the full tables: a #PF on a kernel address they map, or code that
 * loads or reads CR3 (asi_exit()). While nonsensitive, full_cr3 is what
 * switch_mm_irqs_off() loaded for the loaded mm; every CR3 load of tlb.c
 * exits first, so it cannot go stale.
 *
 * Ordering, against an NMI or #PF between any two instructions:
 * - entering writes full_cr3, then sets the flag, then writes CR3;
 * - leaving writes CR3, then clears the flag.
 * So whenever the flag is set, full_cr3 is valid and CR3 is one of the
 * two, and leaving again is harmless; whenever it is clear, CR3 is the full
 * one. An NMI handler that leaves puts back, at its end, the flag and the
 * CR3 it found (__asi_ist_exit()), so code interrupted on its way to user
 * mode returns on the tables it chose.
 *
 * TLB: with PCIDs, each dynamic ASID has two PCIDs, the full one that
 * tlb.c knows and the nonsensitive twin (ASI's PCID bit set). tlb.c's
 * bookkeeping (ctxs[asid], invalidate_other) says whether an ASID as a
 * whole is up to date; stale_full and stale_ns add, per ASID, whether
 * one of its PCIDs may still hold entries that a flush since missed. The
 * rules, checked by the host model of tlb.c and ASI (host/tlbmodel, the
 * "tracked" design):
 *
 * R1 - a flush of the current PCID only (INVLPG, or a CR3 rewrite) marks
 *      the loaded ASID's other PCID stale (asi_note_local_flush());
 * R2 - tlb.c loading an ASID with a flush (a new or outdated mm) marks
 *      both its PCIDs stale first (asi_note_new_asid());
 * R3 - a kernel flush by INVLPG also sets invalidate_other, as with PTI,
 *      so that the other ASIDs are flushed when next loaded (the direct
 *      map, the part of the kernel that differs, is non-global);
 * R4 - every CR3 write of one of an ASID's PCIDs uses CR3_NOFLUSH only if
 *      that PCID is not marked stale and tlb.c would not flush it: for
 *      switches, tlb.c's own decision; for enter and exit, ctxs[asid]
 *      holding the loaded mm at its current tlb_gen (a lazy CPU skips
 *      flushes and may be sent one only for freed page tables). Any
 *      write without CR3_NOFLUSH clears the mark.
 * R5 - a page that becomes sensitive is flushed from every PCID, global
 *      entries included (flush_tlb_all()).
 *
 * R1, R2 and R4 are decided in Rust (pcid_rules.rs, which the host model
 * runs); the C code below only tells them which event happened and looks
 * their decision up in the table asi_pcid_rules[] (asi_pcid_rule()).
 *
 * The marks are set and cleared with single per-CPU instructions, with
 * interrupts off; NMIs only clear them.
 */
struct asi_cpu_state {
	bool	nonsensitive;
	u64	full_cr3;
	u16	stale_full;	/* bit n: ASID n's full PCID is stale */
	u16	stale_ns;	/* bit n: ASID n's nonsensitive PCID is stale */
};
static DEFINE_PER_CPU(struct asi_cpu_state, asi_cpu_state);
static DEFINE_PER_CPU(u64, asi_exits[ASI_NR_EXIT_REASONS]);
static DEFINE_PER_CPU(u64, asi_enters);
static DEFINE_PER_CPU(u64, asi_switches);
/* ASI's CR3 writes: [0] flushing the PCID they load, [1] with CR3_NOFLUSH. */
static DEFINE_PER_CPU(u64, asi_cr3_writes[2]);

/* Every CR3 write of ASI goes through here, to be counted. */
static __always_inline void asi_write_cr3(u64 cr3)
{
	native_write_cr3(cr3);
	this_cpu_inc(asi_cr3_writes[!!(cr3 & CR3_NOFLUSH)]);
}

static_assert(TLB_NR_DYN_ASIDS <= 16);

/*
 * Apply @ev to the marks of @asid as the rules decide (asi_pcid_rules[]),
 * and return whether a CR3 write may use CR3_NOFLUSH. Each mark that
 * changes does so by a single per-CPU instruction; an NMI in between, which
 * can only clear marks, at worst leaves one set that it cleared.
 */
static __always_inline bool asi_pcid_rule(enum asi_pcid_event ev, u16 asid)
{
	u16 bit = BIT(asid % TLB_NR_DYN_ASIDS);
	unsigned int marks = 0;
	u8 d;

	if (this_cpu_read(asi_cpu_state.stale_full) & bit)
		marks |= ASI_PCID_FULL;
	if (this_cpu_read(asi_cpu_state.stale_ns) & bit)
		marks |= ASI_PCID_NS;
	d = asi_pcid_rules[ev][marks];
	if ((d ^ marks) & ASI_PCID_FULL) {
		if (d & ASI_PCID_FULL)
			this_cpu_or(asi_cpu_state.stale_full, bit);
		else
			this_cpu_and(asi_cpu_state.stale_full, (u16)~bit);
	}
	if ((d ^ marks) & ASI_PCID_NS) {
		if (d & ASI_PCID_NS)
			this_cpu_or(asi_cpu_state.stale_ns, bit);
		else
			this_cpu_and(asi_cpu_state.stale_ns, (u16)~bit);
	}
	return d & ASI_PCID_NOFLUSH;
}

/*
 * R4: whether the CR3 write about to load the nonsensitive (@ns) or full
 * PCID of @asid may use CR3_NOFLUSH, given that the write @wanted it; the
 * write is then made, and flushes that PCID unless the answer was yes.
 * Without PCIDs every CR3 write flushes; the marks are kept anyway.
 */
static __always_inline bool asi_pcid_noflush(bool ns, u16 asid, bool wanted)
{
	enum asi_pcid_event ev;

	if (ns)
		ev = wanted ? ASI_PCID_LOAD_NS_KEEP : ASI_PCID_LOAD_NS;
	else
		ev = wanted ? ASI_PCID_LOAD_FULL_KEEP : ASI_PCID_LOAD_FULL;
	return asi_pcid_rule(ev, asid) && asid < TLB_NR_DYN_ASIDS &&
	       cpu_feature_enabled(X86_FEATURE_PCID);
}

/*
 * Whether @asid is the loaded ASID and tlb.c's state of it is the loaded mm
 * at its current tlb_gen, so that only ASI's marks can make one of its
 * PCIDs stale. Not while switch_mm_irqs_off() changes the mm.
 */
static __always_inline bool asi_asid_current(u16 asid)
{
	struct mm_struct *mm = this_cpu_read(cpu_tlbstate.loaded_mm);

	if (mm == LOADED_MM_SWITCHING || asid >= TLB_NR_DYN_ASIDS ||
	    this_cpu_read(cpu_tlbstate.loaded_mm_asid) != asid)
		return false;
	return this_cpu_read(cpu_tlbstate.ctxs[asid].ctx_id) == mm->context.ctx_id &&
	       this_cpu_read(cpu_tlbstate.ctxs[asid].tlb_gen) ==
	       (u64)raw_atomic64_read(&mm->context.tlb_gen);
}

/*
 * The dynamic ASID whose PCID @cr3 loads, ASI's bit aside (the inverse of
 * tlb.c's kern_pcid(): PCID = ASID + 1), or -1: without PCIDs, or for a
 * PCID that is not a dynamic ASID's.
 */
static __always_inline int asi_cr3_asid(u64 cr3)
{
	unsigned int pcid = cr3 & CR3_PCID_MASK & ~(1ULL << X86_CR3_ASI_PCID_BIT);

	if (!cpu_feature_enabled(X86_FEATURE_PCID) || !pcid || pcid > TLB_NR_DYN_ASIDS)
		return -1;
	return pcid - 1;
}

/*
 * @cr3 enters (@ns) or leaves the nonsensitive space: with CR3_NOFLUSH if
 * R4 allows. The ASID comes from @cr3, not from cpu_tlbstate, which an NMI
 * in switch_mm_irqs_off() finds half-updated.
 */
static __always_inline u64 asi_cr3_noflush(u64 cr3, bool ns)
{
	int asid = asi_cr3_asid(cr3);

	if (asid >= 0 && asi_pcid_noflush(ns, asid, asi_asid_current(asid)))
		cr3 |= CR3_NOFLUSH;
	return cr3;
}

/* R1, see above. IRQs off. */
void __asi_note_local_flush(void)
{
	/*
	 * The flag, not CR3: no flush runs inside asi_load_nonsensitive() or
	 * asi_load_full().
	 */
	asi_pcid_rule(this_cpu_read(asi_cpu_state.nonsensitive) ?
		      ASI_PCID_LOCAL_FLUSH_NS : ASI_PCID_LOCAL_FLUSH_FULL,
		      this_cpu_read(cpu_tlbstate.loaded_mm_asid));
}

/* R2, see above. IRQs off. */
void __asi_note_new_asid(u16 asid)
{
	asi_pcid_rule(ASI_PCID_NEW_ASID, asid);
}

/* R4 for tlb.c's own load of the full CR3 @cr3 of @asid. IRQs off. */
unsigned long __asi_full_cr3_load(unsigned long cr3, u16 asid)
{
	if (asi_pcid_noflush(false, asid, cr3 & CR3_NOFLUSH))
		return cr3;
	return cr3 & ~CR3_NOFLUSH;
}

/* Switch this CPU to the nonsensitive tables at @cr3. IRQs off. */
static noinstr void asi_load_nonsensitive(u64 cr3)
{
	this_cpu_write(asi_cpu_state.full_cr3, __native_read_cr3());
	this_cpu_write(asi_cpu_state.nonsensitive, true);
	asi_write_cr3(cr3);
	this_cpu_inc(asi_enters);
}

/*
 * Switch this CPU to the full address space, after the actions the taint
 * model armed for an exit. IRQs off or in an exception.
 */
static noinstr void asi_load_full(enum asi_exit_reason reason)
{
	u64 cr3 = this_cpu_read(asi_cpu_state.full_cr3);

	__asi_exit_actions();
	asi_write_cr3(asi_cr3_noflush(cr3, false));
	this_cpu_write(asi_cpu_state.nonsensitive, false);
	this_cpu_inc(asi_exits[reason]);
}

/*
 * The CR3 of the nonsensitive tables at physical address @pgd for the full
 * address space loaded as @full: the same PCID, with ASI's bit, and the same
 * LAM and encryption bits.
 */
static __always_inline u64 asi_cr3(u64 full, u64 pgd)
{
	u64 cr3 = (full & ~CR3_ADDR_MASK) | pgd;

	if (cpu_feature_enabled(X86_FEATURE_PCID))
		cr3 |= 1ULL << X86_CR3_ASI_PCID_BIT;
	return cr3;
}

noinstr void __asi_enter_nonsensitive(void)
{
	struct mm_struct *mm = current->mm;
	pgd_t *asi_pgd;
	u64 full;

	if (this_cpu_read(asi_cpu_state.nonsensitive) || !mm)
		return;
	asi_pgd = READ_ONCE(mm->context.asi_pgd);
	if (!asi_pgd)
		return;
	/* Only from the full tables of this mm, not from a temporary one. */
	full = __native_read_cr3();
	if ((full & CR3_ADDR_MASK) != __pa_nodebug(mm->pgd))
		return;
	asi_load_nonsensitive(asi_cr3_noflush(asi_cr3(full, __pa_nodebug(asi_pgd)),
					      true));
}

/*
 * The nonsensitive tables map the same user half as the full ones, so only
 * a kernel-mode fault on a kernel address can be ASI's doing. Within an NMI
 * the exit is undone when the NMI returns, and counted apart.
 */
noinstr bool __asi_fault_exit(struct pt_regs *regs, unsigned long address)
{
	if (!this_cpu_read(asi_cpu_state.nonsensitive) || user_mode(regs) ||
	    address < TASK_SIZE_MAX)
		return false;
	if (in_nmi()) {
		asi_load_full(ASI_EXIT_NMI);
		__asi_note_foreign();
	} else {
		asi_load_full(ASI_EXIT_PAGE_FAULT);
	}
	return true;
}

/*
 * After an exit: code that may touch the data of an mm other than current's
 * runs in the full space now (an interrupt, a kernel thread, reclaim).
 */
static void asi_note_exit_context(void)
{
	if (in_interrupt() || !current->mm ||
	    (current->flags & (PF_KTHREAD | PF_MEMALLOC)))
		__asi_note_foreign();
}

/*
 * After __asi_fault_exit() left, from instrumentable context: trace the
 * exit and tell whether the full tables grant the access. If they do, the
 * fault was ASI's alone and returning retries the instruction; if not, the
 * fault is handled as if ASI did not exist.
 */
bool asi_fault_retry(struct pt_regs *regs, unsigned long error_code,
		     unsigned long address)
{
	if (!in_nmi())
		asi_note_exit_context();
	trace_asi_exit(in_nmi() ? ASI_EXIT_NMI : ASI_EXIT_PAGE_FAULT, address,
		       regs->ip);
	return asi_fault_granted(address, error_code);
}

void __asi_exit(enum asi_exit_reason reason, unsigned long ip)
{
	unsigned long flags;
	bool left = false;

	/*
	 * Callers run with preemption disabled. Not nonsensitive is the common
	 * case on the context-switch path: no need to mask interrupts. An
	 * interrupt may still leave before they are masked, hence the
	 * second check.
	 */
	if (!this_cpu_read(asi_cpu_state.nonsensitive))
		return;
	local_irq_save(flags);
	if (this_cpu_read(asi_cpu_state.nonsensitive)) {
		asi_load_full(reason);
		left = true;
	}
	local_irq_restore(flags);
	if (left) {
		asi_note_exit_context();
		trace_asi_exit(reason, 0, ip);
	}
}

/*
 * switch_mm_irqs_off() is about to load @cr3, the full CR3 of the mm whose
 * PGD is @pgdir. If this CPU is nonsensitive and that mm has a nonsensitive
 * table, load that instead and stay nonsensitive: the scheduler touches no
 * user data, and the next process goes on where it left the nonsensitive
 * space, if it did. Returns whether CR3 was written.
 *
 * Same ordering as entering: full_cr3 first, then CR3. An NMI in between
 * that leaves goes to the new mm's full tables and comes back to the old
 * nonsensitive ones, from which CR3 is then written again. The write uses
 * CR3_NOFLUSH only where the caller's did and the nonsensitive PCID is not
 * marked stale (R4); the full PCID keeps the mark R2 may have set, for
 * when the CPU leaves.
 */
bool __asi_switch_mm(pgd_t *pgdir, unsigned long cr3, u16 asid)
{
	struct ptdesc *pt = virt_to_ptdesc(pgdir);
	struct mm_struct *mm;
	pgd_t *asi_pgd;
	u64 full;

	lockdep_assert_irqs_disabled();
	if (!this_cpu_read(asi_cpu_state.nonsensitive) || !PageTable(ptdesc_page(pt)))
		return false;
	mm = pgd_page_get_mm(pt);
	if (!mm || mm == &init_mm || mm->pgd != pgdir)
		return false;
	asi_pgd = READ_ONCE(mm->context.asi_pgd);
	if (!asi_pgd)
		return false;
	full = cr3 & ~CR3_NOFLUSH;
	this_cpu_write(asi_cpu_state.full_cr3, full);
	/* R4 with tlb.c's decision; the full PCID keeps its mark (R2). */
	if (asi_pcid_noflush(true, asid, cr3 & CR3_NOFLUSH))
		asi_write_cr3(asi_cr3(full, __pa(asi_pgd)) | CR3_NOFLUSH);
	else
		asi_write_cr3(asi_cr3(full, __pa(asi_pgd)));
	this_cpu_inc(asi_switches);
	return true;
}

noinstr void __asi_exit_noinstr(enum asi_exit_reason reason)
{
	if (this_cpu_read(asi_cpu_state.nonsensitive))
		asi_load_full(reason);
}

/*
 * CR3 at the start of an NMI if the CPU was nonsensitive, else 0. An NMI on
 * the full tables may touch any mm's data.
 */
noinstr u64 __asi_ist_enter(void)
{
	if (this_cpu_read(asi_cpu_state.nonsensitive))
		return __native_read_cr3();
	__asi_note_foreign();
	return 0;
}

/*
 * End of an NMI that started nonsensitive with CR3 @cr3: if the handler left,
 * go back. The flag goes first, as when entering; full_cr3 is unchanged,
 * since only the return to user mode enters.
 */
noinstr void __asi_ist_exit(u64 cr3)
{
	if (!cr3 || this_cpu_read(asi_cpu_state.nonsensitive))
		return;
	this_cpu_write(asi_cpu_state.nonsensitive, true);
	asi_write_cr3(cr3);
	this_cpu_inc(asi_enters);
}

noinstr bool __asi_in_nonsensitive(void)
{
	return this_cpu_read(asi_cpu_state.nonsensitive);
}

noinstr unsigned long __asi_read_full_cr3(void)
{
	if (this_cpu_read(asi_cpu_state.nonsensitive))
		return this_cpu_read(asi_cpu_state.full_cr3);
	return __read_cr3();
}

/*
 * A CPU coming up or back from suspend runs on the full tables, and knows
 * nothing about what its PCIDs hold.
 */
void asi_cpu_reset(void)
{
	this_cpu_write(asi_cpu_state.nonsensitive, false);
	this_cpu_write(asi_cpu_state.stale_full, (u16)GENMASK(TLB_NR_DYN_ASIDS - 1, 0));
	this_cpu_write(asi_cpu_state.stale_ns, (u16)GENMASK(TLB_NR_DYN_ASIDS - 1, 0));
}

/* Exits of all CPUs for @reason since boot (or the last reset). */
u64 asi_exit_count(enum asi_exit_reason reason)
{
	unsigned int cpu;
	u64 sum = 0;

	if (reason >= ASI_NR_EXIT_REASONS)
		return 0;
	for_each_possible_cpu(cpu)
		sum += per_cpu(asi_exits[reason], cpu);
	return sum;
}

/*
 * Enters (@what -1), switches between mms that stay nonsensitive (-2), CR3
 * writes that flush (-3) or keep (-4) the PCID they load, or exits for
 * reason @what of possible CPU @cpu; false if there is no such CPU or
 * reason.
 */
bool asi_transition_count(unsigned int cpu, int what, u64 *count)
{
	if (cpu >= nr_cpu_ids || !cpu_possible(cpu) || what >= ASI_NR_EXIT_REASONS ||
	    what < -4)
		return false;
	if (what == -1)
		*count = per_cpu(asi_enters, cpu);
	else if (what == -2)
		*count = per_cpu(asi_switches, cpu);
	else if (what == -3 || what == -4)
		*count = per_cpu(asi_cr3_writes[what == -4], cpu);
	else
		*count = per_cpu(asi_exits[what], cpu);
	return true;
}

unsigned int asi_nr_cpu_ids(void)
{
	return nr_cpu_ids;
}

/*
 * Zero the counters. Not atomic against CPUs counting at the same time: a
 * transition racing with the reset may be kept or lost.
 */
void asi_reset_transition_counts(void)
{
	unsigned int cpu;
	int r;

	for_each_possible_cpu(cpu) {
		per_cpu(asi_enters, cpu) = 0;
		per_cpu(asi_switches, cpu) = 0;
		per_cpu(asi_cr3_writes[0], cpu) = 0;
		per_cpu(asi_cr3_writes[1], cpu) = 0;
		for (r = 0; r < ASI_NR_EXIT_REASONS; r++)
			per_cpu(asi_exits[r], cpu) = 0;
	}
}

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

/*
 * Whether the command line asks for ASI. kernel_randomize_memory() lays out
 * the kernel's address space before asi_check_boottime() decides, and
 * keeps the direct map's top-level entries to itself if ASI may run.
 */
bool __init asi_requested(void)
{
	return asi_request == ASI_BOOT_ON;
}

#ifdef CONFIG_FAULT_INJECTION
/*
 * fail_asi_setup=<interval>,<probability>,<space>,<times>: make a step of
 * asi_setup() fail. The steps ask in order: the non-global direct map,
 * the software L1D flush buffer, then each page-table page of the
 * nonsensitive tables, so a space of N fails the N-th.
 */
ASI_FAULT_ATTR(fail_asi_setup)

static void __init asi_setup_fault_attr(void)
{
	fail_asi_setup_apply();
	/* One line per forced failure, no stack dump. */
	fail_asi_setup.verbose = 1;
}

static bool asi_setup_fails(void)
{
	return should_fail(&fail_asi_setup, 1);
}
#else
static void __init asi_setup_fault_attr(void) { }

static bool asi_setup_fails(void)
{
	return false;
}
#endif

/* Why asi=on left ASI off (enum asi_off_reason); ASI_OFF_NONE otherwise. */
static enum asi_off_reason asi_off __ro_after_init = ASI_OFF_NONE;

/* asi_check_boottime() found nothing against ASI: asi_setup() may enable it. */
static bool asi_wanted __initdata;

/*
 * The kernel's direct map is built non-global: from asi_check_boottime(),
 * if it found nothing against ASI, until asi_setup() fails, if it does.
 */
static bool asi_dm_nonglobal __ro_after_init;

/* Global leaves of the direct map that asi_setup() found and converted. */
static unsigned long asi_dm_global_at_setup __ro_after_init;

/* asi_setup() is running: its allocations may be made to fail. */
static bool asi_setting_up __ro_after_init;

static void __init asi_refuse(enum asi_off_reason reason, const char *why)
{
	asi_off = reason;
	pr_info("%s; ASI stays off\n", why);
}

/*
 * Called from init_mem_mapping(), after early parameters have been parsed,
 * right after the PTI decision and before setup_pcid().
 *
 * ASI does not run alongside PTI: the entry code's switch to the kernel
 * CR3 would leave the nonsensitive tables at once, and its switch back to
 * the user CR3 would need a PTI user copy of every nonsensitive top-level
 * table. Where PTI is on, because the CPU is affected by Meltdown (where
 * user mode could read all of the nonsensitive tables, so ASI cannot
 * replace PTI) or because of pti=on, ASI stays off and says so. For the
 * same reason a Meltdown-affected CPU booted with pti=off never runs ASI,
 * and mitigations=off, which asks for no mitigation, keeps it off too.
 *
 * Remote TLB flushes must reach every CPU in whichever of the two spaces
 * it runs. Hyper-V's hypercall names the address space by the mm's PGD,
 * which a CPU on the nonsensitive tables is not using, so ASI stays off
 * where a hypervisor replaced the native remote flush at this point. KVM's
 * (kvm_flush_tlb_multi(), installed later) IPIs running vCPUs natively and
 * has the host flush everything of a preempted one, which is enough.
 *
 * TLB: ASI's two address spaces of an mm each have their own PCID; the
 * marks of stale PCIDs (see struct asi_cpu_state) keep tlb.c's flushes
 * reaching both, so ASI keeps PCIDs as the kernel chose them.
 *
 * What is left to do, and may still fail, is asi_setup()'s: the CPU flag
 * comes only with it.
 */
void __init asi_check_boottime(void)
{
	if (asi_request != ASI_BOOT_ON)
		return;

	if (boot_cpu_has(X86_FEATURE_PTI)) {
		asi_refuse(ASI_OFF_PTI,
			   boot_cpu_has_bug(X86_BUG_CPU_MELTDOWN) ?
			   "PTI is on (Meltdown-affected CPU) and ASI does not run alongside it" :
			   "PTI is on (pti=on) and ASI does not run alongside it");
		return;
	}
	if (boot_cpu_has_bug(X86_BUG_CPU_MELTDOWN)) {
		asi_refuse(ASI_OFF_MELTDOWN,
			   "the CPU is affected by Meltdown and PTI is off: user mode can read the nonsensitive tables");
		return;
	}
	if (cpu_mitigations_off()) {
		asi_refuse(ASI_OFF_MITIGATIONS, "mitigations=off asks for no mitigation");
		return;
	}
#ifdef CONFIG_PARAVIRT
	if (pv_ops.mmu.flush_tlb_multi != native_flush_tlb_multi) {
		pr_info("remote TLB flushes go through %ps\n", pv_ops.mmu.flush_tlb_multi);
		asi_refuse(ASI_OFF_PV_FLUSH,
			   "the hypervisor's remote TLB flush may miss the nonsensitive address spaces");
		return;
	}
#endif

	asi_wanted = true;
	asi_dm_nonglobal = true;
}

/*
 * Called by init_memory_mapping() for each range of the kernel's direct map
 * it maps, at boot and for hot-added memory: while ASI may run, the range
 * is mapped without _PAGE_GLOBAL (review m3). ASI's nonsensitive direct map
 * differs from the kernel's, so a global TLB entry made on the full tables
 * would outlive the switch to the nonsensitive ones. The rest of the
 * kernel's mappings are the same in both spaces and keep _PAGE_GLOBAL.
 */
pgprot_t asi_direct_map_pgprot(pgprot_t prot)
{
	if (asi_dm_nonglobal)
		pgprot_val(prot) &= ~_PAGE_GLOBAL;
	return prot;
}

enum asi_off_reason asi_off_reason(void)
{
	return asi_off;
}

enum asi_boot_request asi_boot_request(void)
{
	return asi_request;
}

bool asi_boot_cpu_has_asi(void)
{
	return boot_cpu_has(X86_FEATURE_ASI);
}

bool asi_pti_on(void)
{
	return boot_cpu_has(X86_FEATURE_PTI);
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
	snap->cr3 = asi_read_full_cr3();
	snap->pgd_pa = __pa(loaded_mm->pgd);
	snap->lam = tlbstate_lam_cr3_mask();
	snap->asid = this_cpu_read(cpu_tlbstate.loaded_mm_asid);
	preempt_enable();

	snap->me_mask = sme_get_me_mask();
	snap->pcid = boot_cpu_has(X86_FEATURE_PCID);
	snap->pti_pcid = IS_ENABLED(CONFIG_MITIGATION_PAGE_TABLE_ISOLATION);
}

void asi_get_layout(struct asi_layout *layout)
{
	layout->kernel_pgd = __pa(init_mm.pgd);
	layout->page_offset = PAGE_OFFSET;
	layout->direct_map_pages = max_pfn_mapped;
	layout->vmalloc_start = VMALLOC_START;
	layout->vmalloc_end = VMALLOC_END;
	layout->pfn_mask = PTE_PFN_MASK;
	layout->table_flags = _KERNPG_TABLE;
	layout->levels = pgtable_l5_enabled() ? 5 : 4;
}

/* A zeroed page for ASI's tables: its physical address, 0 if none. */
u64 asi_alloc_table(void)
{
	unsigned long va;

	if (asi_setting_up && asi_setup_fails())
		return 0;
	va = get_zeroed_page(GFP_KERNEL);
	return va ? __pa(va) : 0;
}

void asi_free_table(u64 table)
{
	free_page((unsigned long)__va(table));
}

/*
 * The kernel's leaf entry mapping @va and its level (0 = 4 KiB), or 0 if
 * @va is not mapped. Lockless, like lookup_address().
 */
u64 asi_kernel_leaf(unsigned long va, unsigned int *level)
{
	unsigned int lvl;
	pte_t *pte = lookup_address(va, &lvl);

	*level = 0;
	if (!pte || !(pte_flags(*pte) & _PAGE_PRESENT))
		return 0;
	switch (lvl) {
	case PG_LEVEL_4K:
		*level = 0;
		break;
	case PG_LEVEL_2M:
		*level = 1;
		break;
	case PG_LEVEL_1G:
		*level = 2;
		break;
	default:
		return 0;
	}
	return pte_val(*pte);
}

void asi_flush_kernel_all(void)
{
	flush_tlb_all();
}

/*
 * Take up to @n free order-0 pages of the given mobility off the free lists
 * of this CPU's node, without sleeping or reclaiming, so that ASI can make
 * them sensitive together with a page it has to flush anyway. Returns how
 * many it got. The pages are not for user data (no __GFP_SENSITIVE), so this
 * does not recurse into asi_make_sensitive().
 *
 * The batch is an optimisation, never a need: it must not dip into the
 * reserves that reclaim (PF_MEMALLOC) or an atomic caller is entitled to
 * (__GFP_NOMEMALLOC, and no __GFP_HIGH), and must not advance the interleave
 * state of the current task's mempolicy (a node is named, so none is used).
 */
unsigned int asi_batch_alloc(unsigned long *pfns, unsigned int n, bool movable)
{
	gfp_t gfp = GFP_NOWAIT | __GFP_NOWARN | __GFP_NORETRY | __GFP_NOMEMALLOC;
	int nid = numa_mem_id();
	unsigned int i;

	if (movable)
		gfp |= __GFP_MOVABLE;
	for (i = 0; i < n; i++) {
		struct page *page = alloc_pages_node(nid, gfp, 0);

		if (!page)
			break;
		pfns[i] = page_to_pfn(page);
	}
	return i;
}

/* Give the pages of asi_batch_alloc() back, after the TLB flush. */
void asi_batch_free(const unsigned long *pfns, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		__free_page(pfn_to_page(pfns[i]));
}

/* Zero a page through the kernel's direct map. Any context. */
void asi_clear_page(unsigned long pfn)
{
	clear_page(pfn_to_kaddr(pfn));
}

/*
 * Call @cb for every range of kernel memory that the kernel reaches at any
 * time and so must be mapped in the nonsensitive tables: the kernel image,
 * each CPU's per-CPU area, GDT, TSS, entry stack and IDT, and the stack of
 * every task. Runs under rcu_read_lock(), so @cb must not sleep.
 */
void asi_visit_required(asi_required_fn cb, void *ctx)
{
	struct task_struct *g, *t;
	struct desc_ptr idt;
	unsigned int cpu;

	cb(ctx, "kernel-image", (unsigned long)_text,
	   PFN_ALIGN(_brk_end) - (unsigned long)_text);
	store_idt(&idt);
	cb(ctx, "idt", idt.address, idt.size + 1UL);
	for_each_possible_cpu(cpu) {
		struct cpu_entry_area *cea = get_cpu_entry_area(cpu);

		cb(ctx, "per-cpu", (unsigned long)__per_cpu_start + per_cpu_offset(cpu),
		   __per_cpu_end - __per_cpu_start);
		cb(ctx, "gdt", (unsigned long)get_cpu_gdt_rw(cpu), PAGE_SIZE);
		cb(ctx, "gdt-ro", (unsigned long)get_cpu_gdt_ro(cpu), PAGE_SIZE);
		cb(ctx, "tss", (unsigned long)&cea->tss, sizeof(cea->tss));
		cb(ctx, "cpu-entry-area", (unsigned long)cea, sizeof(*cea));
		cb(ctx, "entry-stack", (unsigned long)&cea->entry_stack_page,
		   sizeof(cea->entry_stack_page));
	}

	rcu_read_lock();
	for_each_process_thread(g, t) {
		void *stack = try_get_task_stack(t);

		if (!stack)
			continue;
		cb(ctx, "kernel-stack", (unsigned long)stack, THREAD_SIZE);
		put_task_stack(t);
	}
	rcu_read_unlock();
}

#ifdef CONFIG_FAULT_INJECTION
/*
 * fail_asi_ns_pgd=: make the allocation of an mm's nonsensitive table fail;
 * applied from the late initcall, before user space runs.
 */
ASI_FAULT_ATTR(fail_asi_ns_pgd)
#endif

/* A zeroed page for an mm's nonsensitive top-level table, 0 if none. */
u64 asi_alloc_ns_pgd(void)
{
	unsigned long va;

#ifdef CONFIG_FAULT_INJECTION
	if (should_fail(&fail_asi_ns_pgd, PAGE_SIZE))
		return 0;
#endif
	va = get_zeroed_page(GFP_KERNEL_ACCOUNT);
	return va ? __pa(va) : 0;
}

u64 asi_mm_pgd(struct mm_struct *mm)
{
	return __pa(mm->pgd);
}

u64 asi_mm_ns_pgd(struct mm_struct *mm)
{
	pgd_t *pgd = READ_ONCE(mm->context.asi_pgd);

	return pgd ? __pa(pgd) : 0;
}

void asi_mm_set_ns_pgd(struct mm_struct *mm, u64 pgd)
{
	WRITE_ONCE(mm->context.asi_pgd, pgd ? (pgd_t *)__va(pgd) : NULL);
}

/*
 * A user-half top-level entry of some page table is being set: if the table
 * is the PGD of an mm with a nonsensitive table, set the same entry there.
 * Any context; the caller holds whatever protects the entry.
 */
void __asi_set_user_pgd(pgd_t *pgdp, pgd_t pgd)
{
	struct ptdesc *pt = virt_to_ptdesc(pgdp);
	struct mm_struct *mm;
	pgd_t *asi_pgd;

	/* Top-level tables that are not an mm's are not page-table pages. */
	if (!PageTable(ptdesc_page(pt)))
		return;
	mm = pgd_page_get_mm(pt);
	if (!mm || mm == &init_mm || mm->pgd != (pgd_t *)((unsigned long)pgdp & PAGE_MASK))
		return;
	asi_pgd = READ_ONCE(mm->context.asi_pgd);
	if (asi_pgd)
		WRITE_ONCE(asi_pgd[pgdp - mm->pgd], pgd);
}

/*
 * Call @cb for every mm in use by a process, with its PGD and nonsensitive
 * table. task_lock() keeps the mm alive while @cb runs, so @cb must not
 * sleep. An mm shared by several processes is visited once for each.
 */
void asi_visit_ns_pgds(asi_ns_pgd_fn cb, void *ctx)
{
	struct task_struct *p;

	rcu_read_lock();
	for_each_process(p) {
		struct mm_struct *mm;

		task_lock(p);
		mm = p->mm;
		if (mm && !(p->flags & PF_KTHREAD))
			cb(ctx, __pa(mm->pgd), asi_mm_ns_pgd(mm));
		task_unlock(p);
	}
	rcu_read_unlock();
}

u64 asi_ktime_ns(void)
{
	return ktime_get_ns();
}

#ifdef CONFIG_ASI_KUNIT_TEST
/*
 * Page allocations for the KUnit suite: @user asks for user data (the
 * GFP_HIGHUSER family), @irqs_off allocates with interrupts disabled and
 * without sleeping. Returns the first PFN, 0 on failure.
 */
unsigned long asi_test_alloc(bool user, bool irqs_off, unsigned int order)
{
	gfp_t gfp = user ? GFP_HIGHUSER : GFP_KERNEL;
	unsigned long flags;
	struct page *page;

	if (order)
		gfp |= __GFP_COMP;
	if (irqs_off) {
		gfp &= ~__GFP_DIRECT_RECLAIM;
		gfp |= __GFP_NOWARN;
		local_irq_save(flags);
		page = alloc_pages(gfp, order);
		local_irq_restore(flags);
	} else {
		page = alloc_pages(gfp, order);
	}
	return page ? page_to_pfn(page) : 0;
}

/* One page with GFP_USER: user data without __GFP_HIGHMEM. 0 on failure. */
unsigned long asi_test_alloc_gfp_user(void)
{
	struct page *page = alloc_page(GFP_USER);

	return page ? page_to_pfn(page) : 0;
}

/*
 * Free the order-0 page @pfn and allocate one page as asi_test_alloc() does,
 * without migrating to another CPU in between: the per-CPU free list hands
 * out the page just freed first. With @irqs_off both happen with interrupts
 * disabled, so nothing else can take it; otherwise another task on this CPU
 * or an interrupt may (at boot, KUnit runs while the initramfs is unpacked).
 */
unsigned long asi_test_free_then_alloc(unsigned long pfn, bool user, bool irqs_off)
{
	unsigned long flags, ret;

	if (irqs_off) {
		/* No task or interrupt on this CPU can take the page in between. */
		local_irq_save(flags);
		__free_page(pfn_to_page(pfn));
		ret = asi_test_alloc(user, true, 0);
		local_irq_restore(flags);
		return ret;
	}
	migrate_disable();
	__free_page(pfn_to_page(pfn));
	ret = asi_test_alloc(user, irqs_off, 0);
	migrate_enable();
	return ret;
}

/*
 * Free the order-0 page @pfn and allocate one user page without sleeping,
 * with preemption disabled but interrupts on, as under a spinlock. The
 * per-CPU free list hands out the page just freed first.
 */
unsigned long asi_test_free_then_alloc_nopreempt(unsigned long pfn)
{
	gfp_t gfp = (GFP_HIGHUSER & ~__GFP_DIRECT_RECLAIM) | __GFP_NOWARN;
	struct page *page;

	preempt_disable();
	__free_page(pfn_to_page(pfn));
	page = alloc_page(gfp);
	preempt_enable();
	return page ? page_to_pfn(page) : 0;
}

void asi_test_free(unsigned long pfn, unsigned int order)
{
	__free_pages(pfn_to_page(pfn), order);
}

void asi_test_fill(unsigned long pfn, u8 value)
{
	memset(pfn_to_kaddr(pfn), value, PAGE_SIZE);
}

bool asi_test_is_filled(unsigned long pfn, u8 value)
{
	return !memchr_inv(pfn_to_kaddr(pfn), value, PAGE_SIZE);
}

/* A second mapping of @pfn, in the vmalloc area. */
unsigned long asi_test_vmap(unsigned long pfn)
{
	struct page *page = pfn_to_page(pfn);

	return (unsigned long)vmap(&page, 1, VM_MAP, PAGE_KERNEL);
}

void asi_test_vunmap(unsigned long va)
{
	vunmap((void *)va);
}

/*
 * Run @fn on the page tables at physical address @pgd, on this CPU with
 * interrupts disabled, then switch back. Without PCIDs both CR3 writes
 * flush the TLB; with PCIDs, PCID 0 (which no mm uses) is flushed on the
 * way in, and the return to the kernel's CR3 flushes its PCID.
 */
int asi_test_run_on(u64 pgd, int (*fn)(void *arg), void *arg)
{
	unsigned long flags, cr3;
	int ret;

	local_irq_save(flags);
	cr3 = __read_cr3();
	write_cr3(pgd);
	ret = fn(arg);
	write_cr3(cr3);
	local_irq_restore(flags);
	return ret;
}

unsigned int asi_test_cpu(void)
{
	return raw_smp_processor_id();
}

/*
 * Run @fn on this CPU in the nonsensitive address space at @pgd, with IRQs
 * off and preemption disabled, the way the kernel runs after entering it: a
 * kernel-mode #PF switches back to the full address space
 * (asi_fault_exit()). @fn may enable IRQs for a while.
 */
int asi_test_run_nonsensitive(u64 pgd, int (*fn)(void *arg), void *arg)
{
	unsigned long flags;
	int ret;

	preempt_disable();
	local_irq_save(flags);
	asi_load_nonsensitive(pgd);
	ret = fn(arg);
	if (this_cpu_read(asi_cpu_state.nonsensitive))
		asi_load_full(ASI_EXIT_OTHER);
	local_irq_restore(flags);
	preempt_enable();
	return ret;
}

/*
 * Enter the nonsensitive space at @pgd and leave again, as an exit from the
 * kernel would: the armed actions run and the exit is noted, @foreign if
 * the code that left may have touched any mm's data.
 */
void asi_test_exit(u64 pgd, bool foreign)
{
	unsigned long flags;

	local_irq_save(flags);
	asi_load_nonsensitive(pgd);
	asi_load_full(ASI_EXIT_OTHER);
	if (foreign)
		__asi_note_foreign();
	local_irq_restore(flags);
}

/* This CPU's marks of stale PCIDs (bit n: ASID n), and its loaded ASID. */
static void asi_test_marks(struct asi_test_marks *m)
{
	m->full = this_cpu_read(asi_cpu_state.stale_full);
	m->ns = this_cpu_read(asi_cpu_state.stale_ns);
	m->invalidate_other = this_cpu_read(cpu_tlbstate.invalidate_other);
	m->bit = BIT(this_cpu_read(cpu_tlbstate.loaded_mm_asid) % TLB_NR_DYN_ASIDS);
}

static int asi_test_flush_nonsensitive(void *arg)
{
	flush_tlb_local();
	asi_test_marks(arg);
	return 0;
}

/*
 * Run the kernel's own flush paths on this CPU and record the marks after
 * each (enum asi_test_mark_step), starting from none: a local flush on the
 * full tables (R1), one on the nonsensitive tables at @pgd (R1), a
 * one-page kernel flush (R1, R3), and taking the marks of a marked and an
 * unmarked PCID (R4). Then switch to a new mm and back
 * (use_temporary_mm()), which loads a new ASID with a flush (R2, R4).
 * Returns 0, or -ENOMEM if there was no mm.
 */
int asi_test_stale_marks(u64 pgd, struct asi_test_marks *m)
{
	struct mm_struct *mm = mm_alloc(), *prev;
	unsigned long flags;
	u16 asid, bit;

	if (!mm)
		return -ENOMEM;
	preempt_disable();
	/* Start from the full tables, which a kernel thread may run on lazily. */
	asi_exit(ASI_EXIT_OTHER);
	local_irq_save(flags);
	asid = this_cpu_read(cpu_tlbstate.loaded_mm_asid);
	bit = BIT(asid % TLB_NR_DYN_ASIDS);
	this_cpu_write(asi_cpu_state.stale_full, 0);
	this_cpu_write(asi_cpu_state.stale_ns, 0);
	flush_tlb_local();
	asi_test_marks(&m[ASI_TEST_MARKS_LOCAL]);

	this_cpu_write(asi_cpu_state.stale_ns, 0);
	local_irq_restore(flags);
	asi_test_run_nonsensitive(pgd, asi_test_flush_nonsensitive,
				  &m[ASI_TEST_MARKS_NONSENSITIVE]);
	local_irq_save(flags);
	asi_test_marks(&m[ASI_TEST_MARKS_LEFT]);

	this_cpu_write(asi_cpu_state.stale_full, 0);
	this_cpu_write(asi_cpu_state.stale_ns, 0);
	flush_tlb_one_kernel((unsigned long)_stext);
	asi_test_marks(&m[ASI_TEST_MARKS_KERNEL]);

	this_cpu_write(asi_cpu_state.stale_full, bit);
	this_cpu_write(asi_cpu_state.stale_ns, 0);
	m[ASI_TEST_MARKS_TAKEN].taken_marked = asi_pcid_rule(ASI_PCID_LOAD_FULL_KEEP, asid);
	m[ASI_TEST_MARKS_TAKEN].taken_clean = asi_pcid_rule(ASI_PCID_LOAD_NS_KEEP, asid);
	asi_test_marks(&m[ASI_TEST_MARKS_TAKEN]);
	this_cpu_write(asi_cpu_state.stale_full, 0);
	this_cpu_write(asi_cpu_state.stale_ns, 0);
	local_irq_restore(flags);

	prev = use_temporary_mm(mm);
	local_irq_save(flags);
	asi_test_marks(&m[ASI_TEST_MARKS_SWITCHED]);
	local_irq_restore(flags);
	unuse_temporary_mm(prev);
	preempt_enable();
	mmput(mm);
	return 0;
}

/* Whether this CPU is in the nonsensitive space, and its CR3. */
bool asi_test_in_nonsensitive(u64 *cr3)
{
	*cr3 = __read_cr3();
	return this_cpu_read(asi_cpu_state.nonsensitive);
}

/* What the interrupt or NMI of the nesting tests reads, and when it ran. */
struct asi_test_nested {
	struct irq_work work;
	unsigned long pfn;
	u64 value;
	bool armed;
	bool done;
};
static struct asi_test_nested asi_test_nested;

static void asi_test_nested_read(void)
{
	asi_test_nested.value = READ_ONCE(*(u64 *)pfn_to_kaddr(asi_test_nested.pfn));
	WRITE_ONCE(asi_test_nested.done, true);
}

static int asi_test_nmi(unsigned int type, struct pt_regs *regs)
{
	if (!READ_ONCE(asi_test_nested.armed))
		return NMI_DONE;
	WRITE_ONCE(asi_test_nested.armed, false);
	asi_test_nested_read();
	return NMI_HANDLED;
}

static void asi_test_irq_work(struct irq_work *work)
{
	asi_test_nested_read();
}

/* Install the NMI handler (@nmi) or the irq_work of the nesting tests. */
int asi_test_nested_setup(bool nmi)
{
	asi_test_nested.armed = false;
	if (nmi)
		return register_nmi_handler(NMI_LOCAL, asi_test_nmi, 0, "asi_test");
	init_irq_work(&asi_test_nested.work, asi_test_irq_work);
	return 0;
}

void asi_test_nested_teardown(bool nmi)
{
	if (nmi)
		unregister_nmi_handler(NMI_LOCAL, "asi_test");
	else
		irq_work_sync(&asi_test_nested.work);
}

/*
 * Read the first word of page @pfn from an NMI (@nmi) or an interrupt (an
 * irq_work) that this CPU sends itself, into *@value, between
 * asi_test_nested_setup() and asi_test_nested_teardown(). IRQs and
 * preemption must be disabled; they stay so for an NMI, and IRQs are
 * enabled only while waiting for the interrupt. -ETIMEDOUT if it did not
 * come within a second.
 */
int asi_test_nested_read_page(unsigned long pfn, bool nmi, u64 *value)
{
	unsigned int i;

	asi_test_nested.pfn = pfn;
	WRITE_ONCE(asi_test_nested.done, false);
	if (nmi) {
		WRITE_ONCE(asi_test_nested.armed, true);
		apic->send_IPI_mask(cpumask_of(smp_processor_id()), NMI_VECTOR);
	} else {
		irq_work_queue(&asi_test_nested.work);
		local_irq_enable();
	}
	for (i = 0; i < 1000000 && !READ_ONCE(asi_test_nested.done); i++)
		udelay(1);
	if (nmi)
		WRITE_ONCE(asi_test_nested.armed, false);
	else
		local_irq_disable();
	*value = asi_test_nested.value;
	return READ_ONCE(asi_test_nested.done) ? 0 : -ETIMEDOUT;
}

/* What KVM does for the host CR3: read the CR3 to load again later. */
u64 asi_test_cr3_fast(void)
{
	return __get_current_cr3_fast();
}

/* The CR3 that enters the nonsensitive tables at @pgd from the full CR3 @full. */
u64 asi_test_cr3(u64 full, u64 pgd)
{
	return asi_cr3(full, pgd);
}

/* Read the first word of page @pfn through the direct map. */
u64 asi_test_read_page(unsigned long pfn)
{
	return READ_ONCE(*(u64 *)pfn_to_kaddr(pfn));
}

/*
 * The direct-map address of the kernel's text, and in *@pge whether the
 * CPU has global pages. DEBUG_PAGEALLOC never unmaps it (the image is
 * never freed), so it keeps the global bit the direct map was built with.
 */
unsigned long asi_test_image_alias(bool *pge)
{
	*pge = boot_cpu_has(X86_FEATURE_PGE);
	return (unsigned long)__va(__pa_symbol(_stext));
}

/* How many global leaves asi_setup() found in the direct map it converted. */
unsigned long asi_test_dm_global_at_setup(void)
{
	return asi_dm_global_at_setup;
}

/* What memdup_user() and friends do for large sizes: vmalloc with GFP_USER. */
void *asi_test_kvmalloc_user(size_t size)
{
	return kvmalloc(size, GFP_USER);
}

void asi_test_kvfree(void *p)
{
	kvfree(p);
}

/*
 * ASI_TEST_CONTIG_PAGES contiguous pages for user data (@user, as gigantic
 * hugetlb folios are) or the kernel: from alloc_contig_pages(), or at @pfn
 * with alloc_contig_range() if @pfn is not 0. 0 on failure or without
 * CONFIG_CONTIG_ALLOC, which asi_test_contig_configured() tells apart.
 */
unsigned long asi_test_alloc_contig(bool user, unsigned long pfn)
{
#ifdef CONFIG_CONTIG_ALLOC
	gfp_t gfp = user ? GFP_USER : GFP_KERNEL;
	struct page *page;

	BUILD_BUG_ON(ASI_TEST_CONTIG_PAGES % pageblock_nr_pages);
	if (pfn)
		return alloc_contig_range(pfn, pfn + ASI_TEST_CONTIG_PAGES,
					  ACR_FLAGS_NONE, gfp) ? 0 : pfn;
	page = alloc_contig_pages(ASI_TEST_CONTIG_PAGES, gfp, numa_mem_id(), NULL);
	return page ? page_to_pfn(page) : 0;
#else
	return 0;
#endif
}

bool asi_test_contig_configured(void)
{
	return IS_ENABLED(CONFIG_CONTIG_ALLOC);
}

void asi_test_free_contig(unsigned long pfn)
{
#ifdef CONFIG_CONTIG_ALLOC
	free_contig_range(pfn, ASI_TEST_CONTIG_PAGES);
#endif
}

/* The page frame behind the first byte of a kvmalloc() allocation. */
unsigned long asi_test_kv_pfn(const void *p)
{
	return is_vmalloc_addr(p) ? vmalloc_to_pfn(p) : page_to_pfn(virt_to_page(p));
}

/* Make the kernel's direct-map entry of @pfn read-only, or writable again. */
int asi_test_set_ro(unsigned long pfn, bool ro)
{
	unsigned long va = (unsigned long)pfn_to_kaddr(pfn);

	return ro ? set_memory_ro(va, 1) : set_memory_rw(va, 1);
}

/* Make the kernel's direct-map entry of @pfn global, or non-global again. */
int asi_test_set_global(unsigned long pfn, bool global)
{
	unsigned long va = (unsigned long)pfn_to_kaddr(pfn);

	return global ? set_memory_global(va, 1) : set_memory_nonglobal(va, 1);
}

/*
 * Create an mm, its nonsensitive table failing to allocate if @fail, and
 * let @check look at its PGD and nonsensitive table before it is dropped.
 * -ENOMEM if mm_alloc() failed, -EOPNOTSUPP if @fail cannot be forced.
 */
int asi_test_mm_ns_pgd(bool fail, void (*check)(void *ctx, u64 pgd, u64 ns_pgd),
		       void *ctx)
{
	struct mm_struct *mm;

#ifdef CONFIG_FAULT_INJECTION
	unsigned long probability = fail_asi_ns_pgd.probability;
	int times = atomic_read(&fail_asi_ns_pgd.times);
	int verbose = fail_asi_ns_pgd.verbose;

	if (fail) {
		fail_asi_ns_pgd.probability = 100;
		fail_asi_ns_pgd.verbose = 0;
		atomic_set(&fail_asi_ns_pgd.times, 1);
	}
#else
	if (fail)
		return -EOPNOTSUPP;
#endif
	mm = mm_alloc();
#ifdef CONFIG_FAULT_INJECTION
	fail_asi_ns_pgd.probability = probability;
	fail_asi_ns_pgd.verbose = verbose;
	atomic_set(&fail_asi_ns_pgd.times, times);
#endif
	if (!mm)
		return -ENOMEM;
	check(ctx, __pa(mm->pgd), asi_mm_ns_pgd(mm));
	mmdrop(mm);
	return 0;
}
#endif /* CONFIG_ASI_KUNIT_TEST */

/*
 * The kernel image mapping covers whole 2 MiB pages (cleanup_highmap()),
 * and the part past the used brk area is free memory that may hold user
 * data later. ASI shares that mapping, so remove its tail first.
 */
static void __init asi_unmap_image_tail(void)
{
	unsigned long start = PFN_ALIGN(_brk_end);
	unsigned long end = roundup(start, PMD_SIZE);

	if (end > start)
		set_memory_np_noalias(start, (end - start) >> PAGE_SHIFT);
}

/*
 * ASI's nonsensitive direct map differs from the kernel's, so no TLB entry
 * of either may survive a switch between them: the direct map must be
 * non-global. init_memory_mapping() built it so (asi_direct_map_pgprot());
 * count and convert whatever is global anyway, which would be a bug.
 */
static int __init asi_direct_map_nonglobal(void)
{
	if (asi_setup_fails())
		return -ENOMEM;
	asi_dm_global_at_setup = asi_count_global_direct_map();
	if (asi_dm_global_at_setup)
		pr_warn("%lu leaves of the direct map were built global\n",
			asi_dm_global_at_setup);
	return set_memory_nonglobal_noalias(PAGE_OFFSET, max_pfn_mapped);
}

/*
 * Called from arch_cpu_finalize_init(), after the mitigations are selected
 * and before alternatives are patched, while only the boot CPU runs and
 * before any user data exists: enable ASI if asi_check_boottime() found
 * nothing against it and everything it needs can be set up. Until
 * alternatives are patched, cpu_feature_enabled() reads the boot CPU's
 * capabilities, so setting the flag there first lets the allocator and
 * CPA hooks follow the tables as they are built. Only once everything
 * worked does the flag become every CPU's (and the alternatives').
 *
 * Fail closed: if a step fails, undo the earlier ones, log why, and leave
 * the kernel as without ASI: no flag, global direct map, the IBPB on
 * context switch, nothing to free later.
 *
 * INVLPGB flushes one PCID on every CPU without telling them; a CPU on the
 * nonsensitive PCID of that mm would miss the flush. ASI turns it off, as
 * PTI does.
 */
void __init asi_setup(void)
{
	const char *failed = NULL;
	int err;

	if (!asi_wanted)
		return;
	asi_setup_fault_attr();
	asi_setting_up = true;
	set_cpu_cap(&boot_cpu_data, X86_FEATURE_ASI);
	asi_unmap_image_tail();
	err = asi_direct_map_nonglobal();
	if (err) {
		failed = "cannot make the direct map non-global";
		goto undo_global;
	}
	err = asi_setup_fails() ? -ENOMEM : asi_actions_alloc();
	if (err) {
		failed = "no memory for the software L1D flush";
		goto undo_global;
	}
	err = asi_core_setup();
	if (err) {
		failed = "cannot build the nonsensitive page tables";
		goto undo_actions;
	}
	asi_setting_up = false;
	setup_force_cpu_cap(X86_FEATURE_ASI);
	setup_clear_cpu_cap(X86_FEATURE_INVLPGB);
	return;

undo_actions:
	asi_actions_free();
undo_global:
	/* Hot-added memory is mapped global again, and so is the direct map. */
	asi_dm_nonglobal = false;
	if (set_memory_global_noalias(PAGE_OFFSET, max_pfn_mapped))
		pr_err("cannot make the direct map global again\n");
	clear_cpu_cap(&boot_cpu_data, X86_FEATURE_ASI);
	asi_setting_up = false;
	asi_off = ASI_OFF_SETUP;
	pr_err("%s (%d); ASI is off\n", failed, err);
}

#ifdef CONFIG_MEMORY_HOTPLUG
/*
 * Memory that comes online or goes offline is made sensitive as a whole:
 * whatever it held before, none of it stays in the nonsensitive direct map
 * or in a TLB, and each page is zeroed and mapped when it is first
 * allocated for anything but user data. Removed memory is offline first,
 * so nothing maps it once it is gone. ASI's direct map has tables for the
 * memory present at boot only, so memory added beyond that stays offline.
 * The notifier runs in task context, where the TLB flush can be sent.
 */
static int asi_memory_notify(struct notifier_block *nb, unsigned long action,
			     void *data)
{
	struct memory_notify *arg = data;
	bool covered;

	if (action != MEM_GOING_ONLINE && action != MEM_OFFLINE)
		return NOTIFY_OK;
	covered = asi_hotplug_sensitive(arg->start_pfn, arg->nr_pages);
	if (action == MEM_OFFLINE) {
		/* Only memory ASI let online can go offline. */
		WARN_ON_ONCE(!covered);
		return NOTIFY_OK;
	}
	if (!covered) {
		pr_warn("cannot online memory [mem %#018llx-%#018llx]: beyond the direct map ASI was built for\n",
			PFN_PHYS(arg->start_pfn),
			PFN_PHYS(arg->start_pfn + arg->nr_pages) - 1);
		return notifier_from_errno(-EOPNOTSUPP);
	}
	return NOTIFY_OK;
}

static struct notifier_block asi_memory_nb = {
	.notifier_call = asi_memory_notify,
};

static int __init asi_hotplug_init(void)
{
	return register_memory_notifier(&asi_memory_nb);
}
#else
static int __init asi_hotplug_init(void)
{
	return 0;
}
#endif

static int __init asi_early_init(void)
{
	int err = asi_core_init();

	/*
	 * Before any CPU but the boot CPU runs, and so before memory can be
	 * hot-added or taken offline. Registering cannot fail but for a bug.
	 */
	if (!err && asi_enabled())
		err = WARN_ON_ONCE(asi_hotplug_init());
	return err;
}
early_initcall(asi_early_init);

static int __init asi_late_init(void)
{
#ifdef CONFIG_FAULT_INJECTION
	fail_asi_ns_pgd_apply();
#endif
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	if (asi_enabled())
		fault_create_debugfs_attr("fail_asi_ns_pgd", NULL, &fail_asi_ns_pgd);
#endif
	return asi_debugfs_init();
}
late_initcall(asi_late_init);
