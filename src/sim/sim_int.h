/*
 * sim_int.h: private declarations shared by the simulator's runner (sim.c) and its ack log and
 * verifier (sim_verify.c). Not part of the public API.
 */
#ifndef TERN_SIM_SIM_INT_H
#define TERN_SIM_SIM_INT_H

#include "sim/sim.h"

/* What one device sent and had acknowledged (seqs). */
typedef struct tern_sim_dev_acct {
    tern_sim_seqset sent;       /* published at least once (not counting duplicates) */
    tern_sim_seqset acked;      /* acknowledged (PUBACK) */
    tern_sim_seqset duplicated; /* re-sent on purpose after being acknowledged */
    tern_sim_seqset lost;       /* lost in a power loss (never acknowledged) */
} tern_sim_dev_acct;

/* tern_sim_acct_free releases a's sets. */
void tern_sim_acct_free(tern_sim_dev_acct *a);

/* What the ack log and the verifier need from a finished run (all borrowed). */
typedef struct tern_sim_run_info {
    const tern_sim_schedule *sched;
    const tern_profile *profile;
    const tern_sim_dev_acct *acct; /* [n_devices], device i + 1 */
    uint32_t n_devices;
    uint8_t qos;
    const char *client_prefix; /* device i is PREFIX%06u */
} tern_sim_run_info;

/* tern_sim_ack_log_write writes the ack log (docs/sim.md) to path. Returns 0 or -errno. */
int tern_sim_ack_log_write(const char *path, const tern_sim_run_info *info);

/*
 * tern_sim_verify queries o->api for every device (retrying for up to o->verify_timeout_ms while
 * points are missing: the pipeline may still be catching up) and fills sum->verdict, verify_errors,
 * verified and verify_ok. Writes one line per problem device to stderr (the first few).
 */
void tern_sim_verify(
    const tern_sim_options *o, const tern_sim_run_info *info, tern_sim_summary *sum);

#endif
