// SPDX-License-Identifier: GPL-2.0
/*
 * Address Space Isolation: check that the mitigation actions run when the
 * taint model says, under real workloads.
 *
 * The counters of /sys/kernel/debug/asi/actions are read for the CPU the
 * test pins itself to, before and after each workload:
 *
 * - Syscalls that never leave the nonsensitive space require nothing.
 * - A process that makes the kernel touch only its own data (page-cache
 *   reads of its own file) requires a control flush (IBPB, RSB fill) at each
 *   exit, which its user code ran before, and no data flush (L1D, VERW)
 *   except where another process or foreign code (an interrupt or kernel
 *   thread in the sensitive space) ran on the CPU.
 * - Two processes ping-ponging over a pipe on one CPU require a control
 *   flush per exit (the copies) or switch between them, not one per return
 *   to user mode, and a data flush when the CPU switches after the kernel
 *   touched the other process's data in the full space.
 * - Two processes ping-ponging through a futex exit nowhere: the switches
 *   between them stay in the nonsensitive space, and the only actions due
 *   are control flushes, one per switch to the other process.
 * - Every action required where it is enabled is executed there.
 * - The vulnerabilities files name ASI only where its IBPB replaces the
 *   IBPB on context switch (spectre_v2).
 * - Whatever the CPU cannot do (TCG: IBPB, VERW) is required but never
 *   executed; nothing is executed more often than required (but for the
 *   exit not yet caught up on and NMIs that left).
 *
 * Skips when ASI is off.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asi_util.h"

#define ACTIONS		"/sys/kernel/debug/asi/actions"
#define TRANSITIONS	"/sys/kernel/debug/asi/transitions"

static const char *const action_names[] = { "ibpb", "rsb_fill", "l1d_flush", "verw" };
#define NR_ACTIONS	4

/* This CPU's counters, read from the debugfs files. */
struct counts {
	long required[NR_ACTIONS];
	long executed[NR_ACTIONS];
	long before_user[NR_ACTIONS];	/* of required, before user code */
	long returns, switches, foreign, exits;
};

static const char *const exit_keys[] = {
	"exits_page_fault", "exits_switch_mm", "exits_cr3_read",
	"exits_tlb_flush", "exits_nmi", "exits_other",
};

/*
 * Each counter is read with a read() of its own, so an event between two of
 * them at either edge of a window can shift one counter against another:
 * the bounds below allow 2 for that.
 */
static void read_counts(int cpu, struct counts *c)
{
	char key[64];
	int a, i;

	for (a = 0; a < NR_ACTIONS; a++) {
		snprintf(key, sizeof(key), "required_%s", action_names[a]);
		c->required[a] = read_cpu_key(ACTIONS, key, cpu);
		snprintf(key, sizeof(key), "executed_%s", action_names[a]);
		c->executed[a] = read_cpu_key(ACTIONS, key, cpu);
		snprintf(key, sizeof(key), "required_before_user_%s", action_names[a]);
		c->before_user[a] = read_cpu_key(ACTIONS, key, cpu);
	}
	c->returns = read_cpu_key(ACTIONS, "returns_to_user", cpu);
	c->switches = read_cpu_key(ACTIONS, "mm_switches", cpu);
	c->foreign = read_cpu_key(ACTIONS, "foreign_returns", cpu);
	c->exits = 0;
	for (i = 0; i < 6; i++)
		c->exits += read_cpu_key(TRANSITIONS, exit_keys[i], cpu);
}

/* Where each action runs, from the table at the top of the actions file. */
static bool at_exits[NR_ACTIONS], before_user[NR_ACTIONS];

static int read_sites(void)
{
	char line[256];
	FILE *f;
	int a;

	f = fopen(ACTIONS, "r");
	if (!f)
		return -1;
	for (a = 0; a < NR_ACTIONS && fgets(line, sizeof(line), f); a++) {
		at_exits[a] = strstr(line, "at exits: yes");
		before_user[a] = strstr(line, "before user code: yes");
	}
	fclose(f);
	return a == NR_ACTIONS ? 0 : -1;
}

/*
 * Every action required where it is enabled was executed: those at exits
 * when they happened, those before user code at the return. An exit being
 * caught up on at either edge of the window may shift one.
 */
