/*
 * cmd_version.c: `tern version`.
 */
#include "tern/commands.h"

#include <stdio.h>

const char tern_cmd_version_summary[] = "print tern's version";

int tern_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("tern %s\n", TERN_VERSION);
    return 0;
}
