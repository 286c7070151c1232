/*
 * fuzz_manager_request.c - libFuzzer target for the manager's request handling (built with
 * -DMPIPC_FUZZ=ON, clang): what a Python client, or anyone holding the authkey, sends after
 * the handshake.
 *
 * The first byte picks the path: a control request (a connection's first message), a request
 * on a serving connection, or a method call (method, args, kwds) on one of three containers made
 * at start-up (byte 2 picks list, dict or Namespace), which reaches every proxy method without
 * the fuzzer having to guess an ident. Every input must get a well-formed reply
 * ('#RETURN'/'#ERROR'/'#TRACEBACK', payload) that pickles, or run out of memory; nothing may
 * crash or leak. Seeds: tests/corpus/manager_request
 * (python3 tests/remote_manager_peer.py --corpus DIR).
 */
#include "mserve.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mp__heap *heap;
static mp__server *srv;
static uint64_t registry;
static mp__cont *conts[3];
static unsigned long runs;

static void
setup(void)
{
    if (mp__heap_create(&heap, NULL, (size_t)64 << 20) != 0)
        abort();
    /* Nothing may be left in /dev/shm: the mapping is all the target needs. */
    mp_shm_unlink(heap->shm);
    uint32_t kinds[3] = {MP__KIND_LIST, MP__KIND_DICT, MP__KIND_NS};
    for (int i = 0; i < 3; i++) {
        uint64_t off = 0;
        int r = i == 0 ? mp__shlist_create(heap, NULL, 0, &off)
                       : mp__shdict_create(heap, kinds[i], &off);
        if (r != 0 || (conts[i] = mp__cont_new(heap, off, kinds[i])) == NULL)
            abort();
    }
    if (mp__shdict_create(heap, MP__KIND_DICT, &registry) != 0)
        abort();
}

static void
check_reply(mp__pv *reply)
{
    if (reply == NULL)
        return; /* out of memory: the connection would be dropped */
    const mp__pv *kind = mp__pv_item(reply, 0);
    if (reply->kind != MP__PV_TUPLE || mp__pv_len(reply) != 2 ||
        !(mp__pv_is_str(kind, "#RETURN") || mp__pv_is_str(kind, "#ERROR") ||
          mp__pv_is_str(kind, "#TRACEBACK")))
        abort();
    uint8_t *buf;
    size_t len;
    int r = mp__pickle_dumps(reply, 4, &buf, &len);
    if (r == 0)
        mp__free(buf);
    else if (r != -ENOMEM)
        abort();
    mp__pv_free(reply);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (heap == NULL)
        setup();
    /* Bound what accumulates across runs: the containers' contents and the object table. */
    if (++runs % 4096 == 0) {
        mp_list_clear((mp_list *)conts[0]);
        mp_dict_clear((mp_dict *)conts[1]);
        mp_dict_clear((mp_dict *)conts[2]);
        mp__server_free(srv);
        srv = NULL;
    }
    if (srv == NULL && (srv = mp__server_new(heap, registry, "127.0.0.1:1")) == NULL)
        abort();
    if (size < 2)
        return 0;
    bool serving = data[0] % 3 == 1, stop = false;
    if (data[0] % 3 != 2) {
        check_reply(mp__server_answer(srv, data + 1, size - 1, &serving, &stop));
        return 0;
    }
    mp__pv *req = NULL;
    mp__unpickle_opts o = {
        .allow = mp__serve_request_globals,
        .limits = {.max_depth = 100, .max_nodes = 1 << 13, .max_bytes = 1 << 20}};
    if (mp__pickle_loads(&req, data + 2, size - 2, &o) != 0)
        return 0;
    const mp__pv *m = mp__pv_item(req, 0), *args = mp__pv_item(req, 1), *kwds = mp__pv_item(req, 2);
    if (req->kind == MP__PV_TUPLE && mp__pv_len(req) == 3 && m->kind == MP__PV_STR &&
        args->kind == MP__PV_TUPLE && kwds->kind == MP__PV_DICT)
        check_reply(mp__serve_call(srv, conts[data[1] % 3], m->u.s.data, args, kwds));
    mp__pv_free(req);
    return 0;
}
