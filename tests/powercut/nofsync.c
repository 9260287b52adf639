/* The power-cut test's self-check: loaded into the server with LD_PRELOAD,
 * it turns fsync and fdatasync into no-ops and opens files without O_DSYNC
 * or O_SYNC, so nothing the server writes is ever made durable. The test must
 * then report lost messages and partial files; if it does not, it cannot see
 * a missing fsync either. Never used outside that check.
 *
 *   cc -shared -fPIC -O2 -o nofsync.so nofsync.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>

int fsync(int fd) { (void)fd; return 0; }
int fdatasync(int fd) { (void)fd; return 0; }

static int without_sync(int flags) { return flags & ~(O_DSYNC | O_SYNC); }

typedef int (*open_fn)(const char *, int, ...);

static int forward(const char *name, open_fn *real, const char *path, int flags, mode_t mode) {
    if (!*real) *real = (open_fn)dlsym(RTLD_NEXT, name);
    return (*real)(path, without_sync(flags), mode);
}

int open(const char *path, int flags, ...) {
    static open_fn real;
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    return forward("open", &real, path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    static open_fn real;
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    return forward("open64", &real, path, flags, mode);
}
