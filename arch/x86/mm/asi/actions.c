// SPDX-License-Identifier: GPL-2.0
/*
 * Address Space Isolation: the mitigation actions and the per-CPU memory of
 * the taint model.
 *
 * The taint model (policy.rs) decides, per CPU, which action is due at which
 * transition; this file runs them. There are two sites:
 *
 * - Exit: before CR3 switches to the full tables. The model arms the
 *   actions an exit would need (exit_actions) whenever it changes the
 *   CPU's state, and asi_load_full() runs them, in noinstr code, right before
 *   the CR3 write, NMIs included. Only the model disarms them.
 * - Run: before user code runs, from arch_exit_to_user_mode_prepare() with
 *   IRQs off. The model catches up on what happened since the last return
 *   (exits, interrupts and kernel threads in the full space, noted in
 *   pending) and returns the actions due.
 *
 * Each action runs only if the CPU supports it (in hardware or, for the
 * L1D flush and the RSB fill, in software), asi_actions= allows it, and
 * the attack vector of its site is mitigated (mitigations=, see
 * asi_vector_mitigated()). Per CPU, the model counts how often an action was
 * required and this file how often it was executed.
 */

#define pr_fmt(fmt) "asi: " fmt

#include <linux/cpu.h>
#include <linux/gfp.h>
#include <linux/hardirq.h>
#include <linux/init.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/string.h>

#include <asm/asi_internal.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/nospec-branch.h>

/* asi_rsb.S */
void asi_fill_return_buffer(void);

/* The software L1D flush reads this many bytes: twice the largest L1D. */
#define ASI_L1D_FLUSH_ORDER	4
#define ASI_L1D_FLUSH_SIZE	(PAGE_SIZE << ASI_L1D_FLUSH_ORDER)

/*
 * The taint model's state of one CPU and what it shares with the C side.
 *
 * state is only touched by Rust, with IRQs off and never from an NMI.
 * pending is set by noinstr code and NMIs and taken by the model; both with
 * single per-CPU read-modify-write instructions, which an NMI on the same
 * CPU cannot split. exit_actions is written by the model and read by
 * asi_load_full().
 */
struct asi_policy_cpu {
	u64	state[ASI_POLICY_STATE_BYTES / sizeof(u64)];
	u64	last_mm;	/* mm of the last return to user seen by the model */
	u64	required[ASI_NR_ACTIONS];
	u64	required_run[ASI_NR_ACTIONS];	/* of those, before user code */
	u64	executed[ASI_NR_ACTIONS];
	u64	returns;	/* returns to user mode */
	u64	mm_switches;	/* returns to user mode of another mm than the last */
	u64	foreign;	/* returns after code that may touch any mm's data */
	u8	exit_actions;
	u8	pending;
};
static DEFINE_PER_CPU_ALIGNED(struct asi_policy_cpu, asi_policy_cpu);

/* asi_actions=, for asi_core_init(); "\xff" if it did not fit. */
static char asi_actions_arg[32] __ro_after_init;
static bool asi_actions_given __ro_after_init;

static int __init asi_actions_setup(char *arg)
{
	if (strscpy(asi_actions_arg, arg, sizeof(asi_actions_arg)) < 0)
		strscpy(asi_actions_arg, "\xff", sizeof(asi_actions_arg));
	asi_actions_given = true;
	return 1;
}
__setup("asi_actions=", asi_actions_setup);

/* The value of asi_actions=, NULL without one. */
const char *asi_actions_param(void)
{
	return asi_actions_given ? asi_actions_arg : NULL;
}

/* Actions allowed at each site: supported, asked for and mitigated. */
static u8 asi_site_actions[ASI_NR_SITES] __ro_after_init;
/* The model's state is initialised on all CPUs. */
static bool asi_policy_on __ro_after_init;
/* Memory the software L1D flush reads, NULL without it. */
static void *asi_l1d_flush_buf __ro_after_init;

#ifdef CONFIG_ASI_KUNIT_TEST
/* The action masks each site was asked to run, while a test records them. */
struct asi_action_record {
	bool		on;
	unsigned int	n;
	u8		masks[32];
	u8		sites[32];
};
static DEFINE_PER_CPU(struct asi_action_record, asi_action_record);

static noinstr void asi_record_actions(u8 required, enum asi_action_site site)
{
	struct asi_action_record *r = this_cpu_ptr(&asi_action_record);

	if (!r->on || !required || r->n >= ARRAY_SIZE(r->masks))
		return;
	r->masks[r->n] = required;
	r->sites[r->n] = site;
	r->n++;
}
#else
static __always_inline void asi_record_actions(u8 required, enum asi_action_site site) { }
#endif

