/*
 * error.h: tern's error codes and assertions.
 *
 * Every fallible function returns int: 0 on success, a negative code on failure. System call
 * failures are passed on as -errno; tern's own conditions use the TERN_E* codes below, which lie
 * outside the errno range. tern_strerror() turns either kind into words.
 *
 * Three kinds of failure are never mixed:
 *   - a programmer's mistake (a broken invariant, misuse of an API) is TERN_ASSERT: it aborts
 *     with "BUG:" and the location, in every build;
 *   - bad bytes from the network, a device or the disk are TERN_EPROTO / TERN_ECORRUPT and are
 *     never an assert: they cost a counter and a log line;
 *   - resource failure (memory, disk, descriptors) is TERN_ENOMEM / TERN_EIO / -errno and is
 *     propagated to the caller.
 */
#ifndef TERN_BASE_ERROR_H
#define TERN_BASE_ERROR_H

#include <errno.h>

/* Codes that are errno values by another name, so callers can test one set of names. */
#define TERN_OK 0
#define TERN_ENOMEM (-ENOMEM)
#define TERN_EIO (-EIO)
#define TERN_EINVAL (-EINVAL)
#define TERN_EAGAIN (-EAGAIN)
#define TERN_ENOSPC (-ENOSPC)
#define TERN_EEXIST (-EEXIST)
#define TERN_ENOENT (-ENOENT)
#define TERN_ERANGE (-ERANGE)
#define TERN_ETOOBIG (-EMSGSIZE)

/* tern's own conditions, outside the errno range. */
#define TERN_EPROTO (-10001)    /* malformed bytes from a peer: protocol violation */
#define TERN_ECORRUPT (-10002)  /* bytes on disk fail a checksum or a structural check */
#define TERN_EPARTIAL (-10003)  /* input is a valid prefix: more bytes are needed */
#define TERN_ECONFIG (-10004)   /* a configuration file or option is invalid */
#define TERN_EQUOTA (-10005)    /* a configured limit (disk budget, series, queue) is reached */
#define TERN_ECLOSED (-10006)   /* the object is shut down and accepts no more work */
#define TERN_ENOTFOUND (-10007) /* a looked-up key, topic or series does not exist */
#define TERN_EDENIED (-10008)   /* authentication or authorization refused */
#define TERN_EVERSION (-10009)  /* data or peer speaks an unsupported format/protocol version */
#define TERN_EUTF8                                                                                 \
    (-10010) /* a string is not well-formed UTF-8 (or has a forbidden code point)                  \
              */

/* tern_strerror returns a static description of a code from this file or of a -errno. */
const char *tern_strerror(int err);

/* tern_bug is called by TERN_ASSERT; it prints "BUG: file:line: expr" and aborts. */
_Noreturn void tern_bug(const char *file, int line, const char *expr);

#define TERN_ASSERT(expr) ((expr) ? (void)0 : tern_bug(__FILE__, __LINE__, #expr))

#endif
