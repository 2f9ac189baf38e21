// SPDX-License-Identifier: GPL-2.0
/*
 * Memory that goes offline leaves ASI's nonsensitive direct map as a whole,
 * and memory that comes online starts sensitive: nothing of it is mapped
 * until the kernel allocates a page of it for itself, zeroed. The test
 * takes a memory block offline through sysfs, checks every 16th page of it
 * with /sys/kernel/debug/asi/page, brings it back and checks the verifier. Needs
 * root; skips when ASI is off, without memory hotplug, or when no block can
 * be taken offline.
 */
#include <dirent.h>
#include <stdint.h>

#include "../kselftest_harness.h"
#include "asi_util.h"

#define MEM_DIR		"/sys/devices/system/memory"
#define PAGE		4096UL

static int block_state(long block, const char *want)
{
	char path[96];

	snprintf(path, sizeof(path), MEM_DIR "/memory%ld/state", block);
	return write_str(path, want);
}

/* The highest memory block number, -1 if there is none. */
static long last_block(void)
{
	DIR *d = opendir(MEM_DIR);
	struct dirent *e;
	long n, last = -1;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		if (sscanf(e->d_name, "memory%ld", &n) == 1 && n > last)
			last = n;
	}
	closedir(d);
	return last;
}

FIXTURE(hotplug) {
	long block;
};

FIXTURE_SETUP(hotplug)
{
	self->block = -1;
}

FIXTURE_TEARDOWN(hotplug)
{
	if (self->block >= 0)
		block_state(self->block, "online");
}

TEST_F_TIMEOUT(hotplug, offline_memory_leaves_the_direct_map, 120)
{
	unsigned long bytes, pages, first, i, mapped = 0, not_sensitive = 0;
	long b, last;
	char buf[32];
	FILE *f;

	SKIP_IF_NO_TABLES();
	f = fopen(MEM_DIR "/block_size_bytes", "r");
	if (!f)
		SKIP(return, "no memory hotplug in this kernel");
	ASSERT_EQ(1, fscanf(f, "%lx", &bytes));
	fclose(f);
	pages = bytes / PAGE;
	last = last_block();
	ASSERT_LE(0, last);
	/* The highest blocks are the likeliest to hold nothing that cannot move. */
	for (b = last; b > last - 8 && b >= 0; b--) {
		if (!block_state(b, "offline")) {
			self->block = b;
			break;
		}
	}
	if (self->block < 0)
		SKIP(return, "no memory block among the last 8 could be taken offline");
	first = self->block * pages;
	/* Every 16th page: under TCG, asking about all 32768 takes 40s. */
	for (i = 0; i < pages; i += 16) {
		long sensitive = -1;
		int m = page_mapped(first + i, &sensitive);

		ASSERT_LE(0, m);
		mapped += m;
		not_sensitive += sensitive != 1;
	}
	ASSERT_EQ(0, mapped) {
		TH_LOG("%lu of %lu pages checked of offline block %ld are in the nonsensitive direct map",
		       mapped, pages / 16, self->block);
	}
	ASSERT_EQ(0, not_sensitive);
	ASSERT_EQ(0, verifier_problems());

	ASSERT_EQ(0, block_state(self->block, "online"));
	self->block = -1;
	ASSERT_EQ(0, verifier_problems());
	snprintf(buf, sizeof(buf), "%lu\n", first);
	ASSERT_EQ(0, write_str(ASI_DIR "/page", buf));
	TH_LOG("block %ld (frames %lu-%lu) went offline and online again", b, first,
	       first + pages - 1);
}

TEST_HARNESS_MAIN
