/*
 * kbench: the Linux side of `cargo xtask bench-compare` (see docs/benchmarks.md).
 *
 *   kbench ipi    [samples]        membarrier(PRIVATE_EXPEDITED) round trip, CPU 0 -> CPU 1
 *   kbench munmap [samples]        munmap of one touched page, threads resident on every CPU
 *   kbench uio    [samples [cpu [metric]]]
 *                                  edu INTx raise -> read() wake on /dev/uio0 (uio_pci_generic),
 *                                  this task pinned to `cpu` (default 1); the init script sets
 *                                  the IRQ's affinity (same CPU, or the other one for uio_remote)
 *   kbench timer  idle_ms busy_ms cpu sleep_n
 *                                  local timer interrupts (/proc/interrupts LOC) taken per CPU
 *                                  while every CPU idles, then while one thread spins on `cpu`;
 *                                  then clock_nanosleep lateness of 1 ms and 10 ms sleeps on
 *                                  `cpu`, sleep_n each (nanoseconds, not cycles), with the
 *                                  default timer slack and again with 1 ns (`_slack1ns`)
 *   kbench nvme reads qd threads metric
 *                                  4 KiB random reads of /dev/nvme0n1 (O_DIRECT, io_uring through
 *                                  raw system calls; kbench_nvme.c), qd in flight per thread,
 *                                  threads 1 (on CPU 1) or 0 (one per CPU, pinned)
 *
 * Output: `RESULT <metric>.<field>=<value>` lines and `SAMPLES <metric> v1 v2 ...` (all
 * kept samples, warm-up discarded), TSC cycles throughout. Static, no dependencies but libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int bench_nvme(size_t reads, int qd, int threads, const char *metric);
void print_samples_then_sort(const char *metric, uint64_t *v, size_t n);

#define WARMUP 200

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
}

static void die(const char *what)
{
	printf("RESULT error=%s:%s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	if (sched_setaffinity(0, sizeof(s), &s) != 0)
		die("sched_setaffinity");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The SAMPLES line (in measurement order) the plots read; then `v` sorted for percentiles. */
void print_samples_then_sort(const char *metric, uint64_t *v, size_t n)
{
	printf("SAMPLES %s", metric);
	for (size_t i = 0; i < n; i++)
		printf(" %llu", (unsigned long long)v[i]);
	printf("\n");
	qsort(v, n, sizeof(*v), cmp_u64);
}

/* Print samples (in measurement order), then median/p99 with the same index rule as Keel. */
static void report(const char *metric, uint64_t *v, size_t n)
{
	print_samples_then_sort(metric, v, n);
	printf("RESULT %s.samples=%zu\n", metric, n);
	printf("RESULT %s.median_cycles=%llu\n", metric, (unsigned long long)v[(n - 1) * 50 / 100]);
	printf("RESULT %s.p99_cycles=%llu\n", metric, (unsigned long long)v[(n - 1) * 99 / 100]);
	fflush(stdout);
}

static volatile int stop_spinners;
static volatile uint64_t sink;
static char spin_page[4096] __attribute__((aligned(4096)));

static void *spinner(void *arg)
{
	pin((int)(intptr_t)arg);
	uint64_t acc = 0;
	while (!stop_spinners)
		acc += *(volatile char *)&spin_page[(acc & 63) * 64];
	sink = acc;
	return NULL;
}

/* Threads spinning in user mode on CPUs 1..ncpu-1 (this mm resident there). */
static pthread_t *start_spinners(int ncpu)
{
	pthread_t *t = calloc((size_t)ncpu, sizeof(*t));
	stop_spinners = 0;
	for (int c = 1; c < ncpu; c++)
		if (pthread_create(&t[c], NULL, spinner, (void *)(intptr_t)c) != 0)
			die("pthread_create");
	usleep(20000);
	return t;
}

static void stop(pthread_t *t, int ncpu)
{
	stop_spinners = 1;
	for (int c = 1; c < ncpu; c++)
		pthread_join(t[c], NULL);
	free(t);
}

static int bench_ipi(size_t n)
{
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 2) {
		printf("RESULT ipi.error=needs_two_cpus\n");
		return 1;
	}
	pin(0);
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
		die("membarrier_register");
	pthread_t *t = start_spinners(2);
	uint64_t *v = malloc(n * sizeof(*v));
	for (size_t i = 0; i < WARMUP + n; i++) {
		uint64_t t0 = rdtsc();
		if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
			die("membarrier");
		uint64_t t1 = rdtsc();
		if (i >= WARMUP)
			v[i - WARMUP] = t1 - t0;
	}
	stop(t, 2);
	report("ipi", v, n);
	free(v);
	return 0;
}

