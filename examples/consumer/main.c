/* consumer - the smallest program against an installed mpipc. */
#include <mpipc.h>
#include <stdio.h>

static int
answer(void *arg)
{
    (void)arg;
    return 42;
}

int
main(void)
{
    mp_process *p;
    int code = -1;
    if (mp_process_open(&p, answer, NULL, NULL) != 0 || mp_process_start(p) != 0 ||
        mp_process_join(p, MP_FOREVER) != 0 || mp_process_exitcode(p, &code) != 1)
        return 1;
    mp_process_close(p);
    printf("mpipc %s: child exited with %d\n", mp_version_string(), code);
    return 0;
}