static void check_executed(struct __test_metadata *_metadata, const struct counts *d)
{
	long want;
	int a;

	ASSERT_EQ(0, read_sites());
	for (a = 0; a < NR_ACTIONS; a++) {
		want = (at_exits[a] ? d->required[a] - d->before_user[a] : 0) +
		       (before_user[a] ? d->before_user[a] : 0);
		EXPECT_LE(labs(d->executed[a] - want), 2)
			TH_LOG("%s: %ld executed, %ld expected", action_names[a],
			       d->executed[a], want);
	}
}

static void delta(struct counts *d, const struct counts *a, const struct counts *b)
{
	int i;

	for (i = 0; i < NR_ACTIONS; i++) {
		d->required[i] = b->required[i] - a->required[i];
		d->executed[i] = b->executed[i] - a->executed[i];
		d->before_user[i] = b->before_user[i] - a->before_user[i];
	}
	d->returns = b->returns - a->returns;
	d->switches = b->switches - a->switches;
	d->foreign = b->foreign - a->foreign;
	d->exits = b->exits - a->exits;
}

static void log_counts(struct __test_metadata *_metadata, const char *what,
		       const struct counts *d)
{
	TH_LOG("%s: %ld returns, %ld mm switches, %ld foreign, %ld exits; "
	       "required/executed ibpb %ld/%ld rsb_fill %ld/%ld l1d_flush %ld/%ld verw %ld/%ld; "
	       "ibpb before user code %ld",
	       what, d->returns, d->switches, d->foreign, d->exits,
	       d->required[0], d->executed[0], d->required[1], d->executed[1],
	       d->required[2], d->executed[2], d->required[3], d->executed[3],
	       d->before_user[0]);
}

/* Pin to the current CPU and return it. */
static int pin(void)
{
	int cpu = sched_getcpu();
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		return -1;
	return cpu;
}

#define SKIP_IF_NO_ASI()						\
	do {								\
		if (read_key(ACTIONS, "returns_to_user") < 0)		\
			SKIP(return, "ASI is off: no actions");		\
	} while (0)

static char buf[4096];

/* errno of writing @val to the actions file, 0 if the write succeeded. */
static int write_errno(const char *val)
{
	int fd = open(ACTIONS, O_WRONLY), err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, val, strlen(val)) < 0)
		err = errno;
	close(fd);
	return err;
}

TEST(bad_writes_are_rejected)
{
	SKIP_IF_NO_ASI();
	EXPECT_EQ(EINVAL, write_errno("1"));
	EXPECT_EQ(EINVAL, write_errno("reset"));
	EXPECT_EQ(0, write_errno("0"));
	/* Reset: only what ran since counts; a reset CPU may count again at once. */
	EXPECT_LT(read_key(ACTIONS, "returns_to_user"), 1000);
}

TEST(syscalls_without_exits_require_nothing)
{
	struct counts a, b, d;
	int cpu, zero, null, i;

	SKIP_IF_NO_ASI();
	cpu = pin();
	ASSERT_GE(cpu, 0);
	zero = open("/dev/zero", O_RDONLY);
	null = open("/dev/null", O_WRONLY);
	ASSERT_GE(zero, 0);
	ASSERT_GE(null, 0);
	memset(buf, 1, sizeof(buf));
	read_counts(cpu, &a);
	for (i = 0; i < 50000; i++) {
		getpid();
		if (read(zero, buf, sizeof(buf)) != sizeof(buf) ||
		    write(null, buf, sizeof(buf)) != sizeof(buf))
			break;
	}
	read_counts(cpu, &b);
	delta(&d, &a, &b);
	log_counts(_metadata, "150,000 syscalls", &d);
	check_executed(_metadata, &d);
	ASSERT_EQ(50000, i);
	EXPECT_GE(d.returns, 150000);
	/* Only exits (others' or the debugfs reads') and switches need a flush. */
	EXPECT_LE(d.required[0], d.exits + d.switches + 2);
	EXPECT_LE(d.required[2], d.switches + d.foreign + 2);
	EXPECT_LT(d.required[0] + d.required[2], 1500);
	close(zero);
	close(null);
}

