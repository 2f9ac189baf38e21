// SPDX-License-Identifier: GPL-2.0
/*
 * Pages that hold user data keep out of ASI's nonsensitive direct map when
 * the kernel moves or copies them: soft offlining and compaction migrate
 * them, a collapse into a transparent huge page copies them, and hugetlb
 * pages enter their pool and migrate. The test follows its own pages
 * through /proc/self/pagemap and asks /sys/kernel/debug/asi/page about each
 * frame, then checks that the data arrived intact and that the verifier
 * finds nothing. Pages that go to swap and come back are followed the same
 * way. Needs root; skips when ASI is off or the kernel lacks compaction,
 * THP, hugetlb, memory-failure handling, a second NUMA node or swap.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/mempolicy.h>

#include "../kselftest_harness.h"
#include "asi_util.h"

#define THP_DIR		"/sys/kernel/mm/transparent_hugepage"
#define PAGE		4096UL
#define MIB		(1024 * 1024UL)
#define HPAGE		(2 * MIB)

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE	25
#endif
#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT	21
#endif

/* Whether @va is swapped out (pagemap bit 62), -1 if pagemap cannot tell. */
static int swapped_out(int pagemap, const void *va)
{
	uint64_t e;
	off_t off = (uintptr_t)va / PAGE * sizeof(e);

	if (pread(pagemap, &e, sizeof(e), off) != sizeof(e))
		return -1;
	return !!(e & (1ULL << 62));
}

/* The frame behind @va, 0 if none is mapped or pagemap hides it. */
static unsigned long pfn_of(int pagemap, const void *va)
{
	uint64_t e;
	off_t off = (uintptr_t)va / PAGE * sizeof(e);

	if (pread(pagemap, &e, sizeof(e), off) != sizeof(e))
		return 0;
	if (!(e & (1ULL << 63)))
		return 0;
	return e & ((1ULL << 55) - 1);
}

/*
 * @n anonymous pages that never become part of a huge page, page i filled
 * with pattern(i, ...); MAP_FAILED on failure.
 */
static char *map_filled(unsigned long n)
{
	char *mem = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned long i;

	if (mem == MAP_FAILED)
		return mem;
	if (madvise(mem, n * PAGE, MADV_NOHUGEPAGE)) {
		munmap(mem, n * PAGE);
		return MAP_FAILED;
	}
	for (i = 0; i < n; i++)
		fill(mem + i * PAGE, i);
	return mem;
}

/* A 2 MiB-aligned anonymous area of @len bytes, MAP_FAILED on failure. */
static char *map_aligned(unsigned long len)
{
	char *p = mmap(NULL, len + HPAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		return p;
	a = (char *)(((uintptr_t)p + HPAGE - 1) & ~(HPAGE - 1));
	if (a > p)
		munmap(p, a - p);
	munmap(a + len, p + HPAGE - a);
	return a;
}

/* The number in @path, -1 if there is none. */
static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long val;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &val) != 1)
		val = -1;
	fclose(f);
	return val;
}

static int write_long(const char *path, long val)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%ld\n", val);
	return write_str(path, buf);
}

#define SOFT_OFFLINE	"/proc/sys/vm/enable_soft_offline"

/*
 * MADV_SOFT_OFFLINE on @len bytes at @p, with soft offlining turned on for
 * the call if it was off (mm's hugetlb-soft-offline selftest turns it off
 * and on): 0, or -1 with errno set.
 */
static int soft_offline(void *p, unsigned long len)
{
	long was = read_long(SOFT_OFFLINE);
	int ret, err;

	if (was == 0)
		write_long(SOFT_OFFLINE, 1);
	ret = madvise(p, len, MADV_SOFT_OFFLINE);
	err = errno;
	if (was == 0)
		write_long(SOFT_OFFLINE, 0);
	errno = err;
	return ret;
}

TEST(page_file_rejects_bad_input)
{
	SKIP_IF_NO_TABLES();
	ASSERT_EQ(-EINVAL, write_str(ASI_DIR "/page", "bogus\n"));
	ASSERT_EQ(-EINVAL, write_str(ASI_DIR "/page", "-1\n"));
	/* No direct map covers the last frame number. */
	ASSERT_EQ(-EINVAL, write_str(ASI_DIR "/page", "0xfffffffffffff\n"));
}

