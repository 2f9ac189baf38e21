// SPDX-License-Identifier: GPL-2.0
/*
 * File data on a block device keeps out of ASI's nonsensitive direct map:
 * the page cache of a file on ext4, as it is written back to the disk and as
 * it is read from the disk again (readahead), and the page cache of the block
 * device itself, which holds the file system's metadata. The test follows the
 * pages through /proc/self/pagemap, asks /sys/kernel/debug/asi/page about
 * each frame, checks the data and that the verifier finds nothing, and reads
 * the disk's I/O counters to make sure the data did go to the disk and come
 * back. Needs root and a writable ext4 file system on a block device (the
 * first one in /proc/mounts); skips when ASI is off or there is none.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "asi_util.h"

#define PAGE		4096UL
#define FILE_PAGES	512
#define SECTOR		512UL

/* @va's pagemap entry, 0 if it cannot be read. */
static uint64_t pagemap_entry(int pagemap, const void *va)
{
	uint64_t e;
	off_t off = (uintptr_t)va / PAGE * sizeof(e);

	if (pread(pagemap, &e, sizeof(e), off) != sizeof(e))
		return 0;
	return e;
}

#define PM_PRESENT	(1ULL << 63)
#define PM_PFN		((1ULL << 55) - 1)

/*
 * Field @field (1-based) of /sys/class/block/@dev/stat: 3 is the sectors
 * read, 7 the sectors written. -1 if it cannot be read.
 */
static long long disk_stat(const char *dev, int field)
{
	long long v[8];
	char path[128];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/sys/class/block/%s/stat", dev);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fscanf(f, "%lld %lld %lld %lld %lld %lld %lld %lld",
		   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	return n == 8 && field >= 1 && field <= 8 ? v[field - 1] : -1;
}

/*
 * The frame behind the page at @va, faulted in through the mapping first; 0
 * if it stays absent, with its last pagemap entry in *@entry. mlock() does
 * not keep a page-cache page mapped: splitting a large folio (compaction
 * does when it cannot migrate one whole) unmaps a file folio's pages even
 * where they are mlocked, and they stay unmapped until the next access; a
 * migration leaves a migration entry until it is done. A read faults the
 * page back in or waits for the migration.
 */
static unsigned long mapped_frame(int pagemap, const char *va, uint64_t *entry)
{
	int tries;

	for (tries = 0; tries < 10; tries++) {
		(void)*(const volatile char *)va;
		*entry = pagemap_entry(pagemap, va);
		if ((*entry & PM_PRESENT) && (*entry & PM_PFN))
			return *entry & PM_PFN;
		usleep(1000);
	}
	return 0;
}

/*
 * Check that each of the @n pages mapped at @mem is in a frame that is
 * sensitive and absent from ASI's direct map; 0 if so, else the number of the
 * first page that is not, plus one, with *@mapped and *@sensitive as the page
 * file gave them (-1: it could not tell, or pagemap showed no frame, whose
 * entry is then in *@entry). The pages are locked in memory so that reclaim
 * does not take them while they are checked.
 */
static unsigned long first_exposed(struct __test_metadata *_metadata, int pagemap,
				   const char *mem, unsigned long n, unsigned long *pfn,
				   int *mapped, long *sensitive)
{
	uint64_t entry = 0;
	unsigned long i;

	*pfn = 0;
	*mapped = *sensitive = -1;
	if (mlock(mem, n * PAGE)) {
		TH_LOG("mlock: %s", strerror(errno));
		return 1;
	}
	for (i = 0; i < n; i++) {
		*pfn = mapped_frame(pagemap, mem + i * PAGE, &entry);
		*mapped = *pfn ? page_mapped(*pfn, sensitive) : -1;
		if (*mapped != 0 || *sensitive != 1)
			break;
	}
	munlock(mem, n * PAGE);
	if (i < n && !*pfn)
		TH_LOG("no frame behind page %lu: pagemap entry %#llx", i,
		       (unsigned long long)entry);
	return i < n ? i + 1 : 0;
}

FIXTURE(ext4) {
	char dev[64];		/* the disk's name in /sys/class/block */
	char bdev[128];		/* its device node */
	char path[300];		/* the test's file */
	int fd;
	int pagemap;
};

FIXTURE_SETUP(ext4)
{
	char src[128], dir[256], type[32], opts[256];
	const char *name;
	int found = 0;
	FILE *f;

	self->fd = -1;
	self->pagemap = -1;
	SKIP_IF_NO_TABLES();
	f = fopen("/proc/mounts", "r");
	ASSERT_NE(NULL, f);
	while (fscanf(f, "%127s %255s %31s %255s %*d %*d", src, dir, type, opts) == 4) {
		if (strcmp(type, "ext4") || strncmp(src, "/dev/", 5) || strncmp(opts, "rw", 2))
			continue;
		found = 1;
		break;
	}
	fclose(f);
	if (!found)
		SKIP(return, "no writable ext4 file system on a block device");
	name = strrchr(src, '/') + 1;
	snprintf(self->dev, sizeof(self->dev), "%s", name);
	snprintf(self->bdev, sizeof(self->bdev), "%s", src);
	snprintf(self->path, sizeof(self->path), "%s/asi_storage_test.dat", dir);
	ASSERT_LE(0, disk_stat(self->dev, 7)) {
		TH_LOG("no I/O counters for %s", self->dev);
	}
	self->pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, self->pagemap);
	self->fd = open(self->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_LE(0, self->fd) {
		TH_LOG("%s: %s", self->path, strerror(errno));
	}
}

