/*
 * commands.h: the subcommands of the `tern` program. Each takes argc/argv starting at its own
 * name and returns the process exit status (0 ok, 1 runtime failure, 2 usage or config error).
 */
#ifndef TERN_APPS_COMMANDS_H
#define TERN_APPS_COMMANDS_H

int tern_cmd_version(int argc, char **argv);

/* Commands whose module exists in this build; each module's issue adds its line here. */
#if defined(TERN_HAVE_BROKER)
int tern_cmd_broker(int argc, char **argv);
#define TERN_BROKER_COMMAND { "broker", tern_cmd_broker, "run the MQTT broker" },
#else
#define TERN_BROKER_COMMAND
#endif

#define TERN_EXTRA_COMMANDS TERN_BROKER_COMMAND

#endif
