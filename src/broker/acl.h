/*
 * acl.h: topic access control for the broker (which client may publish or subscribe where).
 *
 * Rules follow Mosquitto's acl_file (semantics in docs/security.md):
 *   pattern [read|write|readwrite|deny] FILTER   for every client; %c = client id, %u = username
 *   user NAME                                    starts NAME's section
 *   topic [read|write|readwrite|deny] FILTER     for the current section's user (before any
 *                                                `user` line: for clients without a username)
 * The access word is optional (readwrite). FILTER is the rest of the line and may contain
 * spaces. '#' starts a comment line.
 *
 * A request is allowed when an allow rule grants it and no deny rule touches it. A PUBLISH
 * (WRITE) topic must be matched by an allowing filter. A SUBSCRIBE (READ) filter must be
 * covered by one allowing filter (every topic the subscription could receive is matched by
 * the rule), and must not intersect any deny filter; a plain topic is checked the same way,
 * which reduces to matching. `$share/{group}/` is stripped from SUBSCRIBE filters first.
 * Substitution never widens a rule: a client id or username that is empty or contains `+`,
 * `#` or `/` makes every allow pattern that uses it inapplicable, and every deny pattern that
 * uses it deny outright.
 *
 * A rule set is built once (tern_broker_acl_add_* are not thread-safe) and then only read:
 * tern_broker_acl_check may run on any number of threads. Checks cost O(patterns + rules of
 * the user's section) with a hash lookup of the section.
 */
#ifndef TERN_BROKER_ACL_H
#define TERN_BROKER_ACL_H

#include <stddef.h>

#define TERN_ACL_READ 1
#define TERN_ACL_WRITE 2

typedef struct tern_broker_acl tern_broker_acl;

/* tern_broker_acl_new creates an empty rule set, which denies everything. 0 or ENOMEM. */
int tern_broker_acl_new(tern_broker_acl **out);

void tern_broker_acl_free(tern_broker_acl *acl);

/*
 * tern_broker_acl_add_defaults adds tern's device rules, used when no ACL file is configured:
 *   pattern write fleet/%c/#
 *   pattern read fleet/%c/cmd/#
 *   pattern read fleet/%c/config
 * Returns 0 or TERN_ENOMEM.
 */
int tern_broker_acl_add_defaults(tern_broker_acl *acl);

/*
 * tern_broker_acl_add_line adds one line of ACL syntax (no newline). A `user` line changes
 * the section for the following `topic` lines. Returns 0, TERN_ECONFIG with the reason in err
 * (err_len bytes, may be 0), or TERN_ENOMEM; on error the rule set is unchanged.
 */
int tern_broker_acl_add_line(
    tern_broker_acl *acl, const char *line, size_t len, char *err, size_t err_len);

/*
 * tern_broker_acl_load_file adds the rules of an ACL file (its `topic` lines before any `user`
 * line belong to clients without a username, whatever add_line calls came before). Returns 0;
 * TERN_ECONFIG with "FILE:LINE: reason" in err; -errno with "FILE: reason"; TERN_ENOMEM. On
 * error the rules of the lines before the bad one stay added: discard the rule set.
 */
int tern_broker_acl_load_file(tern_broker_acl *acl, const char *path, char *err, size_t err_len);

/* tern_broker_acl_count returns the number of rules. */
size_t tern_broker_acl_count(const tern_broker_acl *acl);

/*
 * tern_broker_acl_check decides whether the client (client_id, and username or NULL for an
 * anonymous client) may have access (TERN_ACL_READ for SUBSCRIBE and for delivering a topic,
 * TERN_ACL_WRITE for PUBLISH) to topic, a topic name or, for READ, a filter. Returns 0 if
 * allowed, TERN_EDENIED if not (also for a malformed topic or filter, or a wildcard in a
 * WRITE topic), TERN_ENOMEM (treat as denied).
 */
int tern_broker_acl_check(const tern_broker_acl *acl, const char *client_id, size_t client_id_len,
    const char *username, size_t username_len, const char *topic, size_t topic_len, int access);

#endif
