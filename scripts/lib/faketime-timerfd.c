/*
 * Preloaded before libfaketime by `scripts/test --faketime`: passes timerfd_settime(2) straight to
 * the kernel.
 *
 * Why: libfaketime 0.9.10 (Debian 12) intercepts timerfd_settime and converts every absolute
 * deadline (TFD_TIMER_ABSTIME) from faked to real time as if the timer ran on CLOCK_REALTIME
 * (its timer_settime_common says "only CLOCK_REALTIME is handled"; a timer fd does not tell it its
 * clock). libdispatch arms its timers as absolute CLOCK_MONOTONIC/CLOCK_BOOTTIME deadlines on timer
 * fds, so under faketime every Task.sleep, DispatchQueue.asyncAfter and timeout of a Swift program
 * was moved hours away, even with FAKETIME_DONT_FAKE_MONOTONIC=1: the first Task.sleep of a
 * 5-line program never returned, and the test suite hung with daemons that never shut down.
 * Wall-clock reads (Date(), time(2), clock_gettime(CLOCK_REALTIME)) stay faked; only the timer
 * fds keep real deadlines, which is what libdispatch computed them from.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

int timerfd_settime(int fd, int flags, const struct itimerspec *new_value, struct itimerspec *old_value) {
    return (int)syscall(SYS_timerfd_settime, fd, flags, new_value, old_value);
}

int timerfd_gettime(int fd, struct itimerspec *curr_value) {
    return (int)syscall(SYS_timerfd_gettime, fd, curr_value);
}
