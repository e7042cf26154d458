/* Timestamps for the recorder.
 *
 * The hot path reads a raw tick counter: the TSC on x86-64 (about 10 ns a read,
 * against about 24 ns for clock_gettime through the vDSO), the virtual counter
 * on arm64, or CLOCK_MONOTONIC itself.  Python decides whether ticks are safe
 * (invariant TSC used as the kernel's clocksource) and passes use_ticks.
 * Ticks are turned into CLOCK_MONOTONIC nanoseconds when a window is written,
 * from two (ticks, monotonic) pairs read at the window's start and stop: the
 * conversion error is then bounded by the jitter of those two reads whatever
 * the window's length.
 */
#ifndef EXECTRACE_CLOCK_H
#define EXECTRACE_CLOCK_H

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <x86intrin.h>
#define ET_HAVE_TICKS 1
static inline int64_t et_read_ticks(void) { return (int64_t)__rdtsc(); }
#elif defined(__aarch64__)
#define ET_HAVE_TICKS 1
static inline int64_t et_read_ticks(void)
{
    uint64_t value;
    __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(value));
    return (int64_t)value;
}
#else
#define ET_HAVE_TICKS 0
static inline int64_t et_read_ticks(void) { return 0; }
#endif

static inline int64_t et_clock_ns(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0) {
        return -1;
    }
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t et_monotonic_ns(void) { return et_clock_ns(CLOCK_MONOTONIC); }
static inline int64_t et_realtime_ns(void) { return et_clock_ns(CLOCK_REALTIME); }

static inline int64_t et_boottime_ns(void)
{
#ifdef CLOCK_BOOTTIME
    return et_clock_ns(CLOCK_BOOTTIME);
#else
    return -1;
#endif
}

/* A (ticks, monotonic ns) pair read as close together as possible: the
 * monotonic read is the midpoint of two tick reads, and the tightest of a few
 * attempts is kept. */
typedef struct {
    int64_t ticks;
    int64_t mono_ns;
} et_clock_pair;

static inline et_clock_pair et_read_clock_pair(int use_ticks)
{
    et_clock_pair best = {0, 0};
    if (!use_ticks) {
        best.mono_ns = et_monotonic_ns();
        best.ticks = best.mono_ns;
        return best;
    }
    int64_t best_span = INT64_MAX;
    for (int attempt = 0; attempt < 5; attempt++) {
        int64_t before = et_read_ticks();
        int64_t mono = et_monotonic_ns();
        int64_t after = et_read_ticks();
        if (after - before < best_span) {
            best_span = after - before;
            best.ticks = before + (after - before) / 2;
            best.mono_ns = mono;
        }
    }
    return best;
}

#endif /* EXECTRACE_CLOCK_H */