static int bench_munmap(size_t n)
{
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	char metric[32];
	snprintf(metric, sizeof(metric), "munmap_%dcpu", ncpu);
	pin(0);
	pthread_t *t = start_spinners(ncpu);
	uint64_t *v = malloc(n * sizeof(*v));
	for (size_t i = 0; i < WARMUP + n; i++) {
		volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("mmap");
		p[0] = 1; /* populate: the unmap must tear down a live translation */
		uint64_t t0 = rdtsc();
		if (munmap((void *)p, 4096) != 0)
			die("munmap");
		uint64_t t1 = rdtsc();
		if (i >= WARMUP)
			v[i - WARMUP] = t1 - t0;
	}
	stop(t, ncpu);
	report(metric, v, n);
	free(v);
	return 0;
}

/* edu registers (QEMU docs/specs/edu.rst). */
#define EDU_IRQ_STATUS 0x24
#define EDU_IRQ_RAISE 0x60
#define EDU_IRQ_ACK 0x64
#define PCI_COMMAND 4
#define PCI_COMMAND_INTX_DISABLE 0x400

static void intx_enable(int cfg)
{
	uint16_t cmd;
	if (pread(cfg, &cmd, 2, PCI_COMMAND) != 2)
		die("config_read");
	if (cmd & PCI_COMMAND_INTX_DISABLE) {
		cmd &= (uint16_t)~PCI_COMMAND_INTX_DISABLE;
		if (pwrite(cfg, &cmd, 2, PCI_COMMAND) != 2)
			die("config_write");
	}
}

static int bench_uio(size_t n, int cpu, const char *metric)
{
	pin(cpu);
	const char *dev = "/sys/class/uio/uio0/device";
	char path[128];
	int fd = open("/dev/uio0", O_RDWR);
	if (fd < 0)
		die("open_uio0");
	snprintf(path, sizeof(path), "%s/config", dev);
	int cfg = open(path, O_RDWR);
	if (cfg < 0)
		die("open_config");
	snprintf(path, sizeof(path), "%s/resource0", dev);
	int bar = open(path, O_RDWR | O_SYNC);
	if (bar < 0)
		die("open_resource0");
	volatile uint32_t *edu = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, bar, 0);
	if (edu == MAP_FAILED)
		die("mmap_bar0");
	printf("RESULT %s.edu_id=0x%x\n", metric, edu[0]);
	printf("RESULT %s.task_cpu=%d\n", metric, cpu);
	/* Quiet device, INTx enabled. */
	edu[EDU_IRQ_ACK / 4] = edu[EDU_IRQ_STATUS / 4];
	intx_enable(cfg);
	uint64_t *v = malloc(n * sizeof(*v));
	size_t total = WARMUP + n;
	for (size_t i = 0; i < total; i++) {
		uint32_t count;
		uint64_t t0 = rdtsc();
		edu[EDU_IRQ_RAISE / 4] = 1;
		if (read(fd, &count, 4) != 4)
			die("read_uio");
		uint64_t t1 = rdtsc();
		edu[EDU_IRQ_ACK / 4] = edu[EDU_IRQ_STATUS / 4];
		intx_enable(cfg);
		if (i >= WARMUP)
			v[i - WARMUP] = t1 - t0;
	}
	report(metric, v, n);
	free(v);
	return 0;
}

/* ---- timer: local timer interrupts per CPU and sleep wake-up lateness ---- */

#define TIMER_MAX_CPUS 1024

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The `LOC:` row of /proc/interrupts (local APIC timer interrupts), one count per CPU. */
static int read_loc(uint64_t *counts, int ncpu)
{
	FILE *f = fopen("/proc/interrupts", "r");
	if (!f)
		die("open_proc_interrupts");
	static char line[1 << 16];
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = line;
		while (*p == ' ')
			p++;
		if (strncmp(p, "LOC:", 4) != 0)
			continue;
		p += 4;
		for (int c = 0; c < ncpu; c++) {
			char *end;
			counts[c] = strtoull(p, &end, 10);
			if (end == p)
				break;
			p = end;
			found = c + 1;
		}
		break;
	}
	fclose(f);
	return found;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