/*
 * Soft offlining a page in use migrates it through migrate_pages() into a
 * page from alloc_migration_target(), as CMA, memory offlining and mbind()
 * do, and retires the old frame.
 */
TEST(soft_offline_keeps_user_pages_out)
{
	const unsigned long n = 64;
	unsigned long i, before[64];
	int pagemap;
	char *mem;

	SKIP_IF_NO_TABLES();
	pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, pagemap);
	mem = map_filled(n);
	ASSERT_NE(MAP_FAILED, mem);
	for (i = 0; i < n; i++) {
		before[i] = pfn_of(pagemap, mem + i * PAGE);
		ASSERT_NE(0, before[i]);
	}
	if (soft_offline(mem, n * PAGE)) {
		if (errno == EINVAL)
			SKIP(return, "no memory-failure handling in this kernel");
		ASSERT_EQ(0, -errno) {
			TH_LOG("MADV_SOFT_OFFLINE: %s", strerror(errno));
		}
	}
	for (i = 0; i < n; i++) {
		unsigned long pfn = pfn_of(pagemap, mem + i * PAGE);
		long sensitive = -1;

		ASSERT_NE(0, pfn);
		ASSERT_NE(before[i], pfn) {
			TH_LOG("page %lu was not migrated", i);
		}
		ASSERT_EQ(0, page_mapped(pfn, &sensitive)) {
			TH_LOG("page %lu, frame %lu (was %lu) is in the nonsensitive direct map",
			       i, pfn, before[i]);
		}
		ASSERT_EQ(1, sensitive);
		ASSERT_TRUE(intact(mem + i * PAGE, i));
	}
	ASSERT_EQ(0, verifier_problems());
}

