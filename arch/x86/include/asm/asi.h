/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_X86_ASI_H
#define _ASM_X86_ASI_H

/*
 * Address Space Isolation (ASI), see Documentation/arch/x86/asi.rst.
 *
 * The hooks that the rest of the kernel calls, and what they need. The
 * boot decision and everything that must run in noinstr context is C and
 * lives in arch/x86/mm/asi/asi.c; the rest (state, policy, debugfs and
 * tests) is the Rust crate in arch/x86/mm/asi/rust_asi.rs. The interface
 * between the two is in asm/asi_internal.h, which only ASI's own files and
 * the Rust bindings include.
 */

#include <linux/types.h>
#include <asm/cpufeature.h>
#include <asm/pgtable_types.h>
#include <asm/ptrace.h>
#include <asm/special_insns.h>

struct mm_struct;
struct task_struct;

/*
 * Why the CPU left the nonsensitive address space. The tracepoint
 * (asm/trace/asi.h) and debugfs (sys.rs) name each one.
 */
enum asi_exit_reason {
	ASI_EXIT_PAGE_FAULT,	/* a kernel-mode #PF on a kernel address */
	ASI_EXIT_SWITCH_MM,	/* switch_mm_irqs_off() loads another CR3 */
	ASI_EXIT_CR3_READ,	/* code reads CR3 to load it again later */
	ASI_EXIT_TLB_FLUSH,	/* a TLB flush leaves a lazy mm */
	ASI_EXIT_NMI,		/* a #PF in an NMI; its end goes back */
	ASI_EXIT_OTHER,		/* oops, double fault, kexec, suspend, tests */
	ASI_NR_EXIT_REASONS,
};

#ifdef CONFIG_ASI

static __always_inline bool asi_enabled(void)
{
	return cpu_feature_enabled(X86_FEATURE_ASI);
}

bool asi_requested(void);
void asi_check_boottime(void);
void asi_setup(void);
pgprot_t asi_direct_map_pgprot(pgprot_t prot);

bool __asi_fault_exit(struct pt_regs *regs, unsigned long address);
bool asi_fault_retry(struct pt_regs *regs, unsigned long error_code,
		     unsigned long address);
void __asi_enter_nonsensitive(void);
void __asi_exit(enum asi_exit_reason reason, unsigned long ip);
void __asi_exit_noinstr(enum asi_exit_reason reason);
bool __asi_switch_mm(pgd_t *pgdir, unsigned long cr3, u16 asid);
void __asi_note_local_flush(void);
void __asi_note_new_asid(u16 asid);
unsigned long __asi_full_cr3_load(unsigned long cr3, u16 asid);
u64 __asi_ist_enter(void);
void __asi_ist_exit(u64 cr3);
unsigned long __asi_read_full_cr3(void);
void asi_cpu_reset(void);

/*
 * A #PF arrived: if this CPU runs in the nonsensitive address space and the
 * fault is a kernel-mode one on a kernel address, switch to the full address
 * space. True if that happened: the caller then asks asi_fault_retry()
 * whether the full tables grant the access. Called first thing from
 * exc_page_fault(), so noinstr.
 */
static __always_inline bool asi_fault_exit(struct pt_regs *regs,
					   unsigned long address)
{
	return cpu_feature_enabled(X86_FEATURE_ASI) && __asi_fault_exit(regs, address);
}

/*
 * Return to user mode: run it, and the next entry into the kernel, in the
 * nonsensitive address space of current's mm. Last thing before the return,
 * IRQs off, noinstr.
 */
static __always_inline void asi_enter_nonsensitive(void)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_enter_nonsensitive();
}

/*
 * Make sure this CPU runs on the full tables of its loaded mm, before code
 * that writes or reads CR3 or needs the full tables. IRQs off. Traced.
 */
static __always_inline void asi_exit(enum asi_exit_reason reason)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_exit(reason, _THIS_IP_);
}

/*
 * switch_mm_irqs_off() loads the full CR3 @cr3 of the mm at @pgdir: on a
 * nonsensitive CPU, load that mm's nonsensitive table instead and stay
 * nonsensitive. True if CR3 was written; if not, the caller exits first.
 * IRQs off.
 */
static __always_inline bool asi_switch_mm(pgd_t *pgdir, unsigned long cr3, u16 asid)
{
	return cpu_feature_enabled(X86_FEATURE_ASI) && __asi_switch_mm(pgdir, cr3, asid);
}

/*
 * tlb.c flushed the current PCID only (INVLPG, or a CR3 rewrite): the
 * other address space of the loaded ASID may still hold what was flushed.
 */
static __always_inline void asi_note_local_flush(void)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_note_local_flush();
}

/* tlb.c loads @asid for a new or outdated mm: both its PCIDs are stale. */
static __always_inline void asi_note_new_asid(u16 asid)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_note_new_asid(asid);
}

/*
 * tlb.c is about to load the full CR3 @cr3 of @asid: drop CR3_NOFLUSH if
 * that PCID missed a flush while the CPU ran on the other address space.
 */
static __always_inline unsigned long asi_full_cr3_load(unsigned long cr3, u16 asid)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		return __asi_full_cr3_load(cr3, asid);
	return cr3;
}

/*
 * The same from noinstr code (double fault) and where tracing is not safe
 * (oops, the kexec into a crash kernel): not traced.
 */
static __always_inline void asi_exit_noinstr(enum asi_exit_reason reason)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_exit_noinstr(reason);
}

/*
 * An NMI handler may leave the nonsensitive space (a #PF on sensitive
 * data). asi_ist_enter() at its start returns what asi_ist_exit() needs at
 * its end to go back to where the NMI landed. Both noinstr.
 */
