/*
 * fuzz_broker_journal.c: the broker's journal (docs/formats/broker-store.md) is read back from
 * disk at start, so it is untrusted input. The fuzz input becomes DATA/broker/journal; a broker
 * (without listeners) is created on it and freed. It must never crash, leak or hang: a bad
 * magic or version refuses to start, anything after the last whole, checksummed, consistent
 * record is dropped. Inputs shorter than the header get the real header prepended half the
 * time, so the fuzzer reaches the records quickly.
 */
#include "base/log.h"
#include "broker/broker.h"
#include "loop/loop.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static tern_loop *loop;

static void setup(void)
{
    if (loop)
        return;
    tern_log_set_level(TERN_LOG_ERROR + 0);
    tern_log_set_file(fopen("/dev/null", "w"));
    snprintf(dir, sizeof dir, "/tmp/tern-fuzz-journal-%d", (int)getpid());
    mkdir(dir, 0700);
    char sub[96];
    snprintf(sub, sizeof sub, "%s/broker", dir);
    mkdir(sub, 0700);
    if (tern_loop_new(&loop) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    char path[128];
    snprintf(path, sizeof path, "%s/broker/journal", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size > 0 && (data[0] & 1)) {
        /* Odd first byte: a real header, then the rest of the input as records. */
        static const uint8_t header[16] = { 'T', 'E', 'R', 'N', 'B', 'R', 'K', 'J', 1 };
        fwrite(header, 1, sizeof header, f);
        data++;
        size--;
    }
    fwrite(data, 1, size, f);
    fclose(f);

    tern_broker_config cfg;
    tern_broker_config_defaults(&cfg);
    cfg.n_listen = 0;
    cfg.data_dir = dir;
    cfg.sys_interval_ms = 0;
    tern_broker *b = NULL;
    if (tern_broker_new(loop, &cfg, &b) == 0) {
        tern_broker_shutdown(b);
        tern_loop_run_once(loop, 0);
        tern_broker_free(b);
    }
    return 0;
}
