// SPDX-License-Identifier: GPL-2.0
/*
 * Address Space Isolation: workloads for scripts/asi bench.
 *
 * Runs each workload for a fixed number of operations and prints one line
 * per workload:
 *
 *   bench <name> ops=<n> ns=<elapsed> <counter>=<delta> ...
 *
 * where the counters are those of /sys/kernel/debug/asi/stats and the
 * totals of /sys/kernel/debug/asi/transitions and .../actions that move
 * while the workload runs (absent when the kernel has no ASI). The host
 * side boots each ASI mode, runs this and compares the lines. Not a test:
 * it checks nothing but that each operation succeeds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../kselftest.h"

#define STATS		"/sys/kernel/debug/asi/stats"
#define TRANSITIONS	"/sys/kernel/debug/asi/transitions"
#define ACTIONS		"/sys/kernel/debug/asi/actions"
#define MAX_COUNTERS	40

struct counters {
	int n;
	char name[MAX_COUNTERS][64];
	long long value[MAX_COUNTERS];
};

/* The numeric counters of the stats file that change under load. */
static const char *const wanted[] = {
	"user_pages_allocated", "flips_to_sensitive", "flips_to_nonsensitive",
	"tlb_flushes", "zeroed_pages", "refused_flips", "ns_pgds_created",
	"enters", "exits_page_fault", "exits_switch_mm", "exits_cr3_read",
	"exits_tlb_flush", "exits_nmi", "exits_other", "switches",
	"cr3_writes_flush", "cr3_writes_noflush",
	"required_ibpb", "required_rsb_fill", "required_l1d_flush", "required_verw",
	"executed_ibpb", "executed_rsb_fill", "executed_l1d_flush", "executed_verw",
	"required_before_user_ibpb", "required_before_user_rsb_fill",
	"required_before_user_l1d_flush", "required_before_user_verw",
	"returns_to_user", "mm_switches", "foreign_returns",
};

/* Append the wanted "key: N" counters of @path to @c. */
static void read_file_counters(struct counters *c, const char *path)
{
	char line[512], key[64];
	long long v;
	FILE *f;

	f = fopen(path, "r");
	if (!f)
		return;
	while (c->n < MAX_COUNTERS && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %lld", key, &v) != 2)
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(wanted); i++) {
			if (!strcmp(key, wanted[i])) {
				snprintf(c->name[c->n], sizeof(c->name[0]), "%s", key);
				c->value[c->n++] = v;
			}
		}
	}
	fclose(f);
}

