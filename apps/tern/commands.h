/*
 * commands.h: the subcommands of the `tern` program.
 *
 * Each apps/tern/cmd_<name>.c defines tern_cmd_<name>, which takes argc/argv starting at its
 * own name and returns the process exit status (0 ok, 1 runtime failure, 2 usage or config
 * error), and tern_cmd_<name>_summary, one line for `tern help`. The build generates
 * tern_commands.inc, one TERN_COMMAND(name) per file, which declares and lists them.
 */
#ifndef TERN_APPS_COMMANDS_H
#define TERN_APPS_COMMANDS_H

#define TERN_COMMAND(name)                                                                         \
    int tern_cmd_##name(int argc, char **argv);                                                    \
    extern const char tern_cmd_##name##_summary[];
#include "tern_commands.inc"
#undef TERN_COMMAND

#endif