/*
 * Read every cache line of twice the size of the largest L1D, after
 * touching each page so that the reads do not wait for page walks. The
 * fallback where the CPU has no MSR_IA32_FLUSH_CMD; like KVM's, it is
 * effective against L1TF-style sampling, not architecturally complete.
 */
static noinstr void asi_l1d_flush_sw(void)
{
	const u8 *buf = asi_l1d_flush_buf;
	unsigned long i;

	for (i = 0; i < ASI_L1D_FLUSH_SIZE; i += PAGE_SIZE)
		(void)READ_ONCE(buf[i]);
	for (i = 0; i < ASI_L1D_FLUSH_SIZE; i += L1_CACHE_BYTES)
		(void)READ_ONCE(buf[i]);
}

/*
 * Run the actions of @required that @site allows, in the order of enum
 * asi_action, and count them. IRQs off or in an exception; noinstr, for
 * the exit site runs right before the CR3 write in asi_load_full().
 */
static noinstr void asi_do_actions(u8 required, enum asi_action_site site)
{
	u8 run = required & asi_site_actions[site];

	asi_record_actions(required, site);
	if (!run)
		return;
	if (run & BIT(ASI_ACTION_IBPB)) {
		/* write_ibpb() also fills the RSB on CPUs whose IBPB does not. */
		write_ibpb();
		this_cpu_inc(asi_policy_cpu.executed[ASI_ACTION_IBPB]);
	}
	if (run & BIT(ASI_ACTION_RSB_FILL)) {
		asi_fill_return_buffer();
		this_cpu_inc(asi_policy_cpu.executed[ASI_ACTION_RSB_FILL]);
	}
	if (run & BIT(ASI_ACTION_L1D_FLUSH)) {
		if (cpu_feature_enabled(X86_FEATURE_FLUSH_L1D))
			native_wrmsrq(MSR_IA32_FLUSH_CMD, L1D_FLUSH);
		else
			asi_l1d_flush_sw();
		this_cpu_inc(asi_policy_cpu.executed[ASI_ACTION_L1D_FLUSH]);
	}
	if (run & BIT(ASI_ACTION_VERW)) {
		/*
		 * With CLEAR_CPU_BUF the return to user runs VERW anyway, and
		 * later than this; a second one would add nothing.
		 */
		if (!cpu_feature_enabled(X86_FEATURE_CLEAR_CPU_BUF))
			x86_clear_cpu_buffers();
		this_cpu_inc(asi_policy_cpu.executed[ASI_ACTION_VERW]);
	}
}

/*
 * Before CR3 switches to the full tables: run the actions the model armed
 * and note the exit. From asi_load_full(), IRQs off or in an exception, NMIs
 * included. The actions stay armed: an NMI may leave before the user code
 * they guard against has even run, and then the next exit needs them again.
 */
noinstr void __asi_exit_actions(void)
{
	asi_do_actions(this_cpu_read(asi_policy_cpu.exit_actions), ASI_SITE_EXIT);
	this_cpu_or(asi_policy_cpu.pending, ASI_PENDING_EXIT);
}

/* The exit that just happened may have touched any mm's data. */
noinstr void __asi_note_foreign(void)
{
	this_cpu_or(asi_policy_cpu.pending, ASI_PENDING_FOREIGN);
}

void __asi_return_to_user(void)
{
	struct mm_struct *mm = current->mm;
	u64 id;
	u8 run;

	if (!mm || !asi_policy_on)
		return;
	id = mm->context.ctx_id;
	this_cpu_inc(asi_policy_cpu.returns);
	if (this_cpu_read(asi_policy_cpu.last_mm) != id)
		this_cpu_inc(asi_policy_cpu.mm_switches);
	else if (!this_cpu_read(asi_policy_cpu.pending))
		return;	/* nothing happened since the last return: nothing due */
	this_cpu_write(asi_policy_cpu.last_mm, id);
	run = asi_policy_return_to_user(id);
	asi_do_actions(run, ASI_SITE_RUN);
}

noinstr void __asi_note_interrupt(void)
{
	if (!__asi_in_nonsensitive())
		__asi_note_foreign();
}

noinstr void __asi_enter_lazy_tlb(struct task_struct *tsk)
{
	if (!is_idle_task(tsk) && !__asi_in_nonsensitive())
		__asi_note_foreign();
}