TEST(own_data_exits_require_control_but_no_data_flushes)
{
	const char *path = "/tmp/asi_actions_own";
	struct counts a, b, d;
	int cpu, fd, i;

	SKIP_IF_NO_ASI();
	cpu = pin();
	ASSERT_GE(cpu, 0);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_GE(fd, 0);
	memset(buf, 0x5a, sizeof(buf));
	ASSERT_EQ(sizeof(buf), write(fd, buf, sizeof(buf)));
	read_counts(cpu, &a);
	for (i = 0; i < 2000; i++) {
		if (pread(fd, buf, sizeof(buf), 0) != sizeof(buf))
			break;
	}
	read_counts(cpu, &b);
	delta(&d, &a, &b);
	log_counts(_metadata, "2,000 page-cache reads", &d);
	check_executed(_metadata, &d);
	close(fd);
	unlink(path);
	ASSERT_EQ(2000, i);
	EXPECT_GE(d.exits, 2000);
	/* Each read exits after user code ran: the training goes first. */
	EXPECT_GE(d.required[0], 2000);
	EXPECT_LE(labs(d.required[0] - d.required[1]), 2);
	EXPECT_LE(d.before_user[0], d.switches + 2);
	/* Its own data stays: data flushes only after others ran. */
	EXPECT_LE(d.required[2], d.switches + d.foreign + 2);
	EXPECT_LE(labs(d.required[2] - d.required[3]), 2);
	EXPECT_LT(d.required[2], 200);
}

TEST(pipe_ping_pong_flushes_when_the_mm_changes)
{
	int to_child[2], to_parent[2], cpu, i, status;
	struct counts a, b, d;
	char c = 0;
	pid_t pid;

	SKIP_IF_NO_ASI();
	cpu = pin();
	ASSERT_GE(cpu, 0);
	ASSERT_EQ(0, pipe(to_child));
	ASSERT_EQ(0, pipe(to_parent));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		close(to_child[1]);
		close(to_parent[0]);
		for (;;) {
			if (read(to_child[0], &c, 1) != 1)
				_exit(0);
			if (write(to_parent[1], &c, 1) != 1)
				_exit(1);
		}
	}
	close(to_child[0]);
	close(to_parent[1]);
	/* Warm up: the child has run and faulted in what it needs. */
	ASSERT_EQ(1, write(to_child[1], &c, 1));
	ASSERT_EQ(1, read(to_parent[0], &c, 1));
	read_counts(cpu, &a);
	for (i = 0; i < 1000; i++) {
		if (write(to_child[1], &c, 1) != 1 || read(to_parent[0], &c, 1) != 1)
			break;
	}
	read_counts(cpu, &b);
	delta(&d, &a, &b);
	log_counts(_metadata, "1,000 round trips", &d);
	check_executed(_metadata, &d);
	close(to_child[1]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(1000, i);
	EXPECT_GE(d.switches, 2000);
	/*
	 * The copies to and from the pipe exit, each after user code ran: a
	 * control flush at each exit, none for the returns without one.
	 */
	EXPECT_LE(d.required[0], d.exits + d.switches + 2);
	EXPECT_LT(d.required[0], d.returns);
	/* Before user code, only for another process's training. */
	EXPECT_LE(d.before_user[0], d.switches + 2);
	/*
	 * The kernel copied the other process's data in the full space: it
	 * goes before each switch back, but not after exits of one's own.
	 */
	EXPECT_GE(d.required[2], d.switches / 2);
	EXPECT_LE(d.required[2], d.switches + d.foreign + 2);
}

