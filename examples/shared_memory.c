/*
 * shared_memory.c - the C twin of the examples in Python's multiprocessing.shared_memory docs:
 *
 *     shm_a = shared_memory.SharedMemory(create=True, size=10)
 *     buffer = shm_a.buf; print(len(buffer))                  # 10
 *     buffer[:4] = bytearray([22, 33, 44, 55]); buffer[4] = 100
 *     shm_b = shared_memory.SharedMemory(shm_a.name)
 *     print(array.array('b', shm_b.buf[:5]))                  # [22, 33, 44, 55, 100]
 *     shm_b.buf[:5] = b'howdy'; print(bytes(shm_a.buf[:5]))   # b'howdy'
 *     shm_b.close(); shm_a.close(); shm_a.unlink()
 *
 *     a = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])
 *     a[2] = -78.5; a[2] = 'dry ice'; a[2] = 'larger than ...'  # ValueError
 *     print(a[2], len(a), a.index(42), a.count(b'howdy'), a.count(b'HoWdY'))
 *     a.shm.close(); a.shm.unlink()
 *
 * A segment or list created here opens with the same name in Python, and the other way round.
 */
#include <mpipc.h>
#include <stdio.h>
#include <string.h>

int
main(void)
{
    mp_shm *shm_a, *shm_b;
    if (mp_shm_open(&shm_a, &(mp_shm_opts){.create = true, .size = 10}) != 0)
        return 1;
    unsigned char *buffer = mp_shm_buf(shm_a);
    printf("%zu\n", mp_shm_size(shm_a));
    memcpy(buffer, (unsigned char[]){22, 33, 44, 55}, 4);
    buffer[4] = 100;

    if (mp_shm_open(&shm_b, &(mp_shm_opts){.name = mp_shm_name(shm_a)}) != 0)
        return 1;
    const signed char *b = mp_shm_buf(shm_b);
    printf("array('b', [%d, %d, %d, %d, %d])\n", b[0], b[1], b[2], b[3], b[4]);
    memcpy(mp_shm_buf(shm_b), "howdy", 5);
    printf("b'%.5s'\n", (const char *)buffer);
    mp_shm_close(shm_b);
    mp_shm_unlink(shm_a);
    mp_shm_close(shm_a);

    const mp_shlist_item items[] = {
        {.type = MP_SHLIST_STR, .v.s = {"howdy", 5}},
        {.type = MP_SHLIST_BYTES, .v.s = {"HoWdY", 5}},
        {.type = MP_SHLIST_FLOAT, .v.f = -273.154},
        {.type = MP_SHLIST_INT, .v.i = 100},
        {.type = MP_SHLIST_NONE},
        {.type = MP_SHLIST_BOOL, .v.b = true},
        {.type = MP_SHLIST_INT, .v.i = 42},
    };
    mp_shlist *a;
    if (mp_shlist_open(&a, &(mp_shm_opts){.create = true}, items, 7) != 0)
        return 1;
    mp_shlist_item it;
    char text[64];
    mp_shlist_get(a, 2, &it, NULL, 0);
    printf("%g\n", it.v.f);
    mp_shlist_set(a, 2, &(mp_shlist_item){.type = MP_SHLIST_FLOAT, .v.f = -78.5});
    mp_shlist_get(a, 2, &it, NULL, 0);
    printf("%g\n", it.v.f);
    mp_shlist_set(a, 2, &(mp_shlist_item){.type = MP_SHLIST_STR, .v.s = {"dry ice", 7}});
    const char *big = "larger than previously allocated storage space";
    int r =
        mp_shlist_set(a, 2, &(mp_shlist_item){.type = MP_SHLIST_STR, .v.s = {big, strlen(big)}});
    printf("setting a longer str: %s\n", mp_strerror(r));
    mp_shlist_get(a, 2, &it, text, sizeof text);
    printf("'%s'\n", text);
    printf("%zu\n", mp_shlist_len(a));
    printf("%zd\n", mp_shlist_index(a, &(mp_shlist_item){.type = MP_SHLIST_INT, .v.i = 42}));
    printf("%zd\n",
           mp_shlist_count(a, &(mp_shlist_item){.type = MP_SHLIST_BYTES, .v.s = {"howdy", 5}}));
    printf("%zd\n",
           mp_shlist_count(a, &(mp_shlist_item){.type = MP_SHLIST_BYTES, .v.s = {"HoWdY", 5}}));
    mp_shm_unlink(mp_shlist_shm(a));
    mp_shlist_close(a);
    return 0;
}