enum asi_action_support asi_action_support(enum asi_action action)
{
	switch (action) {
	case ASI_ACTION_IBPB:
		return boot_cpu_has(X86_FEATURE_IBPB) ? ASI_SUPPORT_CPU : ASI_SUPPORT_NONE;
	case ASI_ACTION_RSB_FILL:
		return ASI_SUPPORT_SOFTWARE;
	case ASI_ACTION_L1D_FLUSH:
		if (boot_cpu_has(X86_FEATURE_FLUSH_L1D))
			return ASI_SUPPORT_CPU;
		return asi_l1d_flush_buf ? ASI_SUPPORT_SOFTWARE : ASI_SUPPORT_NONE;
	case ASI_ACTION_VERW:
		return boot_cpu_has(X86_FEATURE_MD_CLEAR) ? ASI_SUPPORT_CPU : ASI_SUPPORT_NONE;
	default:
		return ASI_SUPPORT_NONE;
	}
}

bool asi_mitigations_off(void)
{
	return cpu_mitigations_off();
}

/*
 * The actions at an exit protect the kernel (and so all data) from user
 * code; those before user code runs protect one process's data from
 * another's user code.
 */
bool asi_vector_mitigated(enum asi_action_site site)
{
	if (site == ASI_SITE_EXIT)
		return cpu_attack_vector_mitigated(CPU_MITIGATE_USER_KERNEL);
	return cpu_attack_vector_mitigated(CPU_MITIGATE_USER_USER);
}

/*
 * ASI's IBPB runs at both sites: user code never runs with another
 * process's training (at a switch between processes, either the exit that
 * preceded it or the return to user mode clears it), which is what the
 * IBPB on context switch of spectre_v2_user= provides.
 */
bool asi_ibpb_at_both_sites __ro_after_init;

/* Called once, by asi_core_init(), before user space runs. */
void asi_set_actions(u8 exit_mask, u8 run_mask)
{
	asi_site_actions[ASI_SITE_EXIT] = exit_mask;
	asi_site_actions[ASI_SITE_RUN] = run_mask;
	asi_ibpb_at_both_sites = exit_mask & run_mask & BIT(ASI_ACTION_IBPB);
}

/*
 * The model's state of possible CPU @cpu, or of this CPU if @cpu < 0; NULL
 * if @cpu is not possible.
 */
void *asi_policy_state(int cpu)
{
	if (cpu < 0)
		return this_cpu_ptr(asi_policy_cpu.state);
	if (cpu >= nr_cpu_ids || !cpu_possible(cpu))
		return NULL;
	return per_cpu_ptr(asi_policy_cpu.state, cpu);
}

/* The model's state is initialised on all possible CPUs. */
void asi_policy_ready(void)
{
	asi_policy_on = true;
}

u8 asi_take_pending(void)
{
	return this_cpu_xchg(asi_policy_cpu.pending, 0);
}

void asi_arm_exit_actions(u8 mask)
{
	this_cpu_write(asi_policy_cpu.exit_actions, mask);
}

void asi_count_required(u8 mask, enum asi_action_site site, bool foreign)
{
	int a;

	if (foreign)
		this_cpu_inc(asi_policy_cpu.foreign);
	for (a = 0; a < ASI_NR_ACTIONS; a++) {
		if (!(mask & BIT(a)))
			continue;
		this_cpu_inc(asi_policy_cpu.required[a]);
		if (site == ASI_SITE_RUN)
			this_cpu_inc(asi_policy_cpu.required_run[a]);
	}
}

/*
 * Counter @what of possible CPU @cpu: required (0 to 3), executed (4 to 7)
 * and required before user code (8 to 11) per action, returns to user
 * (12), mm switches among them (13), returns after foreign code (14).
 * False if there is no such CPU or counter.
 */
bool asi_action_count(unsigned int cpu, int what, u64 *count)
{
	struct asi_policy_cpu *p;

	if (cpu >= nr_cpu_ids || !cpu_possible(cpu) || what < 0 ||
	    what >= 3 * ASI_NR_ACTIONS + 3)
		return false;
	p = per_cpu_ptr(&asi_policy_cpu, cpu);
	if (what < ASI_NR_ACTIONS)
		*count = READ_ONCE(p->required[what]);
	else if (what < 2 * ASI_NR_ACTIONS)
		*count = READ_ONCE(p->executed[what - ASI_NR_ACTIONS]);
	else if (what < 3 * ASI_NR_ACTIONS)
		*count = READ_ONCE(p->required_run[what - 2 * ASI_NR_ACTIONS]);
	else if (what == 3 * ASI_NR_ACTIONS)
		*count = READ_ONCE(p->returns);
	else if (what == 3 * ASI_NR_ACTIONS + 1)
		*count = READ_ONCE(p->mm_switches);
	else
		*count = READ_ONCE(p->foreign);
	return true;
}

