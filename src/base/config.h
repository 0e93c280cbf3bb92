/*
 * config.h: the configuration of every tern program: one file format, one schema mechanism,
 * and command-line overrides. The format is specified, with examples, in docs/config.md.
 *
 * A program declares its keys as schema tables (tern_config_schema arrays ended by an entry
 * whose key is NULL), one per module, and adds each to a tern_config. Then it loads a file
 * and/or command-line overrides (tern_config_parse_args does both), and reads typed values
 * with the getters. Everything that is not in a schema is rejected, and every rejection is
 * TERN_ECONFIG with a message for the user, read with tern_config_error(), in the form
 *
 *     FILE:LINE: unknown key 'x' in section [broker]
 *     FILE:LINE: broker.max_connections: expected an integer, got 'abc'
 *     command line: logging.level: expected one of error, warn, info, debug; got 'loud'
 *
 * Precedence: command line > file > schema default, whatever the order of the calls or of the
 * arguments. A key set twice in the file is an error (unless it is a list, whose items then
 * accumulate); on the command line the last value wins (lists accumulate there too, and replace
 * the file's list as a whole).
 *
 * The file is untrusted input: parsing is bounded, never asserts, and reports the first error.
 * Getters are for the program's own keys: asking for a key that no schema declares, or with the
 * wrong type, is a BUG (TERN_ASSERT). A tern_config is not thread-safe while being loaded; once
 * loaded, concurrent getters are fine. Schema tables are borrowed and must outlive the config
 * (static tables, normally).
 */
#ifndef TERN_BASE_CONFIG_H
#define TERN_BASE_CONFIG_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum tern_config_type {
    TERN_CONFIG_STRING,   /* any text */
    TERN_CONFIG_INT,      /* signed 64-bit decimal integer */
    TERN_CONFIG_SIZE,     /* bytes: 512, 64KiB, 10MB, 1GiB (read as int64 bytes) */
    TERN_CONFIG_DURATION, /* 250ms, 10s, 5m, 2h, 7d, or 0 (read as int64 ms) */
    TERN_CONFIG_BOOL,     /* true/false, yes/no, on/off, 1/0 */
    TERN_CONFIG_ENUM,     /* one of the schema's choices ("a|b|c"), read as a string */
} tern_config_type;

/* Schema flags. */
#define TERN_CONFIG_LIST 0x1u     /* a list: comma-separated items and/or repeated keys */
#define TERN_CONFIG_REQUIRED 0x2u /* tern_config_check_required fails while it is unset */

typedef struct tern_config_schema {
    const char *key; /* "section.name" (or "name" outside any section); NULL ends */
    tern_config_type type;
    const char *default_value; /* in file syntax, e.g. "64MiB"; NULL: no default */
    const char *help;          /* one line for `tern config keys` and docs */
    int64_t min, max;          /* inclusive bounds for INT/SIZE/DURATION (bytes, ms) when
                                  min != 0 or max != 0; ignored otherwise */
    unsigned flags;            /* TERN_CONFIG_LIST, TERN_CONFIG_REQUIRED */
    const char *choices;       /* ENUM only: "error|warn|info|debug" */
} tern_config_schema;

/* Where a key's value came from. */
typedef enum tern_config_source {
    TERN_CONFIG_UNSET = 0,
    TERN_CONFIG_FROM_DEFAULT,
    TERN_CONFIG_FROM_FILE,
    TERN_CONFIG_FROM_COMMAND_LINE,
} tern_config_source;

typedef struct tern_config tern_config;

/* tern_config_create makes an empty config (no keys) in *out. Returns 0 or TERN_ENOMEM. */
int tern_config_create(tern_config **out);
/* tern_config_destroy frees cfg and every string a getter returned. NULL is allowed. */
void tern_config_destroy(tern_config *cfg);

