/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_X86_ASI_INTERNAL_H
#define _ASM_X86_ASI_INTERNAL_H

/*
 * Address Space Isolation: the interface between its C part
 * (arch/x86/mm/asi/asi.c and actions.c) and its Rust crate
 * (arch/x86/mm/asi/rust_asi.rs), for those files and the Rust bindings
 * only; the rest of the kernel includes asm/asi.h. The functions marked
 * "Rust" are implemented in Rust and called from C, the others the other
 * way round.
 */

#include <asm/asi.h>

/* What the asi= boot parameter asked for. */
enum asi_boot_request {
	ASI_BOOT_DEFAULT,	/* no asi= on the command line */
	ASI_BOOT_ON,		/* asi=on */
	ASI_BOOT_OFF,		/* asi=off */
	ASI_BOOT_INVALID,	/* asi= with a value that is not understood */
};

/* Why ASI is off although asi=on asked for it. */
enum asi_off_reason {
	ASI_OFF_NONE,		/* not refused: on, or not asked for */
	ASI_OFF_PTI,		/* PTI is on */
	ASI_OFF_MELTDOWN,	/* Meltdown-affected CPU with pti=off */
	ASI_OFF_MITIGATIONS,	/* mitigations=off */
	ASI_OFF_PV_FLUSH,	/* a hypervisor's remote TLB flush */
	ASI_OFF_SETUP,		/* a step of asi_setup() failed */
};

/* This CPU's CR3 together with the inputs the kernel built it from. */
struct asi_cr3_snapshot {
	u64	cr3;		/* CR3 of the full address space */
	u64	pgd_pa;		/* physical address of the loaded mm's PGD */
	u64	lam;		/* LAM bits of the loaded mm */
	u64	me_mask;	/* sme_me_mask: the C-bit build_cr3() adds */
	u16	asid;		/* dynamic ASID the loaded mm runs with */
	bool	pcid;		/* X86_FEATURE_PCID */
	bool	pti_pcid;	/* PTI reserves a PCID bit (compiled in) */
};

/*
 * Where the kernel's own page tables and its direct map are, for building
 * the nonsensitive tables. Addresses are physical unless named va.
 */
struct asi_layout {
	u64	kernel_pgd;	/* init_mm's PGD */
	u64	page_offset;	/* va of physical address 0 in the direct map */
	u64	direct_map_pages; /* pages the direct map covers (max_pfn_mapped) */
	u64	vmalloc_start;	/* va, first byte of the vmalloc area */
	u64	vmalloc_end;	/* va, last byte of the vmalloc area */
	u64	pfn_mask;	/* PTE_PFN_MASK */
	u64	table_flags;	/* _KERNPG_TABLE */
	u32	levels;		/* 4 or 5 */
};


/*
 * The mitigation actions, in the order they run when several are due: the
 * control state first, VERW last. An action is bit (1 << action) of a mask;
 * the taint model (policy.rs, Action) uses the same bits.
 */
enum asi_action {
	ASI_ACTION_IBPB,	/* indirect branch prediction barrier */
	ASI_ACTION_RSB_FILL,	/* overwrite the return stack buffer */
	ASI_ACTION_L1D_FLUSH,	/* flush the L1 data cache */
	ASI_ACTION_VERW,	/* clear the CPU buffers */
	ASI_NR_ACTIONS,
};

/* How this machine can run an action. */
enum asi_action_support {
	ASI_SUPPORT_NONE,	/* not at all */
	ASI_SUPPORT_CPU,	/* with the CPU's instruction or MSR */
	ASI_SUPPORT_SOFTWARE,	/* with a software sequence */
};

/* Where the kernel runs the actions the taint model asks for. */
enum asi_action_site {
	ASI_SITE_EXIT,		/* before CR3 switches to the full tables */
	ASI_SITE_RUN,		/* before returning to user code */
	ASI_NR_SITES,
};

/*
 * What happened on a CPU, noted where the taint model cannot be told at
 * once (noinstr code, NMIs): the model catches up on the next return to
 * user mode.
 */
#define ASI_PENDING_EXIT	0x1	/* the CPU left the nonsensitive space */
#define ASI_PENDING_FOREIGN	0x2	/* code that may touch any mm's data ran there */

/* Bytes of per-CPU memory that hold the taint model's state (policy.rs). */
#define ASI_POLICY_STATE_BYTES	256

/* Called by asi_visit_ns_pgds() for each mm with a nonsensitive table. */
typedef void (*asi_ns_pgd_fn)(void *ctx, u64 mm_pgd, u64 asi_pgd);

