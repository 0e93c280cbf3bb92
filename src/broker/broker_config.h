/*
 * broker_config.h: the broker's keys in tern's config file ([broker] section, docs/broker.md)
 * and their translation into a tern_broker_config.
 */
#ifndef TERN_BROKER_CONFIG_H
#define TERN_BROKER_CONFIG_H

#include "base/config.h"
#include "broker/broker.h"

/* The [broker] schema, to add to a program's tern_config. */
extern const tern_config_schema tern_broker_config_schema[];

/*
 * tern_broker_config_load fills *out from cfg (which must hold tern_broker_config_schema).
 * Strings in *out are borrowed from cfg; the arrays are allocated: release them with
 * tern_broker_config_release. Returns 0 or TERN_ENOMEM.
 */
int tern_broker_config_load(const tern_config *cfg, tern_broker_config *out);
void tern_broker_config_release(tern_broker_config *c);

#endif