/*
 * tern_config_add_schema declares the keys of table (borrowed; NULL-key terminated) and
 * applies their defaults. Returns 0, TERN_ENOMEM, or TERN_EINVAL with a message if the table
 * itself is wrong (bad key name, key already declared, ENUM without choices, a default that
 * does not parse): that is a programmer's error reported early, so tests catch it.
 */
int tern_config_add_schema(tern_config *cfg, const tern_config_schema *table);

/*
 * tern_config_parse_string reads config text data[0..len) (need not be NUL-terminated, may hold
 * any bytes), naming it `name` in messages. Returns 0, TERN_ECONFIG (message in
 * tern_config_error; values read before the bad line stay applied), or TERN_ENOMEM.
 */
int tern_config_parse_string(tern_config *cfg, const char *name, const char *data, size_t len);

/*
 * tern_config_load_file reads the file at path. Returns as parse_string, or -errno (e.g.
 * TERN_ENOENT) when the file cannot be read, with the message "PATH: cannot read: REASON".
 */
int tern_config_load_file(tern_config *cfg, const char *path);

/*
 * tern_config_set applies one command-line value (key "section.name", value in file syntax:
 * quotes optional, commas split lists). Returns 0, TERN_ECONFIG (unknown key, bad value), or
 * TERN_ENOMEM.
 */
int tern_config_set(tern_config *cfg, const char *key, const char *value);

/*
 * tern_config_parse_args takes the config options out of argv[1..*argc) and applies them:
 *   --config FILE | --config=FILE      load FILE (at most once)
 *   --set KEY=VALUE | --set=KEY=VALUE  override KEY
 *   --KEY VALUE | --KEY=VALUE          the same, when KEY contains a '.' (e.g.
 * --logging.level=debug) or is a declared key The file is loaded first and the overrides applied
 * after it, whatever their order, then tern_config_check_required runs. Other arguments are left in
 * argv (order kept, argv[0] too), *argc is updated and argv[*argc] set to NULL; a "--" stops option
 * processing and is kept. Returns 0, TERN_ECONFIG (message), -errno from loading the file, or
 * TERN_ENOMEM.
 */
int tern_config_parse_args(tern_config *cfg, int *argc, char **argv);

/*
 * tern_config_check_required returns TERN_ECONFIG (message "KEY: required but not set") if a
 * TERN_CONFIG_REQUIRED key has no value, else 0.
 */
int tern_config_check_required(tern_config *cfg);

/* tern_config_error returns the message of the last failure ("" if none); owned by cfg. */
const char *tern_config_error(const tern_config *cfg);

/* Getters. Unset keys (no value, no default) read as NULL / 0 / false / an empty list. */
bool tern_config_has(const tern_config *cfg, const char *key);
tern_config_source tern_config_get_source(const tern_config *cfg, const char *key);
/* tern_config_get_string: STRING or ENUM key, not a list. The string is owned by cfg. */
const char *tern_config_get_string(const tern_config *cfg, const char *key);
/* tern_config_get_int: INT, SIZE (bytes) or DURATION (ms) key, not a list. */
int64_t tern_config_get_int(const tern_config *cfg, const char *key);
bool tern_config_get_bool(const tern_config *cfg, const char *key);
/* List getters (TERN_CONFIG_LIST keys of any type; i < tern_config_list_len). */
size_t tern_config_list_len(const tern_config *cfg, const char *key);
const char *tern_config_list_string(const tern_config *cfg, const char *key, size_t i);
int64_t tern_config_list_int(const tern_config *cfg, const char *key, size_t i);

/*
 * tern_config_describe appends every declared key as a commented sample config file (sections,
 * help, type, default) to out. Returns 0 or TERN_ENOMEM.
 */
int tern_config_describe(const tern_config *cfg, tern_buf *out);

/*
 * tern_config_schema_core is the schema of keys every tern program shares:
 * [logging] level, [data] dir.
 */
extern const tern_config_schema tern_config_schema_core[];

#endif