/* LOC taken by each CPU over `ms` of sleep on CPU 0; prints `timer.<phase>_*` for `cpu`. */
static void loc_window(const char *phase, uint64_t ms, int cpu, int ncpu)
{
	static uint64_t before[TIMER_MAX_CPUS], after[TIMER_MAX_CPUS];
	if (read_loc(before, ncpu) != ncpu)
		die("parse_loc");
	uint64_t t0 = mono_ns();
	sleep_ms(ms);
	uint64_t window_us = (mono_ns() - t0) / 1000;
	if (read_loc(after, ncpu) != ncpu)
		die("parse_loc");
	printf("SAMPLES timer_%s_percpu", phase);
	for (int c = 0; c < ncpu; c++)
		printf(" %llu", (unsigned long long)(after[c] - before[c]));
	printf("\n");
	uint64_t taken = after[cpu] - before[cpu];
	printf("RESULT timer.%s_window_us=%llu\n", phase, (unsigned long long)window_us);
	printf("RESULT timer.%s_irqs=%llu\n", phase, (unsigned long long)taken);
	/* Interrupts per 1,000 s: the idle target (0.1/s) is 100 in this unit. */
	printf("RESULT timer.%s_milli_per_s=%llu\n", phase,
	       (unsigned long long)(taken * 1000000000ull / (window_us ? window_us : 1)));
	fflush(stdout);
}

/* Lateness (observed - requested, ns) of `n` clock_nanosleep calls of `ms`, after 5 warm-up;
 * metric `sleep_<ms>ms<suffix>`. */
static void sleep_lateness(uint64_t ms, size_t n, const char *suffix)
{
	char metric[48];
	snprintf(metric, sizeof(metric), "sleep_%llums%s", (unsigned long long)ms, suffix);
	uint64_t asked = ms * 1000000ull, early = 0;
	uint64_t *v = malloc(n * sizeof(*v));
	struct timespec req = { 0, (long)asked };
	if (ms >= 1000)
		req = (struct timespec){ (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	for (size_t i = 0; i < 5 + n; i++) {
		uint64_t t0 = mono_ns();
		if (clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL) != 0)
			die("clock_nanosleep");
		uint64_t took = mono_ns() - t0;
		if (i >= 5) {
			early += took < asked;
			v[i - 5] = took > asked ? took - asked : 0;
		}
	}
	print_samples_then_sort(metric, v, n);
	printf("RESULT %s.samples=%zu\n", metric, n);
	printf("RESULT %s.early=%llu\n", metric, (unsigned long long)early);
	printf("RESULT %s.median_ns=%llu\n", metric, (unsigned long long)v[(n - 1) * 50 / 100]);
	printf("RESULT %s.p99_ns=%llu\n", metric, (unsigned long long)v[(n - 1) * 99 / 100]);
	fflush(stdout);
	free(v);
}

static int bench_timer(uint64_t idle_ms, uint64_t busy_ms, int cpu, size_t sleep_n)
{
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 2 || ncpu > TIMER_MAX_CPUS || cpu <= 0 || cpu >= ncpu) {
		printf("RESULT timer.error=cpus_%d_cpu_%d\n", ncpu, cpu);
		return 1;
	}
	printf("RESULT timer.cpu=%d\n", cpu);
	pin(0);
	usleep(200000); /* let the CPUs settle after the previous work */
	loc_window("idle", idle_ms, cpu, ncpu);
	pthread_t t;
	stop_spinners = 0;
	if (pthread_create(&t, NULL, spinner, (void *)(intptr_t)cpu) != 0)
		die("pthread_create");
	usleep(20000);
	loc_window("busy", busy_ms, cpu, ncpu);
	stop_spinners = 1;
	pthread_join(t, NULL);
	pin(cpu);
	/* The default timer slack of a normal task (50 us), then the least there is (1 ns). */
	printf("RESULT timer.default_slack_ns=%d\n", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
	sleep_lateness(1, sleep_n, "");
	sleep_lateness(10, sleep_n, "");
	if (prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0) != 0)
		die("pr_set_timerslack");
	sleep_lateness(1, sleep_n, "_slack1ns");
	sleep_lateness(10, sleep_n, "_slack1ns");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (argc < 2) {
		fprintf(stderr, "usage: kbench ipi|munmap|uio|timer [samples]\n");
		return 2;
	}
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 0) : 10000;
	if (n == 0)
		n = 1;
	if (!strcmp(argv[1], "ipi"))
		return bench_ipi(n);
	if (!strcmp(argv[1], "munmap"))
		return bench_munmap(n);
	if (!strcmp(argv[1], "timer"))
		return bench_timer(n, argc > 3 ? strtoull(argv[3], NULL, 0) : 2000,
				   argc > 4 ? atoi(argv[4]) : 1,
				   argc > 5 ? strtoul(argv[5], NULL, 0) : 200);
	if (!strcmp(argv[1], "nvme"))
		return bench_nvme(n, argc > 3 ? atoi(argv[3]) : 1, argc > 4 ? atoi(argv[4]) : 1,
				  argc > 5 ? argv[5] : "nvme_randread");
	if (!strcmp(argv[1], "uio"))
		return bench_uio(n, argc > 3 ? atoi(argv[3]) : 1, argc > 4 ? argv[4] : "uio");
	fprintf(stderr, "kbench: unknown benchmark %s\n", argv[1]);
	return 2;
}