/* The counter @name of /proc/vmstat, -1 if it has none. */
static long vmstat(const char *name)
{
	char key[64];
	long val, ret = -1;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", key, &val) == 2) {
		if (!strcmp(key, name)) {
			ret = val;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* MemFree of /proc/meminfo, in bytes; 0 if unknown. */
static unsigned long mem_free(void)
{
	long kib = read_key("/proc/meminfo", "MemFree");

	return kib > 0 ? kib * 1024UL : 0;
}

/*
 * Compaction moves the movable pages below the point where its two scanners
 * meet into free pages above it. The page allocator tends to hand out high
 * frames first, so take the top half of the free memory first, then
 * interleave the test's pages with as many pages below it, and free all but
 * the test's pages: those sit in half-free pageblocks under free memory.
 * Under TCG, faulting in half the memory takes longer than the harness's
 * default 30 seconds.
 */
FIXTURE(compaction) {};
FIXTURE_SETUP(compaction) {}
FIXTURE_TEARDOWN(compaction) {}

TEST_F_TIMEOUT(compaction, keeps_user_pages_out, 150)
{
	unsigned long free = mem_free();
	unsigned long n = free / 64 / PAGE, top = free / 2 / PAGE;
	unsigned long i, moved = 0, checked = 0, lo = ~0UL, hi = 0;
	long migrated, scanned;
	unsigned long *before;
	char *mem, *holes, *high;
	int pagemap;

	SKIP_IF_NO_TABLES();
	if (access("/proc/sys/vm/compact_memory", W_OK))
		SKIP(return, "no compaction in this kernel");
	if (n > 4 * MIB / PAGE)
		n = 4 * MIB / PAGE;
	ASSERT_LT(0, n);
	pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, pagemap);
	mem = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	holes = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	high = mmap(NULL, top * PAGE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	ASSERT_NE(MAP_FAILED, holes);
	ASSERT_NE(MAP_FAILED, high);
	madvise(mem, n * PAGE, MADV_NOHUGEPAGE);
	madvise(holes, n * PAGE, MADV_NOHUGEPAGE);
	before = calloc(n, sizeof(*before));
	ASSERT_NE(NULL, before);
	for (i = 0; i < n; i++) {
		holes[i * PAGE] = 1;
		fill(mem + i * PAGE, i);
	}
	munmap(holes, n * PAGE);
	munmap(high, top * PAGE);
	for (i = 0; i < n; i++) {
		before[i] = pfn_of(pagemap, mem + i * PAGE);
		lo = before[i] < lo ? before[i] : lo;
		hi = before[i] > hi ? before[i] : hi;
	}

	migrated = vmstat("pgmigrate_success");
	scanned = vmstat("compact_migrate_scanned");
	ASSERT_EQ(0, write_str("/proc/sys/vm/compact_memory", "1\n"));
	migrated = vmstat("pgmigrate_success") - migrated;
	scanned = vmstat("compact_migrate_scanned") - scanned;

	for (i = 0; i < n; i++) {
		unsigned long pfn = pfn_of(pagemap, mem + i * PAGE);
		long sensitive = -1;

		ASSERT_NE(0, pfn);
		if (pfn != before[i])
			moved++;
		/* Every page that moved, and every 16th of the others. */
		if (pfn == before[i] && i % 16)
			continue;
		ASSERT_EQ(0, page_mapped(pfn, &sensitive)) {
			TH_LOG("page %lu, frame %lu (was %lu) is in the nonsensitive direct map",
			       i, pfn, before[i]);
		}
		ASSERT_EQ(1, sensitive);
		checked++;
	}
	for (i = 0; i < n; i++)
		ASSERT_TRUE(intact(mem + i * PAGE, i));
	ASSERT_EQ(0, verifier_problems());
	TH_LOG("%lu of %lu pages in frames %lu-%lu moved by compaction, %lu checked; it scanned %ld pages and migrated %ld",
	       moved, n, lo, hi, checked, scanned, migrated);
	if (!moved)
		SKIP(return, "compaction moved none of the pages");
}

TEST(collapse_into_a_huge_page_keeps_user_pages_out)
{
	const unsigned long n = HPAGE / PAGE;
	unsigned long i, first, moved = 0;
	unsigned long *before;
	int pagemap;
	char *mem;

	SKIP_IF_NO_TABLES();
	if (access(THP_DIR "/enabled", R_OK))
		SKIP(return, "no transparent huge pages in this kernel");
	pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, pagemap);
	mem = map_aligned(HPAGE);
	ASSERT_NE(MAP_FAILED, mem);
	ASSERT_EQ(0, madvise(mem, HPAGE, MADV_NOHUGEPAGE));
	before = calloc(n, sizeof(*before));
	ASSERT_NE(NULL, before);
	for (i = 0; i < n; i++) {
		fill(mem + i * PAGE, i);
		before[i] = pfn_of(pagemap, mem + i * PAGE);
	}
	ASSERT_EQ(0, madvise(mem, HPAGE, MADV_HUGEPAGE));
	if (madvise(mem, HPAGE, MADV_COLLAPSE))
		SKIP(return, "MADV_COLLAPSE failed: %s", strerror(errno));

	first = pfn_of(pagemap, mem);
	ASSERT_NE(0, first);
	ASSERT_EQ(0, first % n);
	for (i = 0; i < n; i++) {
		unsigned long pfn = pfn_of(pagemap, mem + i * PAGE);
		long sensitive = -1;

		/* One huge page now: contiguous frames. */
		ASSERT_EQ(first + i, pfn);
		if (pfn != before[i])
			moved++;
		ASSERT_EQ(0, page_mapped(pfn, &sensitive)) {
			TH_LOG("page %lu of the huge page, frame %lu, is in the nonsensitive direct map",
			       i, pfn);
		}
		ASSERT_EQ(1, sensitive);
		ASSERT_TRUE(intact(mem + i * PAGE, i));
	}
	ASSERT_EQ(0, verifier_problems());
	TH_LOG("collapse copied %lu of %lu pages", moved, n);
}

TEST(huge_page_faults_are_sensitive_the_huge_zero_page_is_not)
{
	unsigned long i, pfn, zero;
	long sensitive = -1;
	int pagemap, on;
	char *mem;
	FILE *f;

	SKIP_IF_NO_TABLES();
	if (access(THP_DIR "/enabled", R_OK))
		SKIP(return, "no transparent huge pages in this kernel");
	pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, pagemap);
	mem = map_aligned(2 * HPAGE);
	ASSERT_NE(MAP_FAILED, mem);
	ASSERT_EQ(0, madvise(mem, 2 * HPAGE, MADV_HUGEPAGE));

	/* A write fault: a huge page of user data, if one is free. */
	mem[0] = 1;
	pfn = pfn_of(pagemap, mem);
	ASSERT_NE(0, pfn);
	if (pfn_of(pagemap, mem + HPAGE - PAGE) == pfn + HPAGE / PAGE - 1) {
		for (i = 0; i < HPAGE / PAGE; i++) {
			ASSERT_EQ(0, page_mapped(pfn + i, &sensitive));
			ASSERT_EQ(1, sensitive);
		}
	} else {
		TH_LOG("no huge page for the write fault");
	}

	/* A read fault maps the huge zero page, which holds nobody's data. */
	f = fopen(THP_DIR "/use_zero_page", "r");
	if (!f || fscanf(f, "%d", &on) != 1)
		on = 0;
	if (f)
		fclose(f);
	if (!on)
		SKIP(return, "the huge zero page is off");
	ASSERT_EQ(0, *(volatile char *)(mem + HPAGE));
	zero = pfn_of(pagemap, mem + HPAGE);
	ASSERT_NE(0, zero);
	ASSERT_EQ(zero + 1, pfn_of(pagemap, mem + HPAGE + PAGE)) {
		TH_LOG("the read fault did not map the huge zero page");
	}
	ASSERT_EQ(1, page_mapped(zero, &sensitive));
	ASSERT_EQ(0, sensitive);
	ASSERT_EQ(0, verifier_problems());
}

