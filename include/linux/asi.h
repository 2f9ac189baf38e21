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
 *    the allocator returns it. That needs IPIs, so where they cannot be
 *    sent (IRQs off, not in task context, ALLOC_NOLOCK) the allocation
 *    fails instead. The same flush also covers a batch of free pages that
 *    are unmapped with it and go back to the free lists, so that the next
 *    user allocations find pages that need no flush;
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
	can_flush = !nolock && in_task() && !irqs_disabled();
	return asi_make_sensitive(page_to_pfn(page), 1UL << order, can_flush,
				  gfp & __GFP_MOVABLE);
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

#endif /* CONFIG_ASI */

#endif /* _LINUX_ASI_H */
