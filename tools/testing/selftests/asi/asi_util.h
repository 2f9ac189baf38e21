/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the ASI selftests: reading the "key: N" files of
 * /sys/kernel/debug/asi (totals and per CPU), writing control files, and
 * asking the verifier and the page file.
 */
#ifndef ASI_UTIL_H
#define ASI_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

/*
 * Value of "key: N" in @path (the first number after the colon), -1 if the
 * file or the key is missing. Mounts debugfs if the file is not there.
 */
static inline long read_key(const char *path, const char *key)
{
	size_t klen = strlen(key);
	char line[512];
	long val = -1;
	FILE *f;

	f = fopen(path, "r");
	if (!f && errno == ENOENT)
		mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	if (!f)
		f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			val = strtol(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return val;
}

/*
 * Value for CPU @cpu of "key: total (cpu0=N cpu1=N ...)" in @path, -1 if the
 * file, the key or the CPU is missing.
 */
static inline long read_cpu_key(const char *path, const char *key, int cpu)
{
	size_t klen = strlen(key);
	char line[1024], item[32];
	long val = -1;
	char *p;
	FILE *f;

	f = fopen(path, "r");
	if (!f)
		return -1;
	snprintf(item, sizeof(item), "cpu%d=", cpu);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) || line[klen] != ':')
			continue;
		p = strstr(line, item);
		if (p && (p[-1] == '(' || p[-1] == ' '))
			val = strtol(p + strlen(item), NULL, 10);
		break;
	}
	fclose(f);
	return val;
}

/* Write @val to @path: 0, or a negative errno (-EIO for a short write). */
static inline int write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	ssize_t len;
	int err;

	if (fd < 0)
		return -errno;
	len = write(fd, val, strlen(val));
	err = len < 0 ? -errno : 0;
	close(fd);
	if (err)
		return err;
	return len == (ssize_t)strlen(val) ? 0 : -EIO;
}

#define ASI_DIR		"/sys/kernel/debug/asi"

/* Problems the verifier finds now; -2 if ASI has no tables (ASI off). */
static inline long verifier_problems(void)
{
	if (read_key(ASI_DIR "/verify", "ns_pgds") <= 0)
		return -2;
	return read_key(ASI_DIR "/verify", "problems");
}

/* For kselftest_harness tests: skip the test when ASI has no tables. */
#define SKIP_IF_NO_TABLES()						\
	do {								\
		if (verifier_problems() == -2)					\
			SKIP(return, "ASI is off: no nonsensitive tables");	\
	} while (0)

/*
 * Whether ASI's direct map maps @pfn (1 or 0) and whether @pfn is sensitive
 * (*sensitive, 1 or 0); -1 if the page file cannot tell.
 */
static inline int page_mapped(unsigned long pfn, long *sensitive)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lu\n", pfn);
	if (write_str(ASI_DIR "/page", buf))
		return -1;
	*sensitive = read_key(ASI_DIR "/page", "sensitive");
	return read_key(ASI_DIR "/page", "mapped");
}

/* The page size the tests' patterns are written in. */
#define ASI_PATTERN_PAGE	4096UL

/*
 * Word @word of page @page of a test's data: different for every page and
 * word, so that a page that comes back changed or in another page's place
 * shows.
 */
static inline uint64_t pattern(unsigned long page, unsigned long word)
{
	return (page * 0x9e3779b97f4a7c15ULL) ^ (word * 0x2545f4914f6cdd1dULL);
}

/* Fill the page at @p with page @page's pattern. */
static inline void fill(char *p, unsigned long page)
{
	uint64_t *w = (uint64_t *)p;
	unsigned long i;

	for (i = 0; i < ASI_PATTERN_PAGE / sizeof(*w); i++)
		w[i] = pattern(page, i);
}

/* Whether the page at @p holds page @page's pattern. */
static inline int intact(const char *p, unsigned long page)
{
	const uint64_t *w = (const uint64_t *)p;
	unsigned long i;

	for (i = 0; i < ASI_PATTERN_PAGE / sizeof(*w); i++)
		if (w[i] != pattern(page, i))
			return 0;
	return 1;
}

#endif /* ASI_UTIL_H */
