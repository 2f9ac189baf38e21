// SPDX-License-Identifier: GPL-2.0
/*
 * Address Space Isolation: run workloads that allocate user data of every
 * kind ASI keeps out of its nonsensitive tables (process memory, tmpfs page
 * cache, pipe buffers) and check, during and after each, that the verifier
 * in /sys/kernel/debug/asi/verify finds no mapping of a sensitive page and
 * no unmapped kernel memory. Skips when ASI is off (no tables to verify).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "../kselftest_harness.h"
#include "asi_util.h"

#define MIB		(1024 * 1024)

TEST(fork_exec_loop)
{
	int i;

	SKIP_IF_NO_TABLES();
	for (i = 0; i < 50; i++) {
		pid_t pid = fork();
		int status;

		ASSERT_GE(pid, 0);
		if (!pid) {
			execl("/bin/sh", "sh", "-c", "exit 7", NULL);
			_exit(1);
		}
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(7, WEXITSTATUS(status));
	}
	ASSERT_EQ(0, verifier_problems());
}

TEST(mmap_mprotect_munmap)
{
	size_t len = 8 * MIB;
	int i;

	SKIP_IF_NO_TABLES();
	for (i = 0; i < 10; i++) {
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		size_t off;

		ASSERT_NE(MAP_FAILED, p);
		for (off = 0; off < len; off += 4096)
			p[off] = (char)(off >> 12) | 1;
		ASSERT_EQ(0, mprotect(p, len, PROT_READ));
		for (off = 0; off < len; off += 4096)
			ASSERT_EQ((char)(off >> 12) | 1, p[off]);
		/* The process's memory is held: none of it may be mapped. */
		if (i == 0)
			ASSERT_EQ(0, verifier_problems());
		ASSERT_EQ(0, munmap(p, len));
	}
	ASSERT_EQ(0, verifier_problems());
}

TEST(tmpfs_write_read)
{
	const char *path = "/tmp/asi_tables_test";
	static char buf[64 * 1024], back[64 * 1024];
	int fd, i;

	SKIP_IF_NO_TABLES();
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_GE(fd, 0);
	for (i = 0; i < 128; i++) {
		memset(buf, i, sizeof(buf));
		ASSERT_EQ(sizeof(buf), write(fd, buf, sizeof(buf)));
	}
	ASSERT_EQ(0, lseek(fd, 0, SEEK_SET));
	for (i = 0; i < 128; i++) {
		memset(buf, i, sizeof(buf));
		ASSERT_EQ(sizeof(back), read(fd, back, sizeof(back)));
		ASSERT_EQ(0, memcmp(buf, back, sizeof(buf)));
	}
	/* 8 MiB of page cache is held. */
	ASSERT_EQ(0, verifier_problems());
	close(fd);
	ASSERT_EQ(0, unlink(path));
	ASSERT_EQ(0, verifier_problems());
}

TEST(pipe_ping_pong)
{
	int to_child[2], to_parent[2], i, status;
	char msg[4096], got[4096];
	pid_t pid;

	SKIP_IF_NO_TABLES();
	ASSERT_EQ(0, pipe(to_child));
	ASSERT_EQ(0, pipe(to_parent));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		for (i = 0; i < 500; i++) {
			if (read(to_child[0], got, sizeof(got)) != sizeof(got))
				_exit(1);
			if (write(to_parent[1], got, sizeof(got)) != sizeof(got))
				_exit(2);
		}
		_exit(0);
	}
	for (i = 0; i < 500; i++) {
		memset(msg, i, sizeof(msg));
		ASSERT_EQ(sizeof(msg), write(to_child[1], msg, sizeof(msg)));
		ASSERT_EQ(sizeof(got), read(to_parent[0], got, sizeof(got)));
		ASSERT_EQ(0, memcmp(msg, got, sizeof(msg)));
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(0, verifier_problems());
}

/* Bring the loopback interface up; 0 or -1. */
static int loopback_up(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int s = socket(AF_INET, SOCK_DGRAM, 0), ret = -1;

	if (s < 0)
		return -1;
	if (!ioctl(s, SIOCGIFFLAGS, &ifr)) {
		ifr.ifr_flags |= IFF_UP;
		ret = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
	return ret;
}

/*
 * Send 4 MiB from a child process, which writes to @tx, to this one, which
 * reads from @rx, each 64 KiB chunk filled with its number; 0 if all arrived
 * intact. Closes both.
 */
static int stream_4m(int tx, int rx)
{
	static char buf[64 * 1024], want[64 * 1024];
	int i, status, bad = 0;
	size_t got;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		close(rx);
		for (i = 0; i < 64; i++) {
			memset(buf, i + 1, sizeof(buf));
			if (write(tx, buf, sizeof(buf)) != sizeof(buf))
				_exit(1);
		}
		_exit(0);
	}
	close(tx);
	for (i = 0; i < 64 && !bad; i++) {
		memset(want, i + 1, sizeof(want));
		for (got = 0; got < sizeof(buf);) {
			ssize_t n = read(rx, buf + got, sizeof(buf) - got);

			if (n <= 0) {
				bad = 1;
				break;
			}
			got += n;
		}
		bad |= memcmp(buf, want, sizeof(buf)) != 0;
	}
	close(rx);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		bad = 1;
	return bad ? -1 : 0;
}

/*
 * Unix and TCP sockets over loopback carry data intact and leave the tables
 * clean. Socket buffers are not sensitive yet (slab and page fragments):
 * this checks that the kernel's networking works in the nonsensitive space,
 * not that the data stays out of it.
 */