/* Called by asi_visit_required() for each range that must stay mapped. */
typedef void (*asi_required_fn)(void *ctx, const char *what, unsigned long va,
				unsigned long len);

#ifdef CONFIG_ASI

/* C, called from Rust. */
enum asi_boot_request asi_boot_request(void);
bool asi_boot_cpu_has_asi(void);
bool asi_pti_on(void);
enum asi_off_reason asi_off_reason(void);
void asi_cpu_flag_census(unsigned int *online, unsigned int *flagged);
void asi_cr3_snapshot(struct asi_cr3_snapshot *snap);

void asi_get_layout(struct asi_layout *layout);
u64 asi_alloc_table(void);
void asi_free_table(u64 table);
u64 asi_kernel_leaf(unsigned long va, unsigned int *level);
void asi_flush_kernel_all(void);
unsigned int asi_batch_alloc(unsigned long *pfns, unsigned int n, bool movable);
void asi_batch_free(const unsigned long *pfns, unsigned int n);
void asi_clear_page(unsigned long pfn);
void asi_visit_required(asi_required_fn fn, void *ctx);
u64 asi_alloc_ns_pgd(void);
u64 asi_mm_pgd(struct mm_struct *mm);
u64 asi_mm_ns_pgd(struct mm_struct *mm);
void asi_mm_set_ns_pgd(struct mm_struct *mm, u64 pgd);
void asi_visit_ns_pgds(asi_ns_pgd_fn fn, void *ctx);
u64 asi_ktime_ns(void);



/*
 * The rules for the marks of stale PCIDs (arch/x86/mm/asi/pcid_rules.rs,
 * Event): the events that change an ASID's marks or ask whether a CR3
 * write may use CR3_NOFLUSH.
 */
enum asi_pcid_event {
	ASI_PCID_LOCAL_FLUSH_FULL,	/* R1, on the full tables */
	ASI_PCID_LOCAL_FLUSH_NS,	/* R1, on the nonsensitive tables */
	ASI_PCID_NEW_ASID,		/* R2 */
	ASI_PCID_LOAD_FULL,		/* R4, the full PCID, flushing */
	ASI_PCID_LOAD_FULL_KEEP,	/* R4, the full PCID, CR3_NOFLUSH wanted */
	ASI_PCID_LOAD_NS,		/* R4, the nonsensitive PCID, flushing */
	ASI_PCID_LOAD_NS_KEEP,		/* R4, ... CR3_NOFLUSH wanted */
	ASI_PCID_NR_EVENTS,
};

/* Bits of the marks and of the decisions in asi_pcid_rules[]. */
#define ASI_PCID_FULL		0x1	/* the full PCID is marked stale */
#define ASI_PCID_NS		0x2	/* the nonsensitive PCID is marked stale */
#define ASI_PCID_NOFLUSH	0x4	/* the CR3 write may use CR3_NOFLUSH */

/*
 * Rust: asi_pcid_rules[event][marks] is the marks after @event on an ASID
 * with @marks, and ASI_PCID_NOFLUSH if a CR3 write may keep the PCID's
 * entries. A table, computed at build time, because the CR3 writes that
 * consult it are noinstr.
 */
extern const u8 asi_pcid_rules[ASI_PCID_NR_EVENTS][4];

/* Counters, C called from Rust. */
u64 asi_exit_count(enum asi_exit_reason reason);
bool asi_transition_count(unsigned int cpu, int what, u64 *count);
unsigned int asi_nr_cpu_ids(void);
void asi_reset_transition_counts(void);


/* The mitigation actions, C called from Rust. */
enum asi_action_support asi_action_support(enum asi_action action);
bool asi_mitigations_off(void);
const char *asi_actions_param(void);
bool asi_vector_mitigated(enum asi_action_site site);
void asi_set_actions(u8 exit_mask, u8 run_mask);
void *asi_policy_state(int cpu);
void asi_policy_ready(void);
u8 asi_take_pending(void);
void asi_arm_exit_actions(u8 mask);
void asi_count_required(u8 mask, enum asi_action_site site, bool foreign);
bool asi_action_count(unsigned int cpu, int what, u64 *count);
void asi_reset_action_counts(void);
void asi_run_actions(u8 required, enum asi_action_site site);

void __asi_exit_actions(void);
void __asi_note_foreign(void);
bool __asi_in_nonsensitive(void);
int asi_actions_alloc(void);
void asi_actions_free(void);