/* Zero the counters; like the transition counters, not atomic. */
void asi_reset_action_counts(void)
{
	unsigned int cpu;
	int a;

	for_each_possible_cpu(cpu) {
		struct asi_policy_cpu *p = per_cpu_ptr(&asi_policy_cpu, cpu);

		for (a = 0; a < ASI_NR_ACTIONS; a++) {
			WRITE_ONCE(p->required[a], 0);
			WRITE_ONCE(p->required_run[a], 0);
			WRITE_ONCE(p->executed[a], 0);
		}
		WRITE_ONCE(p->returns, 0);
		WRITE_ONCE(p->mm_switches, 0);
		WRITE_ONCE(p->foreign, 0);
	}
}

/* For the KUnit suite: run @required at @site as the kernel would. */
void asi_run_actions(u8 required, enum asi_action_site site)
{
	unsigned long flags;

	local_irq_save(flags);
	asi_do_actions(required, site);
	local_irq_restore(flags);
}

/*
 * The buffer of the software L1D flush, where the CPU cannot flush by MSR.
 * From asi_setup(), before asi_core_setup() asks asi_action_support().
 */
int __init asi_actions_alloc(void)
{
	struct page *page;

	if (boot_cpu_has(X86_FEATURE_FLUSH_L1D))
		return 0;
	page = alloc_pages(GFP_KERNEL, ASI_L1D_FLUSH_ORDER);
	if (!page)
		return -ENOMEM;
	asi_l1d_flush_buf = page_address(page);
	return 0;
}

/* Undo asi_actions_alloc(), when a later step of asi_setup() failed. */
void __init asi_actions_free(void)
{
	if (asi_l1d_flush_buf)
		free_pages((unsigned long)asi_l1d_flush_buf, ASI_L1D_FLUSH_ORDER);
	asi_l1d_flush_buf = NULL;
}

#ifdef CONFIG_ASI_KUNIT_TEST
/* Start (@on) or stop recording this CPU's actions; starting forgets the old ones. */
void asi_test_record_actions(bool on)
{
	struct asi_action_record *r = this_cpu_ptr(&asi_action_record);

	if (on)
		r->n = 0;
	WRITE_ONCE(r->on, on);
}

/* Copy up to @max recorded masks and sites; returns how many there are. */
unsigned int asi_test_recorded(u8 *masks, u8 *sites, unsigned int max)
{
	struct asi_action_record *r = this_cpu_ptr(&asi_action_record);
	unsigned int i;

	for (i = 0; i < r->n && i < max; i++) {
		masks[i] = r->masks[i];
		sites[i] = r->sites[i];
	}
	return r->n;
}

/* Run @fn(@arg) on this CPU with IRQs off. */
int asi_test_irqs_off(int (*fn)(void *arg), void *arg)
{
	unsigned long flags;
	int ret;

	local_irq_save(flags);
	ret = fn(arg);
	local_irq_restore(flags);
	return ret;
}

/*
 * Return to user mode of the mm @mm_id as far as the model is concerned:
 * what __asi_return_to_user() does, for an mm the test makes up.
 */
void asi_test_return_to_user(u64 mm_id)
{
	unsigned long flags;
	u8 run;

	local_irq_save(flags);
	this_cpu_write(asi_policy_cpu.last_mm, mm_id);
	run = asi_policy_return_to_user(mm_id);
	asi_do_actions(run, ASI_SITE_RUN);
	local_irq_restore(flags);
}

/*
 * Swap this CPU's model state, armed actions and pending events with
 * *@saved (ASI_POLICY_STATE_BYTES + 2 bytes), so that a test can start
 * from a state of its own and put the CPU's back. IRQs off.
 */
void asi_test_policy_swap(void *saved)
{
	struct asi_policy_cpu *p = this_cpu_ptr(&asi_policy_cpu);
	u8 tmp[ASI_POLICY_STATE_BYTES + 2];

	memcpy(tmp, p->state, ASI_POLICY_STATE_BYTES);
	tmp[ASI_POLICY_STATE_BYTES] = p->exit_actions;
	tmp[ASI_POLICY_STATE_BYTES + 1] = p->pending;
	memcpy(p->state, saved, ASI_POLICY_STATE_BYTES);
	p->exit_actions = ((u8 *)saved)[ASI_POLICY_STATE_BYTES];
	p->pending = ((u8 *)saved)[ASI_POLICY_STATE_BYTES + 1];
	memcpy(saved, tmp, sizeof(tmp));
}
#endif