#define NR_HUGEPAGES	"/proc/sys/vm/nr_hugepages"

/*
 * Each 4 KiB frame of the 2 MiB hugetlb page at @mem: 0 if all are
 * sensitive, unmapped and hold their pattern (@first is the frame of the
 * first, 0 if unknown), else the index of the first that is not, plus one.
 */
static unsigned long hugetlb_page_out(int pagemap, const char *mem, unsigned long *first)
{
	unsigned long i;

	*first = pfn_of(pagemap, mem);
	for (i = 0; i < HPAGE / PAGE; i++) {
		unsigned long pfn = pfn_of(pagemap, mem + i * PAGE);
		long sensitive = -1;

		if (!pfn || pfn != *first + i || page_mapped(pfn, &sensitive) != 0 ||
		    sensitive != 1 || !intact(mem + i * PAGE, i))
			return i + 1;
	}
	return 0;
}

/*
 * Pages of the hugetlb pool hold user data from the moment they enter it:
 * the pool fills from the buddy allocator with __GFP_SENSITIVE, ahead of any
 * fault. Soft offlining a hugetlb page migrates it through hugetlb's own
 * path of migrate_pages(), into another pool page or a new one.
 */
/*
 * NUMA: move_pages() and mbind(MPOL_MF_MOVE) migrate pages to another node
 * through alloc_migration_target() and migrate_pages(), with user flags
 * this time, as NUMA balancing does. NUMA_PAGES pages of the test, faulted
 * in on whatever node, all go to node @to of two.
 */
#define NUMA_PAGES	64

FIXTURE(numa) {
	int pagemap;
	char *mem;
	unsigned long before[NUMA_PAGES];
};

FIXTURE_SETUP(numa)
{
	unsigned long i;

	SKIP_IF_NO_TABLES();
	if (access("/sys/devices/system/node/node1", F_OK))
		SKIP(return, "one NUMA node only");
	self->pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, self->pagemap);
	self->mem = map_filled(NUMA_PAGES);
	ASSERT_NE(MAP_FAILED, self->mem);
	for (i = 0; i < NUMA_PAGES; i++) {
		self->before[i] = pfn_of(self->pagemap, self->mem + i * PAGE);
		ASSERT_NE(0, self->before[i]);
	}
}

FIXTURE_TEARDOWN(numa) {}

/* The node of each page of the fixture, from move_pages() with no nodes. */
static int numa_nodes(char *mem, int *status)
{
	void *pages[NUMA_PAGES];
	unsigned long i;

	for (i = 0; i < NUMA_PAGES; i++)
		pages[i] = mem + i * PAGE;
	return syscall(__NR_move_pages, 0, NUMA_PAGES, pages, NULL, status, 0);
}

