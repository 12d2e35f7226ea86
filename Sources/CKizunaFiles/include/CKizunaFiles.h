// File-system calls for received files that Glibc's Swift module does not expose.
#ifndef CKIZUNA_FILES_H
#define CKIZUNA_FILES_H

/// Renames `from` to `to`, both relative to the directory `dirfd`, failing with EEXIST
/// instead of replacing an existing `to` (renameat2 with RENAME_NOREPLACE; where the file
/// system does not support that, a hard link and an unlink, which are as safe).
/// Returns 0, or -errno.
int kizuna_rename_noreplace(int dirfd, const char *from, const char *to);

/// Starts writing `count` bytes of `fd` from `offset` to disk without waiting
/// (sync_file_range with SYNC_FILE_RANGE_WRITE), so that the fsync at the end of a
/// transfer finds little left to do. Returns 0, or -errno.
int kizuna_start_writeback(int fd, long long offset, long long count);

#endif
