/*
 * main.c: the `tern` program. One binary, one subcommand per role (`tern broker`,
 * `tern serve`, `tern log`, ...). Each subcommand's code lives in apps/tern/cmd_<name>.c and
 * its module; this file only dispatches.
 */
#include "tern/commands.h"

#include <stdio.h>
#include <string.h>

static const struct tern_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
#define TERN_COMMAND(name) { #name, tern_cmd_##name, tern_cmd_##name##_summary },
#include "tern_commands.inc"
#undef TERN_COMMAND
};

static void usage(FILE *out)
{
    fprintf(out, "usage: tern COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`tern COMMAND --help` describes each command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0
        || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "tern: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
