#define _GNU_SOURCE
#include "CKizunaFiles.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int kizuna_rename_noreplace(int dirfd, const char *from, const char *to) {
    if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -errno;
    if (linkat(dirfd, from, dirfd, to, 0) != 0) return -errno;
    unlinkat(dirfd, from, 0);
    return 0;
}

int kizuna_start_writeback(int fd, long long offset, long long count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : -errno;
}