static void futex_wait(int *word, int val)
{
	syscall(SYS_futex, word, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void futex_wake(int *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/*
 * Two processes hand a turn back and forth through a futex in shared
 * memory: the kernel touches no user data in the full space, so the CPU
 * stays in the nonsensitive space across the switches, and the only
 * actions due are control flushes when the mm changes.
 */
TEST(futex_ping_pong_flushes_control_only_when_the_mm_changes)
{
	struct counts a, b, d;
	int cpu, i, status;
	int *turn;
	pid_t pid;

	SKIP_IF_NO_ASI();
	cpu = pin();
	ASSERT_GE(cpu, 0);
	turn = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, turn);
	*turn = 0;
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		for (;;) {
			while (__atomic_load_n(turn, __ATOMIC_ACQUIRE) == 0)
				futex_wait(turn, 0);
			if (__atomic_load_n(turn, __ATOMIC_ACQUIRE) == 2)
				_exit(0);
			__atomic_store_n(turn, 0, __ATOMIC_RELEASE);
			futex_wake(turn);
		}
	}
	for (i = -10; i < 1000; i++) {
		if (!i)
			read_counts(cpu, &a);
		__atomic_store_n(turn, 1, __ATOMIC_RELEASE);
		futex_wake(turn);
		while (__atomic_load_n(turn, __ATOMIC_ACQUIRE) == 1)
			futex_wait(turn, 1);
	}
	read_counts(cpu, &b);
	__atomic_store_n(turn, 2, __ATOMIC_RELEASE);
	futex_wake(turn);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	delta(&d, &a, &b);
	log_counts(_metadata, "1,000 futex round trips", &d);
	check_executed(_metadata, &d);
	EXPECT_GE(d.switches, 2000);
	/*
	 * Each switch to the other process: its training goes, once, before
	 * user code (or at an exit in between, if there was one). Each
	 * counter is read with a read() of its own, so another process that
	 * runs between two of them can shift one at each edge.
	 */
	EXPECT_GE(d.before_user[0], d.switches - d.exits - 10);
	EXPECT_LE(d.before_user[0], d.switches + 2);
	EXPECT_LE(d.required[0], d.switches + d.exits + 2);
	/*
	 * No process's data was touched in the full space. An exit or
	 * foreign code while the counters are read is counted at the next
	 * return to user mode, inside the window: one at each edge.
	 */
	EXPECT_LE(d.required[2], d.exits + d.foreign + 2);
	EXPECT_LT(d.exits, d.switches / 10);
}

/*
 * The vulnerabilities files name ASI only where it mitigates: in the
 * spectre_v2 file, where its IBPB runs at exits and before user code and
 * so replaces the IBPB on context switch, and nowhere else.
 */
TEST(vulnerabilities_name_asi_only_where_it_mitigates)
{
	const char *dir = "/sys/devices/system/cpu/vulnerabilities/";
	bool ibpb_replaced, named_in_v2 = false;
	static const char *const files[] = {
		"gather_data_sampling", "itlb_multihit", "l1tf", "mds", "meltdown",
		"mmio_stale_data", "reg_file_data_sampling", "retbleed",
		"spec_rstack_overflow", "spec_store_bypass", "spectre_v1",
		"spectre_v2", "srbds", "tsx_async_abort", "vmscape",
		"indirect_target_selection", "tsa", "old_microcode",
	};
	char path[128], text[512];
	size_t i;
	FILE *f;

	SKIP_IF_NO_ASI();
	ASSERT_EQ(0, read_sites());
	ibpb_replaced = at_exits[0] && before_user[0];
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		snprintf(path, sizeof(path), "%s%s", dir, files[i]);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(text, sizeof(text), f))
			text[0] = 0;
		fclose(f);
		if (!strcmp(files[i], "spectre_v2")) {
			named_in_v2 = strstr(text, "IBPB: ASI");
			TH_LOG("spectre_v2: %s", strtok(text, "\n"));
			continue;
		}
		EXPECT_EQ(NULL, strstr(text, "ASI")) TH_LOG("%s: %s", files[i], text);
	}
	/* spectre_v2 says "IBPB: ASI" exactly when ASI's IBPB replaces it. */
	EXPECT_EQ(ibpb_replaced, named_in_v2);
}

/* Run last: the counters since the reset of the first test. */
TEST(unsupported_actions_never_execute)
{
	char line[256], name[32], support[32];
	int cpu, a, i;
	bool run[NR_ACTIONS];
	long req, exe;
	FILE *f;

	SKIP_IF_NO_ASI();
	f = fopen(ACTIONS, "r");
	ASSERT_NE(NULL, f);
	for (i = 0; i < NR_ACTIONS && fgets(line, sizeof(line), f); i++) {
		ASSERT_EQ(2, sscanf(line, "%31[a-z0-9_]: %31[a-z],", name, support));
		ASSERT_STREQ(action_names[i], name);
		run[i] = !strstr(line, "at exits: no, before user code: no");
		if (!strcmp(support, "unsupported"))
			ASSERT_FALSE(run[i]);
		TH_LOG("%s", strtok(line, "\n"));
	}
	fclose(f);
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		for (a = 0; a < NR_ACTIONS; a++) {
			char key[64];

			snprintf(key, sizeof(key), "required_%s", action_names[a]);
			req = read_cpu_key(ACTIONS, key, cpu);
			snprintf(key, sizeof(key), "executed_%s", action_names[a]);
			exe = read_cpu_key(ACTIONS, key, cpu);
			if (req < 0)
				break;
			if (!run[a])
				EXPECT_EQ(0, exe);
			/*
			 * An exit is counted as required at the next return to
			 * user mode, and this read may come from inside one:
			 * one more. An NMI that left may run the armed actions
			 * once more.
			 */
			EXPECT_LE(exe, req + 1 + read_cpu_key(TRANSITIONS, "exits_nmi", cpu));
		}
		if (a < NR_ACTIONS)
			break;
	}
	EXPECT_GT(cpu, 0);
}

TEST_HARNESS_MAIN
