// SPDX-License-Identifier: GPL-2.0
/*
 * Address Space Isolation: check when the kernel leaves the nonsensitive
 * address space.
 *
 * Syscalls that touch no user data through the kernel's direct map
 * (getpid(), a read of /dev/zero into the caller's own buffer, a write to
 * /dev/null) must run in it from entry to return: the asi:asi_exit
 * tracepoint, filtered on this process, records no exit in 100,000 rounds
 * of them. Reading the page cache must leave it, once per read, with reason
 * page_fault: a read at the end of the loop shows that the process did run
 * in the nonsensitive space and that the tracepoint sees its exits. When
 * another process preempts the loop, switching to it may leave (switch_mm,
 * recorded for the process switched away from, when the other process has
 * no nonsensitive table): the test allows as many of those as the loop had
 * context switches, which is not the loop's doing. Switching between
 * processes stays in the nonsensitive space when the CPU is in it (counted
 * as a switch). Skips when ASI is off.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asi_util.h"

#define TRANSITIONS	"/sys/kernel/debug/asi/transitions"
#define TRACING		"/sys/kernel/tracing"
#define EVENT		TRACING "/events/asi/asi_exit"
#define ROUNDS		100000

static char buf[4096];

#define SKIP_IF_NO_ASI()						\
	do {								\
		if (read_key(TRANSITIONS, "enters") <= 0)		\
			SKIP(return, "ASI is off: nothing enters");	\
	} while (0)

/*
 * Record asi_exit events of this process only, with the ring buffer off:
 * turning the event itself on and off patches kernel text, which leaves
 * the nonsensitive space (a temporary mm), so it stays on and only the
 * buffer is switched around the measured code.
 */
static int trace_setup(void)
{
	char filter[64];

	if (access(TRACING "/trace", F_OK))
		mount("tracefs", TRACING, "tracefs", 0, NULL);
	if (access(EVENT "/enable", W_OK))
		return -ENOENT;
	snprintf(filter, sizeof(filter), "common_pid == %d", getpid());
	if (write_str(TRACING "/tracing_on", "0") || write_str(EVENT "/filter", filter) ||
	    write_str(EVENT "/enable", "1") || write_str(TRACING "/trace", ""))
		return -EIO;
	return 0;
}