static void read_counters(struct counters *c)
{
	c->n = 0;
	read_file_counters(c, STATS);
	read_file_counters(c, TRANSITIONS);
	read_file_counters(c, ACTIONS);
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "asi_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static char buf[64 * 1024];
static int fd_a = -1, fd_b = -1;
static const char *tmpfile_path = "/tmp/asi_bench.dat";
#define TMPFILE_SIZE	(16 << 20)

static void op_getpid(long i)
{
	(void)i;
	syscall(SYS_getpid);
}

static void op_devzero(long i)
{
	(void)i;
	if (read(fd_a, buf, 4096) != 4096)
		die("read /dev/zero");
}

static void op_devnull(long i)
{
	(void)i;
	if (write(fd_b, buf, 4096) != 4096)
		die("write /dev/null");
}

static unsigned long next_offset(long i)
{
	unsigned long x = (unsigned long)i * 2654435761UL;

	return (x % (TMPFILE_SIZE / 4096)) * 4096;
}

static void op_tmpfs_read(long i)
{
	if (pread(fd_a, buf, 4096, next_offset(i)) != 4096)
		die("pread tmpfs");
}

static void op_tmpfs_write(long i)
{
	if (pwrite(fd_a, buf, 4096, next_offset(i)) != 4096)
		die("pwrite tmpfs");
}

static int ping[2], pong[2];

static void op_pipe(long i)
{
	char c = (char)i;

	if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
		die("pipe ping-pong");
}

static void op_fork_exit(long i)
{
	pid_t pid = fork();

	(void)i;
	if (pid < 0)
		die("fork");
	if (!pid)
		_exit(0);
	waitpid(pid, NULL, 0);
}

static void op_fork_exec(long i)
{
	pid_t pid = fork();

	(void)i;
	if (pid < 0)
		die("fork");
	if (!pid) {
		execl("/bin/true", "true", NULL);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
}

static void op_mmap_touch(long i)
{
	size_t len = 1 << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)i;
	if (p == MAP_FAILED)
		die("mmap");
	for (size_t off = 0; off < len; off += 4096)
		p[off] = 1;
	munmap(p, len);
}

static int tping[2], tpong[2];

static void *thread_echo(void *arg)
{
	char c;

	(void)arg;
	while (read(tping[0], &c, 1) == 1 && c)
		if (write(tpong[1], &c, 1) != 1)
			break;
	return NULL;
}

static void op_thread_switch(long i)
{
	char c = 1 | (char)i;

	if (write(tping[1], &c, 1) != 1 || read(tpong[0], &c, 1) != 1)
		die("thread ping-pong");
}

static void op_compress(long i)
{
	(void)i;
	if (system("gzip -c /tmp/asi_bench.dat > /dev/null"))
		die("gzip");
}

/*
 * A file on ext4 on a block device, which scripts/asi's guest mounts at
 * EXT4_DIR: 64 KiB writes, written back every 16th (fsync), and 64 KiB reads
 * of a file dropped from the page cache every 256th, so that they come from
 * the disk through readahead. Skipped when EXT4_DIR is not an ext4 mount.
 */
#define EXT4_DIR	"/mnt/ext4"
#define EXT4_FILE	EXT4_DIR "/asi_bench.dat"
#define EXT4_CHUNKS	256

static void op_ext4_write(long i)
{
	if (pwrite(fd_a, buf, sizeof(buf), (i % EXT4_CHUNKS) * sizeof(buf)) != sizeof(buf))
		die("pwrite ext4");
	if (i % 16 == 15 && fsync(fd_a))
		die("fsync ext4");
}

static void op_ext4_read_cold(long i)
{
	if (i % EXT4_CHUNKS == 0 && posix_fadvise(fd_a, 0, 0, POSIX_FADV_DONTNEED))
		die("fadvise ext4");
	if (pread(fd_a, buf, sizeof(buf), (i % EXT4_CHUNKS) * sizeof(buf)) != sizeof(buf))
		die("pread ext4");
}

static int ext4_mounted(void)
{
	char src[128], dir[256], type[32];
	int found = 0;
	FILE *f = fopen("/proc/mounts", "r");

	if (!f)
		return 0;
	while (!found && fscanf(f, "%127s %255s %31s %*s %*d %*d", src, dir, type) == 3)
		found = !strcmp(dir, EXT4_DIR) && !strcmp(type, "ext4");
	fclose(f);
	return found;
}

static void open_ext4_file(void)
{
	fd_a = open(EXT4_FILE, O_RDWR | O_CREAT, 0600);
	if (fd_a < 0)
		die("open ext4 file");
	memset(buf, 0x3c, sizeof(buf));
	for (int i = 0; i < EXT4_CHUNKS; i++)
		op_ext4_write(i);
}

static void close_ext4_file(void)
{
	close(fd_a);
	fd_a = -1;
	unlink(EXT4_FILE);
}

struct workload {
	const char *name;
	long ops;
	void (*op)(long i);
	void (*setup)(void);
	void (*teardown)(void);
};

static void open_zero(void)
{
	fd_a = open("/dev/zero", O_RDONLY);
	if (fd_a < 0)
		die("open /dev/zero");
}

static void open_null(void)
{
	fd_b = open("/dev/null", O_WRONLY);
	if (fd_b < 0)
		die("open /dev/null");
}

static void open_tmpfile(void)
{
	fd_a = open(tmpfile_path, O_RDWR);
	if (fd_a < 0)
		die("open tmpfs file");
}

static void close_fds(void)
{
	if (fd_a >= 0)
		close(fd_a);
	if (fd_b >= 0)
		close(fd_b);
	fd_a = fd_b = -1;
}

static pid_t echo_pid;

static void start_echo(void)
{
	if (pipe(ping) || pipe(pong))
		die("pipe");
	echo_pid = fork();
	if (echo_pid < 0)
		die("fork");
	if (!echo_pid) {
		char c;

		/* Keep only this side's ends, so that closing ping[1] ends the loop. */
		close(ping[1]);
		close(pong[0]);
		while (read(ping[0], &c, 1) == 1)
			if (write(pong[1], &c, 1) != 1)
				break;
		_exit(0);
	}
}

static void stop_echo(void)
{
	close(ping[1]);
	waitpid(echo_pid, NULL, 0);
	close(ping[0]);
	close(pong[0]);
	close(pong[1]);
}

static pthread_t echo_thread;

static void start_thread(void)
{
	if (pipe(tping) || pipe(tpong))
		die("pipe");
	if (pthread_create(&echo_thread, NULL, thread_echo, NULL))
		die("pthread_create");
}

static void stop_thread(void)
{
	char c = 0;

	if (write(tping[1], &c, 1) != 1)
		die("stop thread");
	pthread_join(echo_thread, NULL);
	close(tping[0]);
	close(tping[1]);
	close(tpong[0]);
	close(tpong[1]);
}

/*
 * Two processes on one CPU hand a turn back and forth through a futex in
 * shared memory: a switch between processes per half round trip, and no
 * user data touched by the kernel.
 */
static int *futex_turn;
static pid_t futex_pid;
static cpu_set_t futex_saved_cpus;

static void futex_op(int *word, int op, int val)
{
	syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

static void start_futex(void)
{
	cpu_set_t one;

	futex_turn = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (futex_turn == MAP_FAILED)
		die("mmap");
	*futex_turn = 0;
	if (sched_getaffinity(0, sizeof(futex_saved_cpus), &futex_saved_cpus))
		die("sched_getaffinity");
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		die("sched_setaffinity");
	futex_pid = fork();
	if (futex_pid < 0)
		die("fork");
	if (!futex_pid) {
		for (;;) {
			int t;

			while ((t = __atomic_load_n(futex_turn, __ATOMIC_ACQUIRE)) == 0)
				futex_op(futex_turn, FUTEX_WAIT, 0);
			if (t == 2)
				_exit(0);
			__atomic_store_n(futex_turn, 0, __ATOMIC_RELEASE);
			futex_op(futex_turn, FUTEX_WAKE, 1);
		}
	}
}

static void op_futex(long i)
{
	__atomic_store_n(futex_turn, 1, __ATOMIC_RELEASE);
	futex_op(futex_turn, FUTEX_WAKE, 1);
	while (__atomic_load_n(futex_turn, __ATOMIC_ACQUIRE) == 1)
		futex_op(futex_turn, FUTEX_WAIT, 1);
}

static void stop_futex(void)
{
	__atomic_store_n(futex_turn, 2, __ATOMIC_RELEASE);
	futex_op(futex_turn, FUTEX_WAKE, 1);
	waitpid(futex_pid, NULL, 0);
	munmap(futex_turn, 4096);
	sched_setaffinity(0, sizeof(futex_saved_cpus), &futex_saved_cpus);
}

static const struct workload workloads[] = {
	{ "getpid",		100000,	op_getpid },
	{ "devzero_read_4k",	20000,	op_devzero,	open_zero,	close_fds },
	{ "devnull_write_4k",	20000,	op_devnull,	open_null,	close_fds },
	{ "tmpfs_read_4k",	20000,	op_tmpfs_read,	open_tmpfile,	close_fds },
	{ "tmpfs_write_4k",	20000,	op_tmpfs_write,	open_tmpfile,	close_fds },
	{ "pipe_pingpong",	5000,	op_pipe,	start_echo,	stop_echo },
	{ "thread_switch",	5000,	op_thread_switch, start_thread,	stop_thread },
	{ "futex_pingpong",	5000,	op_futex,	start_futex,	stop_futex },
	{ "fork_exit",		300,	op_fork_exit },
	{ "fork_exec",		200,	op_fork_exec },
	{ "mmap_touch_1m",	300,	op_mmap_touch },
	{ "gzip_16m",		3,	op_compress },
	{ "ext4_write_64k",	1024,	op_ext4_write,	open_ext4_file,	close_ext4_file },
	{ "ext4_read_cold_64k",	1024,	op_ext4_read_cold, open_ext4_file, close_ext4_file },
};

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;
	int fd;

	if (access(STATS, R_OK))
		mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);

	/* A 16 MiB tmpfs file, for the tmpfs and compression workloads. */
	fd = open(tmpfile_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("create tmpfs file");
	for (int i = 0; i < TMPFILE_SIZE / (int)sizeof(buf); i++) {
		memset(buf, i * 7 + 1, sizeof(buf));
		if (write(fd, buf, sizeof(buf)) != sizeof(buf))
			die("fill tmpfs file");
	}
	close(fd);

	for (size_t w = 0; w < ARRAY_SIZE(workloads); w++) {
		const struct workload *wl = &workloads[w];
		struct counters before, after;
		long long t0, t1;

		if (only && strcmp(only, wl->name))
			continue;
		if (!strncmp(wl->name, "ext4_", 5) && !ext4_mounted())
			continue;
		if (wl->setup)
			wl->setup();
		read_counters(&before);
		t0 = now_ns();
		for (long i = 0; i < wl->ops; i++)
			wl->op(i);
		t1 = now_ns();
		read_counters(&after);
		if (wl->teardown)
			wl->teardown();

		printf("bench %s ops=%ld ns=%lld", wl->name, wl->ops, t1 - t0);
		for (int i = 0; i < after.n && i < before.n; i++)
			printf(" %s=%lld", after.name[i], after.value[i] - before.value[i]);
		printf("\n");
		fflush(stdout);
	}
	unlink(tmpfile_path);
	return 0;
}
