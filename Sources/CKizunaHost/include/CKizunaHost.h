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

/// For the fuzzer: on a crash (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT), writes
/// the input last given to `kizuna_fuzz_set_input` to `fd`, then dies of the signal as it
/// would have. Returns 0, or -errno.
int kizuna_fuzz_arm_crash_report(int fd);

/// The input being tried now (kept by pointer; it must live until the next call).
void kizuna_fuzz_set_input(const void *bytes, unsigned long count);

#endif
