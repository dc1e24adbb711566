/* Opening input files as regular files only, checking output paths, and SIGXFSZ (see sx_file.h). */
#include "autograd/sx_file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *mode_kind(mode_t m) {
    if (S_ISREG(m)) return "a regular file";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

const char *sx_file_kind(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0) return "missing";
    return mode_kind(st.st_mode);
}

static sx_status not_regular(const char *path, const char *what, mode_t m) {
    return sx_errorf("%s: the %s is %s, not a file", path, what, mode_kind(m));
}

/* Paths longer than this are refused: callers build names in fixed buffers of about 1 KiB (DIR/config.json, X.tmp.PID),
 * and a cut name would be another file. */
#define SX_FILE_MAX_PATH 1000

static bool too_long(const char *path) { return strlen(path) > SX_FILE_MAX_PATH; }

sx_status sx_file_check_regular(const char *path, const char *what) {
    if (!path || !path[0]) return sx_errorf("the %s path is empty", what);
    if (too_long(path))
        return sx_errorf("%.64s...: the %s path is longer than %d characters", path, what, SX_FILE_MAX_PATH);
    struct stat st;
    if (stat(path, &st) != 0) return sx_errorf("%s: cannot open the %s: %s", path, what, strerror(errno));
    if (!S_ISREG(st.st_mode)) return not_regular(path, what, st.st_mode);
    return sx_ok();
}

sx_status sx_file_open_read(const char *path, const char *what, int *fd_out, int64_t *size) {
    *fd_out = -1;
    if (!path || !path[0]) return sx_errorf("the %s path is empty", what);
    if (too_long(path))
        return sx_errorf("%.64s...: the %s path is longer than %d characters", path, what, SX_FILE_MAX_PATH);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return sx_errorf("%s: cannot open the %s: %s", path, what, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sx_errorf("%s: cannot stat the %s: %s", path, what, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return not_regular(path, what, st.st_mode);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (size) *size = (int64_t)st.st_size;
    *fd_out = fd;
    return sx_ok();
}

sx_status sx_file_fopen_read(const char *path, const char *what, FILE **out, int64_t *size) {
    *out = NULL;
    int fd;
    SX_TRY(sx_file_open_read(path, what, &fd, size));
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return sx_errorf("%s: cannot open the %s: %s", path, what, strerror(e));
    }
    *out = f;
    return sx_ok();
}

sx_status sx_file_read_all(const char *path, const char *what, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    int fd;
    int64_t size = 0;
    SX_TRY(sx_file_open_read(path, what, &fd, &size));
    if (size < 0 || (uint64_t)size > max_bytes) {
        close(fd);
        return sx_errorf("%s: the %s is %lld bytes, more than the %zu a %s may have", path, what, (long long)size,
                         max_bytes, what);
    }
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        close(fd);
        return sx_errorf("%s: out of memory reading %lld bytes", path, (long long)size);
    }
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t r = read(fd, buf + got, (size_t)size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return sx_errorf("%s: read error: %s", path, strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)size) {
        free(buf);
        return sx_errorf("%s: short read (%zu of %lld bytes: the file changed while being read?)", path, got,
                         (long long)size);
    }
    buf[got] = 0;
    *out = buf;
    if (len) *len = got;
    return sx_ok();
}

sx_status sx_file_check_output(const char *path, const char *flag, bool dir_ok) {
    if (!path || !path[0]) return sx_errorf("%s: the path is empty", flag);
    if (too_long(path))
        return sx_errorf("%s %.64s...: the path is longer than %d characters", flag, path, SX_FILE_MAX_PATH);
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode) && !dir_ok) return sx_errorf("%s %s: is a directory, not a file name", flag, path);
        if (!S_ISDIR(st.st_mode) && dir_ok)
            return sx_errorf("%s %s: exists and is %s, not a directory", flag, path, mode_kind(st.st_mode));
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
            return sx_errorf("%s %s: is %s, not a file", flag, path, mode_kind(st.st_mode));
        return sx_ok();
    }
    if (dir_ok) return sx_ok(); /* a directory is created with its parents */
    /* the parent must be an existing directory: the file is written beside it as a temporary, then renamed */
    size_t n = strlen(path);
    char *parent = malloc(n + 2);
    if (!parent) return sx_errorf("%s: out of memory", flag);
    memcpy(parent, path, n + 1);
    while (n > 1 && parent[n - 1] == '/') parent[--n] = 0;
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, n + 2, ".");
    else if (slash == parent)
        slash[1] = 0;
    else
        *slash = 0;
    sx_status s = sx_ok();
    if (stat(parent, &st) != 0)
        s = sx_errorf("%s %s: the directory %s does not exist: %s", flag, path, parent, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        s = sx_errorf("%s %s: %s is %s, not a directory", flag, path, parent, mode_kind(st.st_mode));
    free(parent);
    return s;
}

bool sx_file_same(const char *a, const char *b) {
    struct stat x, y;
    if (!a || !b || stat(a, &x) != 0 || stat(b, &y) != 0) return false;
    return x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

void sx_file_ignore_sigxfsz(void) {
#ifdef SIGXFSZ
    signal(SIGXFSZ, SIG_IGN);
#endif
}

sx_status sx_file_write_atomic(const char *path, const char *what, const void *data, size_t len) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return sx_errorf("%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    bool ok = fd >= 0;
    for (size_t done = 0; ok && done < len;) {
        ssize_t w = write(fd, (const char *)data + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        ok = w > 0;
        if (ok) done += (size_t)w;
    }
    int e = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok && fd >= 0) unlink(tmp);
    free(tmp);
    if (!ok) return sx_errorf("%s: cannot write the %s: %s", path, what, strerror(e ? e : EIO));
    return sx_ok();
}
