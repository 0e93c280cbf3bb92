/*
 * error.c: descriptions of error codes and the BUG: abort used by TERN_ASSERT.
 */
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tern_strerror(int err)
{
    switch (err) {
    case TERN_OK:
        return "success";
    case TERN_EPROTO:
        return "protocol error (malformed input)";
    case TERN_ECORRUPT:
        return "corrupt data (checksum or structure check failed)";
    case TERN_EPARTIAL:
        return "incomplete input (more bytes needed)";
    case TERN_ECONFIG:
        return "invalid configuration";
    case TERN_EQUOTA:
        return "quota exceeded";
    case TERN_ECLOSED:
        return "closed";
    case TERN_ENOTFOUND:
        return "not found";
    case TERN_EDENIED:
        return "not authorized";
    case TERN_EVERSION:
        return "unsupported version";
    case TERN_EUTF8:
        return "malformed UTF-8";
    default:
        break;
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

void tern_bug(const char *file, int line, const char *expr)
{
    fprintf(stderr, "BUG: %s:%d: assertion failed: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}