TEST(sockets_over_loopback)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof(addr);
	int sv[2], lsn, tx, rx;

	SKIP_IF_NO_TABLES();
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_EQ(0, stream_4m(sv[1], sv[0]));
	ASSERT_EQ(0, verifier_problems());

	if (loopback_up())
		SKIP(return, "no loopback interface (CONFIG_INET)");
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lsn = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_LE(0, lsn);
	ASSERT_EQ(0, bind(lsn, (struct sockaddr *)&addr, sizeof(addr)));
	ASSERT_EQ(0, listen(lsn, 1));
	ASSERT_EQ(0, getsockname(lsn, (struct sockaddr *)&addr, &len));
	tx = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_LE(0, tx);
	ASSERT_EQ(0, connect(tx, (struct sockaddr *)&addr, sizeof(addr)));
	rx = accept(lsn, NULL, NULL);
	ASSERT_LE(0, rx);
	close(lsn);
	ASSERT_EQ(0, stream_4m(tx, rx));
	ASSERT_EQ(0, verifier_problems());
}

static void *toucher(void *arg)
{
	size_t len = 2 * MIB, off;
	char *p = malloc(len);

	if (!p)
		return (void *)1;
	for (off = 0; off < len; off += 4096)
		p[off] = 1;
	free(p);
	return NULL;
}

TEST(threads)
{
	pthread_t t[4];
	void *ret;
	int i;

	SKIP_IF_NO_TABLES();
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, toucher, NULL));
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, pthread_join(t[i], &ret));
		ASSERT_EQ(NULL, ret);
	}
	ASSERT_EQ(0, verifier_problems());
}

#define FAIL_DIR	"/sys/kernel/debug/fail_asi_ns_pgd"

/* Make the next allocation of a per-mm nonsensitive table fail. */
static int fail_next_ns_pgd(void)
{
	if (write_str(FAIL_DIR "/verbose", "0") || write_str(FAIL_DIR "/times", "1"))
		return -1;
	return write_str(FAIL_DIR "/probability", "100");
}

/*
 * Without its nonsensitive table an mm cannot be created: fork and exec
 * fail with ENOMEM, and no table is left behind.
 */
TEST(fork_and_exec_fail_without_ns_pgd)
{
	long live, failures, created;
	int status;
	pid_t pid;

	SKIP_IF_NO_TABLES();
	if (access(FAIL_DIR "/probability", W_OK))
		SKIP(return, "no fail_asi_ns_pgd (CONFIG_FAULT_INJECTION_DEBUG_FS)");
	live = read_key(ASI_DIR "/stats", "ns_pgds");
	failures = read_key(ASI_DIR "/stats", "ns_pgd_failures");
	created = read_key(ASI_DIR "/stats", "ns_pgds_created");
	ASSERT_GT(live, 0);

	ASSERT_EQ(0, fail_next_ns_pgd());
	pid = fork();
	if (!pid)
		_exit(0);
	ASSERT_EQ(-1, pid);
	ASSERT_EQ(ENOMEM, errno);

	ASSERT_EQ(0, fail_next_ns_pgd());
	execl("/bin/sh", "sh", "-c", "exit 0", NULL);
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_EQ(0, write_str(FAIL_DIR "/probability", "0"));

	ASSERT_EQ(failures + 2, read_key(ASI_DIR "/stats", "ns_pgd_failures"));
	ASSERT_EQ(created, read_key(ASI_DIR "/stats", "ns_pgds_created"));
	ASSERT_EQ(live, read_key(ASI_DIR "/stats", "ns_pgds"));

	/* And once allocations work again, so does fork. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid)
		_exit(3);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(3, WEXITSTATUS(status));
	ASSERT_EQ(0, verifier_problems());
}

#define KFENCE_STATS	"/sys/kernel/debug/kfence/stats"

/*
 * KFENCE protects the page of an object it frees (and the guard pages around
 * every object) by writing the kernel's direct-map PTE itself, not through
 * CPA. ASI's direct map must follow, or a freed object stays mapped there
 * and the verifier finds an entry that grants more than the kernel's
 * (review m2). Objects come from KFENCE once per sample interval (100 ms by
 * default); opening files gives it short-lived slab objects to take.
 */
TEST(kfence_protection_reaches_the_nonsensitive_map)
{
	long start, frees = -1;
	int i, fd;

	SKIP_IF_NO_TABLES();
	start = read_key(KFENCE_STATS, "total frees");
	if (start < 0 || read_key(KFENCE_STATS, "enabled") != 1)
		SKIP(return, "KFENCE is not enabled");
	for (i = 0; i < 1000; i++) {
		fd = open("/proc/self/stat", O_RDONLY);
		if (fd >= 0)
			close(fd);
		frees = read_key(KFENCE_STATS, "total frees");
		if (frees >= start + 4)
			break;
		usleep(10000);
	}
	ASSERT_LE(start + 4, frees) {
		TH_LOG("KFENCE freed %ld objects in 10 s", frees - start);
	}
	ASSERT_EQ(0, verifier_problems());
}

/* The counters show that user pages were made sensitive at all. */
TEST(user_pages_are_counted)
{
	SKIP_IF_NO_TABLES();
	ASSERT_GT(read_key(ASI_DIR "/stats", "sensitive_pages"), 0);
	ASSERT_GT(read_key(ASI_DIR "/stats", "flips_to_sensitive"), 0);
	ASSERT_GT(read_key(ASI_DIR "/stats", "tlb_flushes"), 0);
}

TEST_HARNESS_MAIN
