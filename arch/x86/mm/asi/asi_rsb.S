/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Address Space Isolation: the RSB fill action, for C callers.
 *
 * The kernel fills the return stack buffer only from assembly (context
 * switch, VM exit, write_ibpb() where IBPB leaves it alone); ASI needs it on
 * its way to the full tables, from noinstr C code.
 */

#include <linux/linkage.h>
#include <asm/nospec-branch.h>

.pushsection .noinstr.text, "ax"

/* Overwrite every RSB entry with one that leads to a speculation trap. Clobbers AX. */
SYM_FUNC_START(asi_fill_return_buffer)
	ANNOTATE_NOENDBR
	__FILL_RETURN_BUFFER(%_ASM_AX, RSB_CLEAR_LOOPS)
	RET
SYM_FUNC_END(asi_fill_return_buffer)

.popsection
