// Small C helpers for the runtime's worker threads: what Glibc's Swift module
// does not expose (pthread_setname_np needs _GNU_SOURCE, CPU_COUNT is a macro)
// and a thread-local slot that Swift has no syntax for.
#ifndef CKIZUNA_RUNTIME_H
#define CKIZUNA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

/// Names the calling thread. Linux keeps at most 15 bytes; longer names fail with ERANGE.
int kizuna_thread_set_name(const char *name);

/// Copies the calling thread's name into `buffer` (at least 16 bytes).
int kizuna_thread_get_name(char *buffer, size_t length);

/// The stack size of the calling thread, as its pthread attributes report it.
size_t kizuna_thread_stack_size(void);

/// The smallest stack a new thread may be given on this platform.
size_t kizuna_thread_stack_minimum(void);

/// The number of CPUs this process may run on (sched_getaffinity), or 0 if unknown.
int kizuna_affinity_cpu_count(void);

/// A CPU hint for spin-wait loops (x86 `pause`).
static inline void kizuna_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// A monotonic clock reading in nanoseconds.
uint64_t kizuna_monotonic_nanoseconds(void);

/// A per-thread pointer the runtime uses to know which worker pool the calling thread belongs to.
void *kizuna_thread_current_pool(void);
void kizuna_thread_set_current_pool(void *pool);

/// Initializes an adaptive mutex: it spins briefly under contention before it sleeps,
/// and sleeps on a plain futex (Synchronization.Mutex uses a priority-inheritance one).
/// `mutex` points to a pthread_mutex_t (untyped here so that Swift sees that type from Glibc only).
void kizuna_mutex_init(void *mutex);

/// A mutex plus condition variable whose timed wait uses the monotonic clock.
typedef struct kizuna_condition kizuna_condition;
kizuna_condition *kizuna_condition_create(void);
void kizuna_condition_destroy(kizuna_condition *condition);
void kizuna_condition_lock(kizuna_condition *condition);
void kizuna_condition_unlock(kizuna_condition *condition);
void kizuna_condition_wait(kizuna_condition *condition);
/// Waits until signalled or until the monotonic clock reaches `deadline_ns`. Returns 0 when signalled, 1 on timeout.
int kizuna_condition_wait_until(kizuna_condition *condition, uint64_t deadline_ns);
void kizuna_condition_signal(kizuna_condition *condition);
void kizuna_condition_broadcast(kizuna_condition *condition);

/// Starts a thread with the given stack size (0 = platform default) running `body(context)`.
/// Returns 0 on success or an errno value. The thread's id is written to `thread_out`.
int kizuna_thread_start(uint64_t *thread_out, size_t stack_size, void (*body)(void *), void *context);
/// Waits for a thread started by kizuna_thread_start to end.
int kizuna_thread_join(uint64_t thread);
/// Lets a thread started by kizuna_thread_start end on its own.
int kizuna_thread_detach(uint64_t thread);

#endif
