/* SPDX-License-Identifier: GPL-2.0 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM asi

#if !defined(_TRACE_ASI_H) || defined(TRACE_HEADER_MULTI_READ)
#define _TRACE_ASI_H

#include <linux/tracepoint.h>
#include <asm/asi.h>

TRACE_DEFINE_ENUM(ASI_EXIT_PAGE_FAULT);
TRACE_DEFINE_ENUM(ASI_EXIT_SWITCH_MM);
TRACE_DEFINE_ENUM(ASI_EXIT_CR3_READ);
TRACE_DEFINE_ENUM(ASI_EXIT_TLB_FLUSH);
TRACE_DEFINE_ENUM(ASI_EXIT_NMI);
TRACE_DEFINE_ENUM(ASI_EXIT_OTHER);

/*
 * The CPU left ASI's nonsensitive address space for the full one. @address
 * is the faulting address for page faults (also in NMIs), else 0; @ip is
 * the faulting instruction or the caller that asked to leave.
 */
TRACE_EVENT(asi_exit,
	TP_PROTO(unsigned int reason, unsigned long address, unsigned long ip),
	TP_ARGS(reason, address, ip),

	TP_STRUCT__entry(
		__field(unsigned int,	reason)
		__field(unsigned long,	address)
		__field(unsigned long,	ip)
	),

	TP_fast_assign(
		__entry->reason = reason;
		__entry->address = address;
		__entry->ip = ip;
	),

	TP_printk("reason=%s address=0x%lx ip=%pS",
		  __print_symbolic(__entry->reason,
				   { ASI_EXIT_PAGE_FAULT,	"page_fault" },
				   { ASI_EXIT_SWITCH_MM,	"switch_mm" },
				   { ASI_EXIT_CR3_READ,		"cr3_read" },
				   { ASI_EXIT_TLB_FLUSH,	"tlb_flush" },
				   { ASI_EXIT_NMI,		"nmi" },
				   { ASI_EXIT_OTHER,		"other" }),
		  __entry->address, (void *)__entry->ip)
);

#endif /* _TRACE_ASI_H */

#undef TRACE_INCLUDE_PATH
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_PATH .
#define TRACE_INCLUDE_FILE asi

/* This part must be outside protection */
#include <trace/define_trace.h>
