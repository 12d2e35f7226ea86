#define _GNU_SOURCE
#include "CKizunaHost.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

long kizuna_socket_peer_uid(int fd) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return (long)credentials.uid;
}

static int fill_address(struct sockaddr_un *address, const char *path) {
    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(address->sun_path)) return -ENAMETOOLONG;
    strcpy(address->sun_path, path);
    return 0;
}

int kizuna_unix_listen(const char *path) {
    struct sockaddr_un address;
    int result = fill_address(&address, path);
    if (result != 0) return result;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    // Create the socket file owner-only from the start: no window where others can connect.
    mode_t previous = umask(0177);
    result = bind(fd, (struct sockaddr *)&address, sizeof(address));
    int bind_errno = errno;
    umask(previous);
    if (result != 0) {
        close(fd);
        return -bind_errno;
    }
    if (listen(fd, 64) != 0) {
        int listen_errno = errno;
        close(fd);
        return -listen_errno;
    }
    return fd;
}

int kizuna_unix_connect(const char *path) {
    struct sockaddr_un address;
    int result = fill_address(&address, path);
    if (result != 0) return result;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        int connect_errno = errno;
        close(fd);
        return -connect_errno;
    }
    return fd;
}

int kizuna_accept(int fd) {
    int connection = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    return connection >= 0 ? connection : -errno;
}

const char *kizuna_image_containing(const void *address) {
    Dl_info info;
    if (dladdr(address, &info) == 0) return NULL;
    return info.dli_fname;
}

// The fuzzer's crash report: async-signal-safe (write, sigaction, raise only).
static int fuzz_report_fd = -1;
static const void *volatile fuzz_input = 0;
static volatile unsigned long fuzz_input_count = 0;

static void fuzz_crashed(int signal_number) {
    if (fuzz_report_fd >= 0 && fuzz_input != 0) {
        const char *bytes = (const char *)fuzz_input;
        unsigned long left = fuzz_input_count;
        while (left > 0) {
            ssize_t written = write(fuzz_report_fd, bytes, left);
            if (written <= 0) break;
            bytes += written;
            left -= (unsigned long)written;
        }
    }
    struct sigaction fallback;
    memset(&fallback, 0, sizeof(fallback));
    fallback.sa_handler = SIG_DFL;
    sigaction(signal_number, &fallback, 0);
    raise(signal_number);
}

int kizuna_fuzz_arm_crash_report(int fd) {
    fuzz_report_fd = fd;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = fuzz_crashed;
    action.sa_flags = SA_RESETHAND | SA_NODEFER;
    int signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT};
    for (unsigned i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        if (sigaction(signals[i], &action, 0) != 0) return -errno;
    }
    return 0;
}

void kizuna_fuzz_set_input(const void *bytes, unsigned long count) {
    fuzz_input = bytes;
    fuzz_input_count = count;
}

int kizuna_symbol_is_function(void *handle, const char *name) {
    void *address = dlsym(handle, name);
    if (address == NULL) return -1;
    Dl_info info;
    const ElfW(Sym) *symbol = NULL;
    if (dladdr1(address, &info, (void **)&symbol, RTLD_DL_SYMENT) == 0 || symbol == NULL) return 0;
    return ELF64_ST_TYPE(symbol->st_info) == STT_FUNC ? 1 : 0;
}

/// Copies `count` bytes from `address` in this process into `buffer` through the kernel:
/// an unmapped or unreadable page fails with EFAULT instead of faulting. Returns the bytes
/// copied, or -1.
static long copy_checked(void *buffer, const void *address, unsigned long count) {
    struct iovec local = {buffer, count};
    struct iovec remote = {(void *)address, count};
    return (long)process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
}

int kizuna_memory_readable(const void *address, unsigned long count) {
    unsigned char buffer[256];
    const unsigned char *cursor = address;
    while (count > 0) {
        unsigned long part = count < sizeof buffer ? count : sizeof buffer;
        if (copy_checked(buffer, cursor, part) != (long)part) return 0;
        cursor += part;
        count -= part;
    }
    return 1;
}

long kizuna_checked_strlen(const void *address, unsigned long limit) {
    unsigned char byte;
    const unsigned char *cursor = address;
    for (unsigned long length = 0; length < limit; length++) {
        if (copy_checked(&byte, cursor + length, 1) != 1) return -1;
        if (byte == 0) return (long)length;
    }
    return -1;
}

int kizuna_pidfd_open(int pid) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

int kizuna_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}
