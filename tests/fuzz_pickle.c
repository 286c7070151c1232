/*
 * fuzz_pickle.c - libFuzzer target for the pickle decoder (built with -DMPIPC_FUZZ=ON, clang).
 *
 * Every input must decode or fail with one of the documented codes. What decodes must encode at
 * every protocol that can carry it, and decode again to an equal tree: the encoder and decoder
 * check each other. Seeds: tests/corpus/pickle (python3 tests/pickle_peer.py --corpus DIR).
 */
#include "internal.h"
#include "pickle.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Limits well under the defaults keep each run fast; memo copies still reach them. */
    mp__unpickle_opts opts = {
        .allow = mp__pickle_manager_globals,
        .limits = {.max_depth = 100,
                   .max_nodes = 1 << 13,
                   .max_bytes = 1 << 20,
                   .max_memo = 1 << 13},
    };
    mp__pv *v = NULL;
    int r = mp__pickle_loads(&v, data, size, &opts);
    if (r != 0) {
        if (r != -EPROTO && r != -EPERM && r != -E2BIG && r != -ENOMEM)
            abort();
        return 0;
    }
    /* The encoding of a global is three nodes and each value may be memoized, so the second
     * decode gets room for that. */
    opts.limits.max_nodes *= 4;
    opts.limits.max_memo = opts.limits.max_nodes;
    for (int proto = 2; proto <= 5; proto++) {
        uint8_t *buf;
        size_t len;
        r = mp__pickle_dumps(v, proto, &buf, &len);
        if (r == -EINVAL && proto == 2)
            continue; /* bytes and globals need protocol 3 */
        if (r != 0)
            abort();
        mp__pv *w = NULL;
        r = mp__pickle_loads(&w, buf, len, &opts);
        if (r != 0 || !mp__pv_equal(v, w))
            abort();
        mp__pv_free(w);
        mp__free(buf);
    }
    mp__pv_free(v);
    return 0;
}
