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
#include <linux/fault-inject.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/init.h>
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

#include <asm/asi.h>
#include <asm/cpu_entry_area.h>
#include <asm/desc.h>
#include <asm/pgalloc.h>
#include <asm/processor.h>
#include <asm/sections.h>
#include <asm/set_memory.h>
#include <asm/setup.h>
#include <asm/tlbflush.h>

static enum asi_boot_request asi_request __ro_after_init = ASI_BOOT_DEFAULT;

/*
 * Whether this CPU runs on ASI's nonsensitive tables, and the CR3 of the
 * full address space to go back to.
 *
 * Ordering: entering writes full_cr3, then restricted, then CR3; leaving
 * writes CR3, then clears restricted. An NMI or #PF between any two of
 * these writes therefore sees restricted set only while CR3 may already
 * be (or still be) the nonsensitive one, and full_cr3 always valid when
 * restricted is set: leaving again is harmless.
 */
struct asi_cpu_state {
	bool	restricted;
	u64	full_cr3;
};
static DEFINE_PER_CPU(struct asi_cpu_state, asi_cpu_state);
static DEFINE_PER_CPU(u64, asi_exits[ASI_NR_EXIT_REASONS]);
static DEFINE_PER_CPU(u64, asi_enters);

/*
 * Switch this CPU to the nonsensitive tables at @pgd. IRQs off. The full
 * CR3 is recorded first and the flag set before the CR3 write, so that a
 * fault or NMI at any point can go back (see struct asi_cpu_state).
 */
static noinstr void asi_enter(u64 pgd)
{
	this_cpu_write(asi_cpu_state.full_cr3, __native_read_cr3());
	this_cpu_write(asi_cpu_state.restricted, true);
	native_write_cr3(pgd);
	this_cpu_inc(asi_enters);
}

/* Switch this CPU to the full address space. IRQs off or in an exception. */
static noinstr void asi_exit(enum asi_exit_reason reason)
{
	native_write_cr3(this_cpu_read(asi_cpu_state.full_cr3));
	this_cpu_write(asi_cpu_state.restricted, false);
	this_cpu_inc(asi_exits[reason]);
}

