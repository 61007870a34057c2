/*  fuzz_config.c - configuration files (settings_load, settings_read) of
 *  any content: a ZPL file given with --config or $RETAIL_CONFIG.
 *
 *  The input is written to a file in a private temporary directory and
 *  read as the whole system's settings and as a service's own table (one
 *  setting of each type, with a range and an older name). Whatever is
 *  accepted must lie within what the table allows.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol/settings.h"

typedef struct {
    char dsn[64];
    int pool;
} own_t;

static const setting_t s_own[] = {
    {.zpl = "retail/fuzz/dsn",
     .env = "RETAIL_FUZZ_DSN",
     .type = SETTING_STR,
     .offset = offsetof(own_t, dsn),
     .size = sizeof((own_t *)0)->dsn},
    {.zpl = "retail/fuzz/pool",
     .env = "RETAIL_FUZZ_POOL",
     .type = SETTING_INT,
     .offset = offsetof(own_t, pool),
     .min = 1,
     .max = 64,
     .old_zpl = "retail/fuzz/pool_size"},
};

static char s_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char dir[] = "/tmp/fuzz-config.XXXXXX";
    if (!mkdtemp(dir))
        abort();
    snprintf(s_path, sizeof s_path, "%s/retail.cfg", dir);
    /* Only the file speaks: no variable of the caller's may change what is read. */
    unsetenv("RETAIL_CONFIG");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(s_path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    if (fclose(f) != 0)
        abort();
    char err[512] = "";
    settings_t s;
    if (settings_load(&s, s_path, err, sizeof err) == 0) {
        if (s.http_port < 0 || s.http_port > 65535 || s.workers < 1 ||
            memchr(s.data_dir, '\0', sizeof s.data_dir) == NULL)
            abort();
    } else if (!err[0])
        abort();

    settings_source_t *source = settings_source_new(s_path, err, sizeof err);
    if (source) {
        own_t own = {.dsn = "default", .pool = 4};
        if (settings_read(source, s_own, sizeof s_own / sizeof *s_own, &own, err, sizeof err) ==
            0) {
            if (own.pool < 1 || own.pool > 64 || memchr(own.dsn, '\0', sizeof own.dsn) == NULL)
                abort();
        } else if (!err[0])
            abort();
        settings_source_destroy(&source);
    }
    return 0;
}
