/*
 * manager_peer.c - a program started with exec by test_manager_objects: it is no child of the
 * owner's fork, so it reaches the manager only by its name.
 *   manager_peer <manager-name> every|hold|attach
 * Exits 0 when every check passed.
 */
#include "manager_work.h"

#include <errno.h>
#include <string.h>

int
main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    mp_manager *m;
    int r = mp_manager_attach(&m, argv[1], 5000);
    if (r != 0) {
        fprintf(stderr, "manager_peer: attach %s: %s\n", argv[1], mp_strerror(r));
        return 3;
    }
    if (strcmp(argv[2], "every") == 0)
        r = mw_every_type(m, 2);
    else if (strcmp(argv[2], "hammer") == 0)
        r = mw_hammer(m);
    else if (strcmp(argv[2], "hold") == 0)
        r = mw_hold(m);
    else if (strcmp(argv[2], "attach") == 0)
        r = mp_manager_shutdown(m) == -EPERM ? 0 : 1;
    else
        r = 2;
    mp_manager_close(m);
    return r;
}