/* Rust, called from C. */
int asi_core_init(void);
int asi_core_setup(void);
bool asi_hotplug_sensitive(unsigned long pfn, unsigned long nr);
u64 asi_count_global_direct_map(void);
u8 asi_policy_return_to_user(u64 mm_id);
bool asi_fault_granted(unsigned long address, unsigned long error_code);
int asi_debugfs_init(void);


#ifdef CONFIG_ASI_KUNIT_TEST
/* The steps of asi_test_stale_marks(). */
enum asi_test_mark_step {
	ASI_TEST_MARKS_LOCAL,		/* flush_tlb_local() on the full tables */
	ASI_TEST_MARKS_NONSENSITIVE,	/* the same on the nonsensitive tables */
	ASI_TEST_MARKS_LEFT,		/* back on the full tables */
	ASI_TEST_MARKS_KERNEL,		/* flush_tlb_one_kernel() */
	ASI_TEST_MARKS_TAKEN,		/* a marked and a clean PCID taken */
	ASI_TEST_MARKS_SWITCHED,	/* kthread_use_mm() of a new mm */
	ASI_TEST_MARK_STEPS,
};

/* This CPU's marks of stale PCIDs after one step. */
struct asi_test_marks {
	u16	full;
	u16	ns;
	u16	bit;		/* the loaded ASID's bit */
	bool	invalidate_other;
	bool	taken_marked;	/* ASI_TEST_MARKS_TAKEN: the marked one was clean */
	bool	taken_clean;	/* ASI_TEST_MARKS_TAKEN: the clean one was clean */
};

/* C, called from Rust's KUnit suite only. */
unsigned long asi_test_alloc(bool user, bool irqs_off, unsigned int order);
unsigned long asi_test_alloc_gfp_user(void);
int asi_test_stale_marks(u64 pgd, struct asi_test_marks *m);
unsigned long asi_test_free_then_alloc(unsigned long pfn, bool user, bool irqs_off);
unsigned long asi_test_free_then_alloc_nopreempt(unsigned long pfn);
void asi_test_free(unsigned long pfn, unsigned int order);
void asi_test_fill(unsigned long pfn, u8 value);
bool asi_test_is_filled(unsigned long pfn, u8 value);
unsigned long asi_test_vmap(unsigned long pfn);
void asi_test_vunmap(unsigned long va);
int asi_test_run_on(u64 pgd, int (*fn)(void *arg), void *arg);
unsigned int asi_test_cpu(void);
int asi_test_set_ro(unsigned long pfn, bool ro);
int asi_test_set_global(unsigned long pfn, bool global);
int asi_test_run_nonsensitive(u64 pgd, int (*fn)(void *arg), void *arg);
u64 asi_test_read_page(unsigned long pfn);
unsigned long asi_test_image_alias(bool *pge);
unsigned long asi_test_dm_global_at_setup(void);
u64 asi_test_cr3(u64 full, u64 pgd);
u64 asi_test_cr3_fast(void);
bool asi_test_in_nonsensitive(u64 *cr3);
int asi_test_nested_setup(bool nmi);
void asi_test_nested_teardown(bool nmi);
int asi_test_nested_read_page(unsigned long pfn, bool nmi, u64 *value);
void *asi_test_kvmalloc_user(size_t size);
void asi_test_kvfree(void *p);
unsigned long asi_test_kv_pfn(const void *p);
/*
 * Whole pageblocks: alloc_contig_pages() tries ranges aligned to their size
 * from the zone's start, and a smaller range in a zone that starts inside a
 * pageblock (DMA32 at pfn 1) makes it isolate a block the zone does not span.
 */
#define ASI_TEST_CONTIG_PAGES 1024
unsigned long asi_test_alloc_contig(bool user, unsigned long pfn);
bool asi_test_contig_configured(void);
void asi_test_free_contig(unsigned long pfn);
int asi_test_mm_ns_pgd(bool fail, void (*check)(void *ctx, u64 pgd, u64 ns_pgd),
		       void *ctx);
void asi_test_record_actions(bool on);
unsigned int asi_test_recorded(u8 *masks, u8 *sites, unsigned int max);
void asi_test_exit(u64 pgd, bool foreign);
void asi_test_return_to_user(u64 mm_id);
void asi_test_policy_swap(void *saved);
int asi_test_irqs_off(int (*fn)(void *arg), void *arg);
#endif

#endif /* CONFIG_ASI */

#endif /* _ASM_X86_ASI_INTERNAL_H */
