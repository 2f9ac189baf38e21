/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_ASI_H
#define _LINUX_ASI_H

/*
 * Address Space Isolation: the page allocator's view, see
 * Documentation/arch/x86/asi.rst.
 *
 * Pages allocated with __GFP_SENSITIVE (the GFP_USER family: user data) are
 * "sensitive": absent from ASI's nonsensitive direct map. All other pages
 * are mapped there. A page keeps its state when it is freed, so reusing a
 * page for the same kind of data costs nothing; a page changes state only
 * when it is allocated for the other kind:
 *
 *  - to sensitive, it is unmapped and the TLB flushed on all CPUs before
 *    the allocator returns it. That needs synchronous IPIs, so where they
 *    cannot be sent (preemption or IRQs off, not in task context,
 *    ALLOC_NOLOCK) the allocation fails instead. The same flush also
 *    covers a batch of free pages that are unmapped with it and go back to
 *    the free lists, so that the next user allocations find pages that
 *    need no flush;
 *  - to nonsensitive, it is zeroed and then mapped. No flush is needed, so
 *    this works in any context, NMI included.
 */

#include <linux/gfp_types.h>
#include <linux/hardirq.h>
#include <linux/irqflags.h>
#include <linux/mm.h>

#ifdef CONFIG_ASI

#include <asm/asi.h>

/* Whether ASI keeps the pages of an allocation with @gfp out of its tables. */
static inline bool asi_gfp_sensitive(gfp_t gfp)
{
	return asi_enabled() && (gfp & __GFP_SENSITIVE);
}

/*
 * Whether this context may send the synchronous TLB-flush IPI that making
 * pages sensitive needs. In task context with preemption off (a spinlock
 * held, a per-CPU section) another CPU may spin with interrupts off on what
 * this one holds and never answer the IPI; so only a preemptible context
 * may, which also rules out interrupts off, hardirq, softirq and NMI.
 * CONFIG_ASI selects PREEMPT_COUNT, so that preemptible() can tell.
 */
static inline bool asi_can_flush(void)
{
	return preemptible();
}

/* End of post_alloc_hook(): map a nonsensitive page, zeroing it if needed. */
static inline void asi_post_alloc(struct page *page, unsigned int order, gfp_t gfp)
{
	if (asi_enabled() && !(gfp & __GFP_SENSITIVE))
		asi_make_nonsensitive(page_to_pfn(page), 1UL << order);
}

/*
 * Last step of a page allocation: make a sensitive page absent from the
 * nonsensitive tables and flushed from every TLB. False if that needs a
 * flush that this context cannot do; the caller then frees the page.
 */
static inline bool asi_alloc_sensitive(struct page *page, unsigned int order,
				       gfp_t gfp, bool nolock)
{
	bool can_flush;

	if (!asi_gfp_sensitive(gfp))
		return true;
	can_flush = !nolock && asi_can_flush();
	return asi_make_sensitive(page_to_pfn(page), 1UL << order, can_flush,
				  gfp & __GFP_MOVABLE);
}

/*
 * alloc_contig_range() hands out a range it isolated itself: leave ASI's
 * nonsensitive direct map with it if it is for user data (gigantic hugetlb
 * folios). It migrates pages first, so it runs where the TLB flush can be
 * sent; false if it cannot.
 */
static inline bool asi_alloc_contig_sensitive(unsigned long pfn, unsigned long nr,
					      gfp_t gfp)
{
	if (!asi_gfp_sensitive(gfp))
		return true;
	return asi_make_sensitive(pfn, nr, asi_can_flush(), true);
}

/*
 * Migration copies a folio's data into another folio, which must then be as
 * sensitive as the source whatever allocator it came from: compaction's free
 * scanner, CMA and memory offlining pass kernel flags, NUMA balancing user
 * ones.
 */
static inline unsigned long asi_folio_nr_sensitive(struct folio *folio)
{
	return asi_nr_sensitive(folio_pfn(folio), folio_nr_pages(folio));
}

/* The flags for a migration target of @src: sensitive exactly if @src is. */
static inline gfp_t asi_migration_gfp(struct folio *src, gfp_t gfp)
{
	if (!asi_enabled())
		return gfp;
	gfp &= ~__GFP_SENSITIVE;
	if (asi_folio_nr_sensitive(src))
		gfp |= __GFP_SENSITIVE;
	return gfp;
}

/*
 * Give the new migration target @dst the sensitivity of @src, before anything
 * is copied or locked: unmapped and flushed from every TLB, or zeroed and
 * mapped. -ENOMEM if the flush cannot be sent from here; migrate_pages()
 * runs preemptible, where it can.
 */
static inline int asi_migration_prepare(struct folio *dst, struct folio *src)
{
	unsigned long pfn = folio_pfn(dst), nr = folio_nr_pages(dst);

	if (!asi_enabled())
		return 0;
	if (!asi_folio_nr_sensitive(src)) {
		asi_make_nonsensitive(pfn, nr);
		return 0;
	}
	if (!asi_make_sensitive(pfn, nr, asi_can_flush(), true))
		return -ENOMEM;
	return 0;
}

/*
 * Whether moving @src into @dst would copy user data into memory that the
 * nonsensitive address space maps: a bug, which migration refuses.
 */
static inline bool asi_migration_leaks(struct folio *dst, struct folio *src)
{
	return asi_enabled() && asi_folio_nr_sensitive(src) &&
	       WARN_ON_ONCE(asi_folio_nr_sensitive(dst) != folio_nr_pages(dst));
}

#else /* !CONFIG_ASI */

static inline bool asi_gfp_sensitive(gfp_t gfp)
{
	return false;
}

static inline void asi_post_alloc(struct page *page, unsigned int order, gfp_t gfp) { }

static inline bool asi_alloc_sensitive(struct page *page, unsigned int order,
				       gfp_t gfp, bool nolock)
{
	return true;
}

static inline bool asi_alloc_contig_sensitive(unsigned long pfn, unsigned long nr,
					      gfp_t gfp)
{
	return true;
}

static inline gfp_t asi_migration_gfp(struct folio *src, gfp_t gfp)
{
	return gfp;
}

static inline int asi_migration_prepare(struct folio *dst, struct folio *src)
{
	return 0;
}

static inline bool asi_migration_leaks(struct folio *dst, struct folio *src)
{
	return false;
}

#endif /* CONFIG_ASI */

#endif /* _LINUX_ASI_H */