FIXTURE_TEARDOWN(ext4)
{
	if (self->fd >= 0) {
		close(self->fd);
		unlink(self->path);
	}
	if (self->pagemap >= 0)
		close(self->pagemap);
}

/* Write FILE_PAGES patterned pages through write() and wait for the disk. */
static int write_file(int fd)
{
	char page[PAGE];
	unsigned long i;

	for (i = 0; i < FILE_PAGES; i++) {
		fill(page, i);
		if (pwrite(fd, page, PAGE, i * PAGE) != (ssize_t)PAGE)
			return -1;
	}
	return fsync(fd);
}

/*
 * write() copies the data into page-cache pages that ext4 allocates with the
 * mapping's GFP_HIGHUSER_MOVABLE; fsync() writes them back through the block
 * layer while they stay in the page cache.
 */
TEST_F(ext4, written_pages_stay_out_through_writeback)
{
	long long written = disk_stat(self->dev, 7);
	unsigned long bad, pfn, i;
	long sensitive;
	int mapped;
	char *mem;

	ASSERT_EQ(0, write_file(self->fd)) {
		TH_LOG("writing %s: %s", self->path, strerror(errno));
	}
	ASSERT_LE(written + (long long)(FILE_PAGES * PAGE / SECTOR), disk_stat(self->dev, 7)) {
		TH_LOG("fsync() did not write the file to %s", self->dev);
	}
	ASSERT_EQ(0, verifier_problems());
	mem = mmap(NULL, FILE_PAGES * PAGE, PROT_READ, MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, mem);
	bad = first_exposed(_metadata, self->pagemap, mem, FILE_PAGES, &pfn, &mapped, &sensitive);
	ASSERT_EQ(0, bad) {
		TH_LOG("page %lu of the file, frame %lu: mapped %d, sensitive %ld",
		       bad - 1, pfn, mapped, sensitive);
	}
	for (i = 0; i < FILE_PAGES; i++)
		ASSERT_TRUE(intact(mem + i * PAGE, i));
	munmap(mem, FILE_PAGES * PAGE);
	ASSERT_EQ(0, verifier_problems());
}

/*
 * Dropped from the page cache, the file comes back from the disk through
 * readahead into new page-cache pages.
 */
TEST_F(ext4, pages_read_from_the_disk_are_sensitive)
{
	unsigned long bad, pfn, i, resident = 0;
	long sensitive;
	int mapped;
	unsigned char vec[FILE_PAGES];
	long long read_before;
	char page[PAGE];
	char *mem;

	ASSERT_EQ(0, write_file(self->fd));
	/* Clean after fsync(), so DONTNEED drops every page. */
	ASSERT_EQ(0, posix_fadvise(self->fd, 0, 0, POSIX_FADV_DONTNEED));
	mem = mmap(NULL, FILE_PAGES * PAGE, PROT_READ, MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, mem);
	ASSERT_EQ(0, mincore(mem, FILE_PAGES * PAGE, vec));
	for (i = 0; i < FILE_PAGES; i++)
		resident += vec[i] & 1;
	ASSERT_GT(FILE_PAGES / 8, resident) {
		TH_LOG("%lu of %d pages stayed in the page cache", resident, FILE_PAGES);
	}
	read_before = disk_stat(self->dev, 3);
	for (i = 0; i < FILE_PAGES; i++) {
		ASSERT_EQ((ssize_t)PAGE, pread(self->fd, page, PAGE, i * PAGE));
		ASSERT_TRUE(intact(page, i)) {
			TH_LOG("page %lu came back changed", i);
		}
	}
	ASSERT_LE(read_before + (long long)((FILE_PAGES - resident) * PAGE / SECTOR),
		  disk_stat(self->dev, 3)) {
		TH_LOG("the file was not read from %s", self->dev);
	}
	bad = first_exposed(_metadata, self->pagemap, mem, FILE_PAGES, &pfn, &mapped, &sensitive);
	ASSERT_EQ(0, bad) {
		TH_LOG("page %lu of the file, frame %lu: mapped %d, sensitive %ld",
		       bad - 1, pfn, mapped, sensitive);
	}
	munmap(mem, FILE_PAGES * PAGE);
	ASSERT_EQ(0, verifier_problems());
}

/*
 * The block device's own page cache holds what ext4 reads through buffer
 * heads: superblock, group descriptors, bitmaps, inode tables, directories.
 * It is allocated with GFP_USER, which carries __GFP_SENSITIVE.
 */
