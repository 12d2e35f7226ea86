#define _GNU_SOURCE
#include "CKizunaHost.h"

#include <dlfcn.h>
#include <errno.h>
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