/*
 * After a migration to node @to: each page is on @to, in a frame other than
 * before if it moved, sensitive and unmapped, with its data; the verifier
 * finds nothing.
 */
static void numa_check(struct __test_metadata *_metadata,
		       FIXTURE_DATA(numa) *self, int to, const int *was)
{
	int status[NUMA_PAGES];
	unsigned long i, moved = 0;

	ASSERT_EQ(0, numa_nodes(self->mem, status));
	for (i = 0; i < NUMA_PAGES; i++) {
		unsigned long pfn = pfn_of(self->pagemap, self->mem + i * PAGE);
		long sensitive = -1;

		ASSERT_EQ(to, status[i]) {
			TH_LOG("page %lu is on node %d, not %d", i, status[i], to);
		}
		ASSERT_NE(0, pfn);
		if (was[i] != to) {
			ASSERT_NE(self->before[i], pfn);
			moved++;
		}
		ASSERT_EQ(0, page_mapped(pfn, &sensitive)) {
			TH_LOG("page %lu, frame %lu (was %lu) is in the nonsensitive direct map",
			       i, pfn, self->before[i]);
		}
		ASSERT_EQ(1, sensitive);
		ASSERT_TRUE(intact(self->mem + i * PAGE, i));
	}
	ASSERT_LT(0, moved);
	ASSERT_EQ(0, verifier_problems());
}

TEST_F(numa, move_pages_keeps_user_pages_out)
{
	int was[NUMA_PAGES], nodes[NUMA_PAGES], status[NUMA_PAGES];
	void *pages[NUMA_PAGES];
	int to;
	unsigned long i;

	ASSERT_EQ(0, numa_nodes(self->mem, was));
	/* Everything to the node the first page is not on. */
	to = was[0] == 0 ? 1 : 0;
	for (i = 0; i < NUMA_PAGES; i++) {
		pages[i] = self->mem + i * PAGE;
		nodes[i] = to;
	}
	ASSERT_EQ(0, syscall(__NR_move_pages, 0, NUMA_PAGES, pages, nodes, status,
			     MPOL_MF_MOVE)) {
		TH_LOG("move_pages: %s", strerror(errno));
	}
	numa_check(_metadata, self, to, was);
}

TEST_F(numa, mbind_keeps_user_pages_out)
{
	int was[NUMA_PAGES];
	unsigned long mask;
	int to;

	ASSERT_EQ(0, numa_nodes(self->mem, was));
	to = was[0] == 0 ? 1 : 0;
	mask = 1UL << to;
	ASSERT_EQ(0, syscall(__NR_mbind, self->mem, NUMA_PAGES * PAGE, MPOL_BIND,
			     &mask, 8 * sizeof(mask), MPOL_MF_MOVE | MPOL_MF_STRICT)) {
		TH_LOG("mbind: %s", strerror(errno));
	}
	numa_check(_metadata, self, to, was);
}

/*
 * Swap: MADV_PAGEOUT writes the test's pages out (through zswap when it is
 * on) and frees them; touching them again reads them into newly allocated
 * pages, which must be as sensitive as the ones that went out. With no
 * swap configured, the test sets up a zram device as swap for itself.
 */
#define SWAP_PAGES	256
#define ZRAM		"/sys/block/zram0"

FIXTURE(swap) {
	int own_zram;
};

FIXTURE_SETUP(swap)
{
	long total;

	SKIP_IF_NO_TABLES();
	total = read_key("/proc/meminfo", "SwapTotal");
	if (total > 0)
		return;
	if (access(ZRAM "/disksize", W_OK))
		SKIP(return, "no swap and no zram device");
	ASSERT_EQ(0, write_str(ZRAM "/disksize", "64M\n"));
	self->own_zram = 1;
	if (system("mkswap /dev/zram0 > /dev/null 2>&1 && swapon /dev/zram0"))
		SKIP(return, "cannot make /dev/zram0 swap (mkswap, swapon)");
}

FIXTURE_TEARDOWN(swap)
{
	if (!self->own_zram)
		return;
	system("swapoff /dev/zram0 > /dev/null 2>&1");
	write_str(ZRAM "/reset", "1\n");
}