TEST_F(ext4, block_device_page_cache_is_sensitive)
{
	const unsigned long n = 64;
	unsigned long bad, pfn;
	long sensitive;
	int fd, mapped;
	char *mem;

	fd = open(self->bdev, O_RDONLY);
	ASSERT_LE(0, fd) {
		TH_LOG("%s: %s", self->bdev, strerror(errno));
	}
	mem = mmap(NULL, n * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, mem) {
		TH_LOG("mmap of %s: %s", self->bdev, strerror(errno));
	}
	/* The first 256 KiB: the superblock and the group descriptors. */
	bad = first_exposed(_metadata, self->pagemap, mem, n, &pfn, &mapped, &sensitive);
	ASSERT_EQ(0, bad) {
		TH_LOG("page %lu of %s, frame %lu: mapped %d, sensitive %ld",
		       bad - 1, self->bdev, pfn, mapped, sensitive);
	}
	/* ext4's magic, 0xef53, at byte 56 of the superblock at 1024. */
	ASSERT_EQ(0x53, (unsigned char)mem[1024 + 56]);
	ASSERT_EQ(0xef, (unsigned char)mem[1024 + 57]);
	munmap(mem, n * PAGE);
	close(fd);
	ASSERT_EQ(0, verifier_problems());
}

#define CGROUP_ROOT	"/sys/fs/cgroup"
#define CGROUP		CGROUP_ROOT "/asi_storage_test"
#define LIMITED_PAGES	8192	/* 32 MiB written under an 8 MiB limit */

/* Value of "@key N" in the cgroup file @path, -1 if it has none. */
static long cgroup_key(const char *path, const char *key)
{
	char name[64];
	long val = -1, v;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", name, &v) == 2) {
		if (!strcmp(name, key)) {
			val = v;
			break;
		}
	}
	fclose(f);
	return val;
}

/*
 * Whether cgroup2 with the memory controller is at CGROUP_ROOT, mounting it
 * there if nothing is; the controller is enabled for the root's children.
 */
static int memcg_ready(void)
{
	char line[256] = "";
	FILE *f;

	if (access(CGROUP_ROOT "/cgroup.controllers", R_OK))
		mount("cgroup2", CGROUP_ROOT, "cgroup2", 0, NULL);
	f = fopen(CGROUP_ROOT "/cgroup.controllers", "r");
	if (!f)
		return 0;
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	if (!strstr(line, "memory"))
		return 0;
	return !write_str(CGROUP_ROOT "/cgroup.subtree_control", "+memory");
}

/*
 * A process whose memory cgroup allows 8 MiB writes a 32 MiB file, and
 * fsync()s every MiB so that what reclaim finds is clean: the cgroup's
 * reclaim frees the file's page cache while the process still writes. What
 * the disk gives back must be sensitive, as must what stays in the page
 * cache.
 */
TEST_F_TIMEOUT(ext4, page_cache_reclaimed_under_a_memory_limit, 120)
{
	long long written = disk_stat(self->dev, 7);
	unsigned long bad, pfn, i;
	long sensitive, hits;
	int mapped, status;
	char *mem;
	pid_t pid;

	if (!memcg_ready())
		SKIP(return, "no cgroup2 memory controller");
	rmdir(CGROUP);
	ASSERT_EQ(0, mkdir(CGROUP, 0755));
	ASSERT_EQ(0, write_str(CGROUP "/memory.max", "8M"));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		char page[PAGE], me[32];

		snprintf(me, sizeof(me), "%d", getpid());
		if (write_str(CGROUP "/cgroup.procs", me))
			_exit(2);
		for (i = 0; i < LIMITED_PAGES; i++) {
			fill(page, i);
			if (pwrite(self->fd, page, PAGE, i * PAGE) != (ssize_t)PAGE)
				_exit(3);
			if (i % 256 == 255 && fsync(self->fd))
				_exit(4);
		}
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	hits = cgroup_key(CGROUP "/memory.events", "max");
	ASSERT_EQ(0, rmdir(CGROUP));
	ASSERT_LT(0, hits) {
		TH_LOG("the cgroup never reached its limit");
	}
	ASSERT_LE(written + (long long)(LIMITED_PAGES * PAGE / SECTOR), disk_stat(self->dev, 7));
	ASSERT_EQ(0, verifier_problems());
	mem = mmap(NULL, LIMITED_PAGES * PAGE, PROT_READ, MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, mem);
	bad = first_exposed(_metadata, self->pagemap, mem, LIMITED_PAGES, &pfn, &mapped, &sensitive);
	ASSERT_EQ(0, bad) {
		TH_LOG("page %lu of the file, frame %lu: mapped %d, sensitive %ld",
		       bad - 1, pfn, mapped, sensitive);
	}
	for (i = 0; i < LIMITED_PAGES; i++)
		ASSERT_TRUE(intact(mem + i * PAGE, i)) {
			TH_LOG("page %lu came back changed", i);
		}
	munmap(mem, LIMITED_PAGES * PAGE);
	ASSERT_EQ(0, verifier_problems());
}

TEST_HARNESS_MAIN
