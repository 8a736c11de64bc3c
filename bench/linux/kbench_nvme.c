/*
 * kbench nvme: 4 KiB random reads of /dev/nvme0n1 through Linux's nvme driver, the Linux side
 * of bench-compare's nvme_randread_* figures (docs/benchmarks.md). Keel's counterpart is
 * user/nvme-driver/src/bench.rs; both read the same block sequence and check the same way.
 *
 * Interface: io_uring (IORING_OP_READ on an O_DIRECT descriptor, interrupt-driven completions,
 * the kernel's default), set up with the raw io_uring_setup/io_uring_enter system calls and
 * mmap of the rings (no liburing). Each thread has its own ring and keeps `qd` reads in
 * flight until it has issued `reads`; threads=1 runs one thread on CPU 1, threads=0 one per
 * online CPU, each pinned (Linux's nvme driver maps each CPU to its own queue pair).
 *
 * Block numbers: xorshift64 (13, 7, 17) from seed 0x9E3779B97F4A7C15 ^ ((t + 1) *
 * 0xD1B54A32D192ED03) for thread t, modulo the 4 KiB blocks of the device. A read's latency
 * runs from the TSC before its submission entry is written to the TSC when its completion
 * entry is taken. The first and last word of every block read are checked against the image
 * pattern (keel_nvme::pattern) and cleared; each thread's first 8 blocks are checked word by
 * word. IOPS: all reads over first start to last end (CLOCK_MONOTONIC).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096
#define MAX_QD 32
#define FULL_CHECKS 8
#define IMAGE_SEED 0x4B45454C4E564D45ULL

static inline uint64_t nv_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

static uint64_t pattern_word(uint64_t byte_offset)
{
	return (byte_offset / 8 + 1) * 0x9E3779B97F4A7C15ULL ^ IMAGE_SEED;
}

struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static int ring_setup(struct ring *r, unsigned entries)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
	if (r->fd < 0)
		return -1;
	size_t sq_bytes = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_bytes = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP)
		sq_bytes = cq_bytes = sq_bytes > cq_bytes ? sq_bytes : cq_bytes;
	char *sq = mmap(NULL, sq_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -1;
	char *cq = sq;
	if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
		cq = mmap(NULL, cq_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			  IORING_OFF_CQ_RING);
		if (cq == MAP_FAILED)
			return -1;
	}
	r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (r->sqes == MAP_FAILED)
		return -1;
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	return 0;
}

struct job {
	int index, cpu, qd, dev;
	size_t reads;
	uint64_t blocks;
	uint64_t *lat;
	size_t done, verified, full_checked, full_matching, errors;
	struct timespec start, end;
	const char *error;
};

static pthread_barrier_t start_line;

/* Reads each thread makes before its measured ones (Keel's WARMUP_READS): a fresh
 * machine's first reads pay once for the emulator's cold paths. */
#define WARMUP_READS 64

/* One thread's block sequence and in-flight slots, carried from the warm-up into the run. */
struct pass {
	uint64_t x;
	uint64_t block[MAX_QD], submitted_at[MAX_QD];
	int busy[MAX_QD];
};

/* Keeps j->qd reads in flight until j->reads were issued and all completed; latencies into
 * j->lat when it is set. */
static void run_pass(struct job *j, struct ring *rp, unsigned char *buf, struct pass *p)
{
	struct ring r = *rp;
	size_t issued = 0;
	while (j->done < j->reads) {
		unsigned tail = *r.sq_tail, n = 0;
		uint64_t t = nv_rdtsc();
		for (int k = 0; k < j->qd && issued < j->reads; k++) {
			if (p->busy[k])
				continue;
			p->x ^= p->x << 13;
			p->x ^= p->x >> 7;
			p->x ^= p->x << 17;
			uint64_t b = p->x % j->blocks;
			unsigned at = tail & *r.sq_mask;
			struct io_uring_sqe *sqe = &r.sqes[at];
			memset(sqe, 0, sizeof(*sqe));
			sqe->opcode = IORING_OP_READ;
			sqe->fd = j->dev;
			sqe->addr = (uint64_t)(uintptr_t)(buf + (size_t)k * BLOCK);
			sqe->len = BLOCK;
			sqe->off = b * BLOCK;
			sqe->user_data = (uint64_t)k;
			r.sq_array[at] = at;
			tail++;
			n++;
			p->busy[k] = 1;
			p->block[k] = b;
			p->submitted_at[k] = t;
			issued++;
		}
		__atomic_store_n(r.sq_tail, tail, __ATOMIC_RELEASE);
		long got = syscall(__NR_io_uring_enter, r.fd, n, 1, IORING_ENTER_GETEVENTS, NULL, 0);
		if (got < 0 && errno != EINTR) {
			j->error = "io_uring_enter";
			break;
		}
		unsigned head = *r.cq_head;
		while (head != __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE)) {
			struct io_uring_cqe *c = &r.cqes[head & *r.cq_mask];
			uint64_t seen = nv_rdtsc();
			int k = (int)c->user_data;
			int res = c->res;
			head++;
			p->busy[k] = 0;
			if (j->lat)
				j->lat[j->done] = seen - p->submitted_at[k];
			j->done++;
			if (res != BLOCK) {
				j->errors++;
				continue;
			}
			uint64_t *w = (uint64_t *)(buf + (size_t)k * BLOCK);
			uint64_t off = p->block[k] * BLOCK;
			if (w[0] == pattern_word(off) && w[511] == pattern_word(off + BLOCK - 8))
				j->verified++;
			if (j->full_checked < FULL_CHECKS) {
				int wrong = 0;
				for (int i = 0; i < 512; i++)
					wrong += w[i] != pattern_word(off + 8 * (uint64_t)i);
				j->full_checked++;
				j->full_matching += wrong == 0;
			}
			w[0] = w[511] = 0;
		}
		__atomic_store_n(r.cq_head, head, __ATOMIC_RELEASE);
	}
}