static __always_inline u64 asi_ist_enter(void)
{
	return cpu_feature_enabled(X86_FEATURE_ASI) ? __asi_ist_enter() : 0;
}

static __always_inline void asi_ist_exit(u64 cr3)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_ist_exit(cr3);
}

/*
 * CR3 of the full address space of the loaded mm, for checks that compare
 * CR3 with what switch_mm_irqs_off() loaded.
 */
static __always_inline unsigned long asi_read_full_cr3(void)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		return __asi_read_full_cr3();
	return __read_cr3();
}

void __asi_return_to_user(void);
void __asi_note_interrupt(void);
void __asi_enter_lazy_tlb(struct task_struct *tsk);

extern bool asi_ibpb_at_both_sites;

/*
 * Whether ASI's actions keep every process's branch training from the
 * others, so that the IBPB on context switch is not needed.
 */
static __always_inline bool asi_ibpb_covers_switch(void)
{
	return cpu_feature_enabled(X86_FEATURE_ASI) && asi_ibpb_at_both_sites;
}

/*
 * Return to user mode, from arch_exit_to_user_mode_prepare(): run what the
 * taint model asks for before user code runs. IRQs off, instrumentable.
 */
static __always_inline void asi_return_to_user(void)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_return_to_user();
}

/*
 * An interrupt arrived (sysvec or device interrupt, after irqentry_enter()):
 * if the CPU is in the full address space, the handler may leave any mm's
 * data in the CPU's buffers.
 */
static __always_inline void asi_note_interrupt(void)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_note_interrupt();
}

/* Same for a kernel thread about to run (enter_lazy_tlb()). */
static __always_inline void asi_enter_lazy_tlb(struct task_struct *tsk)
{
	if (cpu_feature_enabled(X86_FEATURE_ASI))
		__asi_enter_lazy_tlb(tsk);
}

/* Rust, called from the two hooks below. */
int asi_mm_init(struct mm_struct *mm);
void asi_mm_destroy(struct mm_struct *mm);

/* Give a new mm its nonsensitive top-level table (init_new_context()). */
static inline int asi_init_mm(struct mm_struct *mm)
{
	return asi_enabled() ? asi_mm_init(mm) : 0;
}

/* Free it again (destroy_context()). */
static inline void asi_destroy_mm(struct mm_struct *mm)
{
	if (asi_enabled())
		asi_mm_destroy(mm);
}

/*
 * Rust, called from the page allocator and CPA.
 * asi_make_nonsensitive() and asi_mirror_direct_map() work in any
 * context, NMI included: they never sleep, allocate or take locks. So does
 * asi_make_sensitive() when no page needs a flush or @can_flush is false;
 * otherwise it takes up to 31 free pages off the free lists (GFP_NOWAIT)
 * to flip with the range and sends the TLB flush to every CPU, which its
 * caller allows only where it is preemptible (asi_can_flush()).
 */
bool asi_make_sensitive(unsigned long pfn, unsigned long nr, bool can_flush,
			bool movable);
void asi_make_nonsensitive(unsigned long pfn, unsigned long nr);
void asi_mirror_direct_map(unsigned long va, unsigned long nr);
unsigned long asi_nr_sensitive(unsigned long pfn, unsigned long nr);

/*
 * CPA changed the kernel's mapping of [va, va + nr pages): make the
 * nonsensitive direct map follow, for the pages that are not sensitive.
 */
static inline void asi_sync_direct_map(unsigned long va, unsigned long nr)
{
	if (asi_enabled())
		asi_mirror_direct_map(va, nr);
}


#else /* !CONFIG_ASI */

static __always_inline bool asi_enabled(void)
{
	return false;
}

static inline bool asi_requested(void) { return false; }
static inline void asi_check_boottime(void) { }
static inline void asi_setup(void) { }
static inline pgprot_t asi_direct_map_pgprot(pgprot_t prot)
{
	return prot;
}
static inline void asi_sync_direct_map(unsigned long va, unsigned long nr) { }
static __always_inline bool asi_fault_exit(struct pt_regs *regs,
					   unsigned long address) { return false; }
static inline bool asi_fault_retry(struct pt_regs *regs, unsigned long error_code,
				   unsigned long address) { return false; }
static __always_inline void asi_enter_nonsensitive(void) { }
static __always_inline void asi_exit(enum asi_exit_reason reason) { }
static __always_inline void asi_exit_noinstr(enum asi_exit_reason reason) { }
static __always_inline bool asi_switch_mm(pgd_t *pgdir, unsigned long cr3,
					  u16 asid) { return false; }
static __always_inline void asi_note_local_flush(void) { }
static __always_inline void asi_note_new_asid(u16 asid) { }
static __always_inline unsigned long asi_full_cr3_load(unsigned long cr3, u16 asid) { return cr3; }
static __always_inline u64 asi_ist_enter(void) { return 0; }
static __always_inline void asi_ist_exit(u64 cr3) { }
static __always_inline unsigned long asi_read_full_cr3(void) { return __read_cr3(); }
static inline void asi_cpu_reset(void) { }
static __always_inline void asi_return_to_user(void) { }
static __always_inline bool asi_ibpb_covers_switch(void) { return false; }
static __always_inline void asi_note_interrupt(void) { }
static __always_inline void asi_enter_lazy_tlb(struct task_struct *tsk) { }
static inline int asi_init_mm(struct mm_struct *mm) { return 0; }
static inline void asi_destroy_mm(struct mm_struct *mm) { }

#endif /* CONFIG_ASI */

#endif /* _ASM_X86_ASI_H */