/* Context switches of this process so far, voluntary or not. */
static long context_switches(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return -1;
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

/*
 * Lines of the trace buffer that are events, and those with @match; the
 * first few others are shown if @show.
 */
static int trace_count(const char *match, int *matching, bool show)
{
	char line[512];
	int events = 0;
	FILE *f;

	*matching = 0;
	f = fopen(TRACING "/trace", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#')
			continue;
		events++;
		if (strstr(line, match))
			(*matching)++;
		else if (show && events - *matching <= 5)
			fprintf(stderr, "# other: %s", line);
	}
	fclose(f);
	return events;
}

static void trace_teardown(void)
{
	write_str(TRACING "/tracing_on", "0");
	write_str(EVENT "/enable", "0");
	write_str(EVENT "/filter", "0");
	write_str(TRACING "/tracing_on", "1");
}

/* A tmpfs file of @pages pages of 0x5a, open for reading and writing. */
static int page_cache_file(const char *path, int pages)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	memset(buf, 0x5a, sizeof(buf));
	while (pages--) {
		if (write(fd, buf, sizeof(buf)) != sizeof(buf)) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

TEST(syscall_loop_does_not_exit)
{
	const char *path = "/tmp/asi_exits_loop";
	int zero, null, file, i, events, faults, switches;
	long csw;

	SKIP_IF_NO_ASI();
	if (trace_setup())
		SKIP(return, "no asi:asi_exit tracepoint (CONFIG_TRACING)");
	zero = open("/dev/zero", O_RDONLY);
	null = open("/dev/null", O_WRONLY);
	file = page_cache_file(path, 1);
	ASSERT_GE(zero, 0);
	ASSERT_GE(null, 0);
	ASSERT_GE(file, 0);
	/* The buffer is faulted in: zeroing a new user page would be an exit. */

	csw = context_switches();
	ASSERT_EQ(0, write_str(TRACING "/tracing_on", "1"));
	for (i = 0; i < ROUNDS; i++) {
		getpid();
		if (read(zero, buf, sizeof(buf)) != sizeof(buf) ||
		    write(null, buf, sizeof(buf)) != sizeof(buf))
			break;
	}
	/* The control: one read of the page cache, one exit. */
	ASSERT_EQ(sizeof(buf), pread(file, buf, sizeof(buf), 0));
	ASSERT_EQ(0, write_str(TRACING "/tracing_on", "0"));
	csw = context_switches() - csw;
	events = trace_count("reason=page_fault", &faults, true);
	trace_count("reason=switch_mm", &switches, false);
	trace_teardown();
	close(file);
	unlink(path);
	ASSERT_EQ(ROUNDS, i);
	ASSERT_EQ(0x5a, buf[0]);
	EXPECT_EQ(1, faults) TH_LOG("the page-cache read did not leave once");
	EXPECT_LE(switches, csw) TH_LOG("%d switch_mm exits, %ld context switches",
					switches, csw);
	EXPECT_EQ(1, events - switches)
		TH_LOG("%d exits in %d rounds of getpid, read, write",
		       events - switches - faults, ROUNDS);
	if (switches)
		TH_LOG("%d switch_mm exits, all from %ld context switches", switches, csw);
	close(zero);
	close(null);
}

TEST(page_cache_read_exits_once_per_read)
{
	const char *path = "/tmp/asi_exits_test";
	int fd, i, events, faults, switches;
	long csw;

	SKIP_IF_NO_ASI();
	if (trace_setup())
		SKIP(return, "no asi:asi_exit tracepoint (CONFIG_TRACING)");
	fd = page_cache_file(path, 16);
	ASSERT_GE(fd, 0);

	csw = context_switches();
	ASSERT_EQ(0, write_str(TRACING "/tracing_on", "1"));
	for (i = 0; i < 16; i++) {
		if (pread(fd, buf, sizeof(buf), i * sizeof(buf)) != sizeof(buf) ||
		    buf[0] != 0x5a)
			break;
	}
	ASSERT_EQ(0, write_str(TRACING "/tracing_on", "0"));
	csw = context_switches() - csw;
	events = trace_count("reason=page_fault", &faults, true);
	trace_count("reason=switch_mm", &switches, false);
	trace_teardown();
	close(fd);
	unlink(path);
	ASSERT_EQ(16, i);
	/* One exit per read: the copy out of the page cache; re-entered on return. */
	EXPECT_EQ(16, faults);
	/* Besides, only switches away from the test, as in the test above. */
	EXPECT_LE(switches, csw);
	EXPECT_EQ(16, events - switches);
}

/*
 * A process that blocks in the kernel without having touched user data is
 * still in the nonsensitive space when the CPU switches to another process:
 * the switch loads the other process's nonsensitive table and stays
 * (counted in "switches", not an exit). On one CPU, a parent waiting for
 * its child does that, unless a copy-on-write fault (which reads user data:
 * a page-fault exit) left first. Every child enters on its way to user mode.
 */
TEST(process_switches_stay_in_the_nonsensitive_space)
{
	long enters, faults, switches;
	cpu_set_t one;
	int i, status;
	pid_t pid;

	SKIP_IF_NO_ASI();
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	ASSERT_EQ(0, sched_setaffinity(0, sizeof(one), &one));
	enters = read_key(TRANSITIONS, "enters");
	faults = read_key(TRANSITIONS, "exits_page_fault");
	switches = read_key(TRANSITIONS, "switches");
	for (i = 0; i < 20; i++) {
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			/* Fresh memory: zeroing the pages that held user data leaves. */
			char *p = malloc(1 << 20);

			memset(p, 1, 1 << 20);
			_exit(p[4096]);
		}
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_EQ(1, WEXITSTATUS(status));
	}
	enters = read_key(TRANSITIONS, "enters") - enters;
	faults = read_key(TRANSITIONS, "exits_page_fault") - faults;
	switches = read_key(TRANSITIONS, "switches") - switches;
	TH_LOG("20 children: %ld enters, %ld page-fault exits, %ld nonsensitive switches",
	       enters, faults, switches);
	EXPECT_GE(enters, 20);
	EXPECT_GT(faults, 0);
	EXPECT_GT(switches, 0);
}

TEST_HARNESS_MAIN