static void *reader(void *arg)
{
	struct job *j = arg;
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(j->cpu, &s);
	if (sched_setaffinity(0, sizeof(s), &s) != 0)
		j->error = "sched_setaffinity";
	struct ring r = { .fd = -1 };
	unsigned char *buf = NULL;
	if (!j->error && ring_setup(&r, 2 * MAX_QD) != 0)
		j->error = "io_uring_setup";
	if (!j->error && posix_memalign((void **)&buf, BLOCK, (size_t)MAX_QD * BLOCK) != 0)
		j->error = "posix_memalign";
	pthread_barrier_wait(&start_line);
	if (j->error)
		return NULL;
	memset(buf, 0, (size_t)MAX_QD * BLOCK);
	struct pass p = { .x = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)j->index + 1) * 0xD1B54A32D192ED03ULL };
	/* The warm-up: checked, neither timed nor counted (Keel's driver makes the same). */
	struct job warm = *j;
	warm.done = warm.verified = warm.full_checked = warm.full_matching = warm.errors = 0;
	warm.reads = WARMUP_READS;
	warm.lat = NULL;
	run_pass(&warm, &r, buf, &p);
	if (warm.error) {
		j->error = warm.error;
		return NULL;
	}
	if (warm.errors || warm.verified != warm.done)
		j->errors++;
	clock_gettime(CLOCK_MONOTONIC, &j->start);
	run_pass(j, &r, buf, &p);
	clock_gettime(CLOCK_MONOTONIC, &j->end);
	return NULL;
}

static double secs(struct timespec t)
{
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* kbench.c: the SAMPLES line, then the samples sorted. */
void print_samples_then_sort(const char *metric, uint64_t *v, size_t n);

int bench_nvme(size_t reads, int qd, int threads, const char *metric)
{
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (qd < 1 || qd > MAX_QD)
		qd = qd < 1 ? 1 : MAX_QD;
	int per_cpu = threads == 0;
	int n = per_cpu ? ncpu : 1;
	int dev = open("/dev/nvme0n1", O_RDONLY | O_DIRECT);
	if (dev < 0) {
		printf("RESULT %s.error=open_nvme0n1:%s\n", metric, strerror(errno));
		return 1;
	}
	uint64_t bytes = 0;
	if (ioctl(dev, BLKGETSIZE64, &bytes) != 0 || bytes < BLOCK) {
		printf("RESULT %s.error=BLKGETSIZE64:%s\n", metric, strerror(errno));
		return 1;
	}
	struct job *jobs = calloc((size_t)n, sizeof(*jobs));
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	uint64_t *lat = malloc((size_t)n * reads * sizeof(*lat));
	pthread_barrier_init(&start_line, NULL, (unsigned)n);
	for (int i = 0; i < n; i++) {
		jobs[i] = (struct job){ .index = i, .cpu = per_cpu ? i : (ncpu > 1 ? 1 : 0), .qd = qd,
					.dev = dev, .reads = reads, .blocks = bytes / BLOCK,
					.lat = lat + (size_t)i * reads };
		if (pthread_create(&t[i], NULL, reader, &jobs[i]) != 0) {
			printf("RESULT %s.error=pthread_create\n", metric);
			return 1;
		}
	}
	size_t done = 0, verified = 0, full = 0, full_ok = 0, errors = 0;
	double start = 0, end = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		struct job *j = &jobs[i];
		if (j->error) {
			printf("RESULT %s.error=%s:%s\n", metric, j->error, strerror(errno));
			return 1;
		}
		/* Compact the samples (a thread stopped early leaves a gap). */
		memmove(lat + done, j->lat, j->done * sizeof(*lat));
		done += j->done;
		verified += j->verified;
		full += j->full_checked;
		full_ok += j->full_matching;
		errors += j->errors;
		if (i == 0 || secs(j->start) < start)
			start = secs(j->start);
		if (secs(j->end) > end)
			end = secs(j->end);
	}
	print_samples_then_sort(metric, lat, done);
	printf("RESULT %s.threads=%d\n", metric, n);
	printf("RESULT %s.qd=%d\n", metric, qd);
	printf("RESULT %s.device_blocks=%llu\n", metric, (unsigned long long)(bytes / BLOCK));
	printf("RESULT %s.reads=%zu\n", metric, (size_t)n * reads);
	printf("RESULT %s.samples=%zu\n", metric, done);
	printf("RESULT %s.verified=%zu\n", metric, verified);
	printf("RESULT %s.full_checked=%zu\n", metric, full);
	printf("RESULT %s.full_matching=%zu\n", metric, full_ok);
	printf("RESULT %s.errors=%zu\n", metric, errors);
	printf("RESULT %s.run_ns=%llu\n", metric, (unsigned long long)((end - start) * 1e9));
	printf("RESULT %s.iops=%llu\n", metric,
	       (unsigned long long)(end > start ? (double)done / (end - start) : 0));
	if (done) {
		printf("RESULT %s.median_cycles=%llu\n", metric,
		       (unsigned long long)lat[(done - 1) * 50 / 100]);
		printf("RESULT %s.p99_cycles=%llu\n", metric,
		       (unsigned long long)lat[(done - 1) * 99 / 100]);
	}
	fflush(stdout);
	free(lat);
	free(jobs);
	free(t);
	close(dev);
	return 0;
}