noinstr bool __asi_fault_exit(struct pt_regs *regs)
{
	if (!this_cpu_read(asi_cpu_state.restricted) || user_mode(regs))
		return false;
	asi_exit(ASI_EXIT_PAGE_FAULT);
	return true;
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
 * Enters (@what < 0) or exits for reason @what of possible CPU @cpu; false
 * if there is no such CPU or reason.
 */
bool asi_transition_count(unsigned int cpu, int what, u64 *count)
{
	if (cpu >= nr_cpu_ids || !cpu_possible(cpu) || what >= ASI_NR_EXIT_REASONS)
		return false;
	*count = what < 0 ? per_cpu(asi_enters, cpu) : per_cpu(asi_exits[what], cpu);
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
	unsigned long va = get_zeroed_page(GFP_KERNEL);

	return va ? __pa(va) : 0;
}

void asi_free_table(u64 table)
{
	free_page((unsigned long)__va(table));
}

/*
 * Give the kernel's own entry of @level (0 = PTE) covering @va a table
 * below it, the way the kernel would on demand, so that ASI can share it.
 * Returns the entry, 0 if it could not be allocated.
 */
u64 asi_populate_kernel(unsigned int level, unsigned long va)
{
	pgd_t *pgd = pgd_offset_k(va);
	p4d_t *p4d;
	pud_t *pud;
	pmd_t *pmd;

	if (level == 4 || (level == 3 && !pgtable_l5_enabled())) {
		/* The top level is preallocated by preallocate_vmalloc_pages(). */
		return 0;
	}
	p4d = p4d_alloc(&init_mm, pgd, va);
	if (!p4d)
		return 0;
	if (level == 3)
		return p4d_val(*p4d);
	pud = pud_alloc(&init_mm, p4d, va);
	if (!pud)
		return 0;
	if (level == 2)
		return pud_val(*pud);
	pmd = pmd_alloc(&init_mm, pud, va);
	if (!pmd || level != 1)
		return 0;
	if (pte_alloc_kernel(pmd, va))
		return pmd_val(*pmd);
	return 0;
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

void asi_flush_kernel_range(unsigned long start, unsigned long end)
{
	flush_tlb_kernel_range(start, end);
}

void asi_flush_kernel_all(void)
{
	flush_tlb_all();
}

/*
 * Take up to @n free order-0 pages of the given mobility off the free lists,
 * without sleeping or reclaiming, so that ASI can make them sensitive
 * together with a page it has to flush anyway. Returns how many it got.
 * The pages are not for user data (no __GFP_HARDWALL), so this does not
 * recurse into asi_make_sensitive().
 */
unsigned int asi_batch_alloc(unsigned long *pfns, unsigned int n, bool movable)
{
	gfp_t gfp = GFP_NOWAIT | __GFP_NOWARN | __GFP_NORETRY;
	unsigned int i;

	if (movable)
		gfp |= __GFP_MOVABLE;
	for (i = 0; i < n; i++) {
		struct page *page = alloc_page(gfp);

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
/* fail_asi_domain=: make the allocation of an mm's nonsensitive table fail. */
static DECLARE_FAULT_ATTR(fail_asi_domain);

static int __init fail_asi_domain_setup(char *str)
{
	return setup_fault_attr(&fail_asi_domain, str);
}
__setup("fail_asi_domain=", fail_asi_domain_setup);
#endif

/* A zeroed page for an mm's nonsensitive top-level table, 0 if none. */
u64 asi_alloc_domain(void)
{
	unsigned long va;

#ifdef CONFIG_FAULT_INJECTION
	if (should_fail(&fail_asi_domain, PAGE_SIZE))
		return 0;
#endif
	va = get_zeroed_page(GFP_KERNEL_ACCOUNT);
	return va ? __pa(va) : 0;
}

u64 asi_mm_pgd(struct mm_struct *mm)
{
	return __pa(mm->pgd);
}

u64 asi_mm_domain(struct mm_struct *mm)
{
	pgd_t *pgd = READ_ONCE(mm->context.asi_pgd);

	return pgd ? __pa(pgd) : 0;
}

void asi_mm_set_domain(struct mm_struct *mm, u64 pgd)
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
void asi_visit_domains(asi_domain_fn cb, void *ctx)
{
	struct task_struct *p;

	rcu_read_lock();
	for_each_process(p) {
		struct mm_struct *mm;

		task_lock(p);
		mm = p->mm;
		if (mm && !(p->flags & PF_KTHREAD))
			cb(ctx, __pa(mm->pgd), asi_mm_domain(mm));
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

/*
 * Free the order-0 page @pfn and allocate one page as asi_test_alloc() does,
 * without migrating to another CPU in between: the per-CPU free list hands
 * out the page just freed first, unless an interrupt took it.
 */
unsigned long asi_test_free_then_alloc(unsigned long pfn, bool user, bool irqs_off)
{
	unsigned long ret;

	migrate_disable();
	__free_page(pfn_to_page(pfn));
	ret = asi_test_alloc(user, irqs_off, 0);
	migrate_enable();
	return ret;
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
 * off, the way the kernel will run after entering it: a kernel-mode #PF
 * switches back to the full address space (asi_fault_exit()).
 */
int asi_test_run_restricted(u64 pgd, int (*fn)(void *arg), void *arg)
{
	unsigned long flags;
	int ret;

	local_irq_save(flags);
	asi_enter(pgd);
	ret = fn(arg);
	if (this_cpu_read(asi_cpu_state.restricted))
		asi_exit(ASI_EXIT_OTHER);
	local_irq_restore(flags);
	return ret;
}

/* Read the first word of page @pfn through the direct map. */
u64 asi_test_read_page(unsigned long pfn)
{
	return READ_ONCE(*(u64 *)pfn_to_kaddr(pfn));
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

/* Make the kernel's direct-map entry of @pfn read-only, or writable again. */
int asi_test_set_ro(unsigned long pfn, bool ro)
{
	unsigned long va = (unsigned long)pfn_to_kaddr(pfn);

	return ro ? set_memory_ro(va, 1) : set_memory_rw(va, 1);
}

/*
 * Create an mm, its nonsensitive table failing to allocate if @fail, and
 * let @check look at its PGD and nonsensitive table before it is dropped.
 * -ENOMEM if mm_alloc() failed, -EOPNOTSUPP if @fail cannot be forced.
 */
int asi_test_mm_domain(bool fail, void (*check)(void *ctx, u64 pgd, u64 domain),
		       void *ctx)
{
	struct mm_struct *mm;

#ifdef CONFIG_FAULT_INJECTION
	unsigned long probability = fail_asi_domain.probability;
	int times = atomic_read(&fail_asi_domain.times);
	int verbose = fail_asi_domain.verbose;

	if (fail) {
		fail_asi_domain.probability = 100;
		fail_asi_domain.verbose = 0;
		atomic_set(&fail_asi_domain.times, 1);
	}
#else
	if (fail)
		return -EOPNOTSUPP;
#endif
	mm = mm_alloc();
#ifdef CONFIG_FAULT_INJECTION
	fail_asi_domain.probability = probability;
	fail_asi_domain.verbose = verbose;
	atomic_set(&fail_asi_domain.times, times);
#endif
	if (!mm)
		return -ENOMEM;
	check(ctx, __pa(mm->pgd), asi_mm_domain(mm));
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
 * of either may survive a switch between them: make the direct map
 * non-global. The rest of the kernel's mappings are the same in both
 * address spaces and stay global.
 */
static void __init asi_direct_map_nonglobal(void)
{
	if (set_memory_nonglobal_noalias(PAGE_OFFSET, max_pfn_mapped))
		pr_warn("cannot make the direct map non-global\n");
}

static int __init asi_early_init(void)
{
	if (asi_enabled()) {
		asi_unmap_image_tail();
		asi_direct_map_nonglobal();
	}
	return asi_core_init();
}
early_initcall(asi_early_init);

static int __init asi_late_init(void)
{
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	if (asi_enabled())
		fault_create_debugfs_attr("fail_asi_domain", NULL, &fail_asi_domain);
#endif
	return asi_debugfs_init();
}
late_initcall(asi_late_init);