TEST_F_TIMEOUT(swap, swapped_pages_come_back_sensitive, 90)
{
	unsigned long i, out = 0;
	int pagemap;
	char *mem;

	pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, pagemap);
	mem = map_filled(SWAP_PAGES);
	ASSERT_NE(MAP_FAILED, mem);
	ASSERT_EQ(0, madvise(mem, SWAP_PAGES * PAGE, MADV_PAGEOUT)) {
		TH_LOG("MADV_PAGEOUT: %s", strerror(errno));
	}
	for (i = 0; i < SWAP_PAGES; i++)
		out += swapped_out(pagemap, mem + i * PAGE) == 1;
	/* Reclaim may skip a page it finds busy, but not most of them. */
	ASSERT_LE(SWAP_PAGES / 2UL, out) {
		TH_LOG("only %lu of %d pages went to swap", out, SWAP_PAGES);
	}
	ASSERT_EQ(0, verifier_problems());
	for (i = 0; i < SWAP_PAGES; i++) {
		unsigned long pfn;
		long sensitive = -1;

		ASSERT_TRUE(intact(mem + i * PAGE, i)) {
			TH_LOG("page %lu came back changed", i);
		}
		pfn = pfn_of(pagemap, mem + i * PAGE);
		ASSERT_NE(0, pfn);
		ASSERT_EQ(0, page_mapped(pfn, &sensitive)) {
			TH_LOG("page %lu, frame %lu, is in the nonsensitive direct map", i, pfn);
		}
		ASSERT_EQ(1, sensitive);
	}
	ASSERT_EQ(0, verifier_problems());
	TH_LOG("%lu of %d pages went to swap and came back", out, SWAP_PAGES);
}

FIXTURE(hugetlb) {
	long nr_before;
};

FIXTURE_SETUP(hugetlb)
{
	self->nr_before = read_long(NR_HUGEPAGES);
}

FIXTURE_TEARDOWN(hugetlb)
{
	if (self->nr_before >= 0)
		write_long(NR_HUGEPAGES, self->nr_before);
}

TEST_F(hugetlb, pool_pages_stay_out_through_migration)
{
	unsigned long i, before, after, bad;
	int pagemap;
	char *mem;

	SKIP_IF_NO_TABLES();
	if (self->nr_before < 0)
		SKIP(return, "no hugetlb pages in this kernel");
	if (read_key("/proc/meminfo", "Hugepagesize") != HPAGE / 1024)
		SKIP(return, "the default hugetlb page size is not 2 MiB");
	/* One page to map and one for migration to move it into. */
	ASSERT_EQ(0, write_long(NR_HUGEPAGES, self->nr_before + 2));
	if (read_long(NR_HUGEPAGES) < self->nr_before + 2)
		SKIP(return, "the pool did not grow by two 2 MiB pages");
	pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, pagemap);
	mem = mmap(NULL, HPAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	for (i = 0; i < HPAGE / PAGE; i++)
		fill(mem + i * PAGE, i);
	bad = hugetlb_page_out(pagemap, mem, &before);
	ASSERT_EQ(0, bad) {
		TH_LOG("frame %lu of the hugetlb page at %lu is mapped, not sensitive or not intact",
		       bad - 1, before);
	}

	if (soft_offline(mem, HPAGE)) {
		if (errno == EINVAL)
			SKIP(return, "no memory-failure handling in this kernel");
		ASSERT_EQ(0, -errno) {
			TH_LOG("MADV_SOFT_OFFLINE: %s", strerror(errno));
		}
	}
	bad = hugetlb_page_out(pagemap, mem, &after);
	ASSERT_NE(before, after) {
		TH_LOG("the hugetlb page was not migrated");
	}
	ASSERT_EQ(0, bad) {
		TH_LOG("frame %lu of the migrated hugetlb page at %lu (was %lu) is mapped, not sensitive or not intact",
		       bad - 1, after, before);
	}
	ASSERT_EQ(0, verifier_problems());
	TH_LOG("hugetlb page moved from frame %lu to %lu", before, after);
	munmap(mem, HPAGE);
}

TEST_HARNESS_MAIN
