#define _GNU_SOURCE
#include "CKizunaRuntime.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int kizuna_thread_set_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int kizuna_thread_get_name(char *buffer, size_t length) {
    return pthread_getname_np(pthread_self(), buffer, length);
}

size_t kizuna_thread_stack_size(void) {
    pthread_attr_t attr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return 0;
    pthread_attr_getstacksize(&attr, &size);
    pthread_attr_destroy(&attr);
    return size;
}

size_t kizuna_thread_stack_minimum(void) {
    long value = sysconf(_SC_THREAD_STACK_MIN);
    return value > 0 ? (size_t)value : (size_t)PTHREAD_STACK_MIN;
}

int kizuna_affinity_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    return CPU_COUNT(&set);
}

uint64_t kizuna_monotonic_nanoseconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static __thread void *current_pool = NULL;

void *kizuna_thread_current_pool(void) { return current_pool; }
void kizuna_thread_set_current_pool(void *pool) { current_pool = pool; }

void kizuna_mutex_init(void *mutex) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(mutex, &attr);
    pthread_mutexattr_destroy(&attr);
}

struct kizuna_condition {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
};

kizuna_condition *kizuna_condition_create(void) {
    kizuna_condition *condition = malloc(sizeof(kizuna_condition));
    if (condition == NULL) abort();
    kizuna_mutex_init(&condition->mutex);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&condition->cond, &attr);
    pthread_condattr_destroy(&attr);
    return condition;
}

void kizuna_condition_destroy(kizuna_condition *condition) {
    pthread_cond_destroy(&condition->cond);
    pthread_mutex_destroy(&condition->mutex);
    free(condition);
}

void kizuna_condition_lock(kizuna_condition *condition) { pthread_mutex_lock(&condition->mutex); }
void kizuna_condition_unlock(kizuna_condition *condition) { pthread_mutex_unlock(&condition->mutex); }
void kizuna_condition_wait(kizuna_condition *condition) { pthread_cond_wait(&condition->cond, &condition->mutex); }

int kizuna_condition_wait_until(kizuna_condition *condition, uint64_t deadline_ns) {
    struct timespec deadline;
    deadline.tv_sec = (time_t)(deadline_ns / 1000000000ull);
    deadline.tv_nsec = (long)(deadline_ns % 1000000000ull);
    int result = pthread_cond_timedwait(&condition->cond, &condition->mutex, &deadline);
    return result == ETIMEDOUT ? 1 : 0;
}

void kizuna_condition_signal(kizuna_condition *condition) { pthread_cond_signal(&condition->cond); }
void kizuna_condition_broadcast(kizuna_condition *condition) { pthread_cond_broadcast(&condition->cond); }

struct thread_start {
    void (*body)(void *);
    void *context;
};

static void *thread_trampoline(void *argument) {
    struct thread_start start = *(struct thread_start *)argument;
    free(argument);
    start.body(start.context);
    return NULL;
}

int kizuna_thread_start(uint64_t *thread_out, size_t stack_size, void (*body)(void *), void *context) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack_size > 0) {
        int result = pthread_attr_setstacksize(&attr, stack_size);
        if (result != 0) {
            pthread_attr_destroy(&attr);
            return result;
        }
    }
    struct thread_start *start = malloc(sizeof(struct thread_start));
    if (start == NULL) abort();
    start->body = body;
    start->context = context;
    pthread_t thread;
    int result = pthread_create(&thread, &attr, thread_trampoline, start);
    pthread_attr_destroy(&attr);
    if (result != 0) {
        free(start);
        return result;
    }
    *thread_out = (uint64_t)thread;
    return 0;
}

int kizuna_thread_join(uint64_t thread) { return pthread_join((pthread_t)thread, NULL); }
int kizuna_thread_detach(uint64_t thread) { return pthread_detach((pthread_t)thread); }
