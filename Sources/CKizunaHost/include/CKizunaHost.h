// Socket helpers for the host's control socket that Glibc's Swift module does not expose.
#ifndef CKIZUNA_HOST_H
#define CKIZUNA_HOST_H

#include <sys/types.h>

/// The user id of the process at the other end of a connected Unix socket, or -1.
long kizuna_socket_peer_uid(int fd);

/// Creates a Unix stream socket bound to `path` with owner-only permissions (0600) and
/// listening. Returns the descriptor, or -errno.
int kizuna_unix_listen(const char *path);

/// Accepts a connection on `fd` with close-on-exec set. Returns the descriptor, or -errno.
int kizuna_accept(int fd);

/// Connects to the Unix stream socket at `path`. Returns the descriptor, or -errno.
int kizuna_unix_connect(const char *path);

/// The path of the loaded image (executable or shared library) that contains `address`,
/// or NULL (dladdr, which Glibc's Swift module does not expose).
const char *kizuna_image_containing(const void *address);

/// What kind of symbol `name` is in the library `handle` (dlopen's handle): 1 a function,
/// 0 something else (data, TLS, an indirect function), -1 not defined there. Uses
/// dladdr1(RTLD_DL_SYMENT), which Glibc's Swift module does not expose.
int kizuna_symbol_is_function(void *handle, const char *name);

/// Whether the `count` bytes at `address` are readable memory of this process, found
/// without touching them (process_vm_readv on ourselves fails with EFAULT where a load
/// would fault). Returns 1 if readable, 0 if not.
int kizuna_memory_readable(const void *address, unsigned long count);

/// The length of the NUL-terminated string at `address`, read only through
/// process_vm_readv, if it ends within `limit` bytes of readable memory; else -1.
long kizuna_checked_strlen(const void *address, unsigned long limit);

/// A descriptor that becomes readable when process `pid` ends (pidfd_open), or -errno.
int kizuna_pidfd_open(int pid);

/// pipe2(fds, O_CLOEXEC), which Glibc's Swift module does not expose. Returns 0, or -1.
int kizuna_pipe_cloexec(int fds[2]);

/// For the fuzzer: on a crash (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT), writes
/// the input last given to `kizuna_fuzz_set_input` to `fd`, then dies of the signal as it
/// would have. Returns 0, or -errno.
int kizuna_fuzz_arm_crash_report(int fd);

/// The input being tried now (kept by pointer; it must live until the next call).
void kizuna_fuzz_set_input(const void *bytes, unsigned long count);

#endif
