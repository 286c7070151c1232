/*
 * mcall.h - what the files answering proxy method calls share (mcall.c, mcall_list.c,
 * mcall_dict.c): argument checks, value conversions and CPython-shaped replies.
 */
#ifndef MPIPC_MCALL_H
#define MPIPC_MCALL_H

#include "mserve.h"

/* One method call: the container, the method's name, args (a tuple) and kwds (a dict). */
typedef struct mp__call {
    mp__server *srv; /* for nested containers, which travel as proxies */
    mp__cont *c;
    const char *m;
    const mp__pv *args, *kwds;
    size_t nargs;
} mp__call;

/* The methods of each kind, after the exposed check. */
mp__pv *mp__call_list(const mp__call *k);
mp__pv *mp__call_dict(const mp__call *k);
mp__pv *mp__call_ns(const mp__call *k);

/* ('#RETURN', v); consumes v. */
mp__pv *mp__call_ret(mp__pv *v);
/* ('#ERROR', builtins.type(arg)): the exception pickled as CPython does (STACK_GLOBAL, the
 * args tuple, REDUCE). Consumes arg; NULL means no arguments. */
mp__pv *mp__call_error(const char *type, mp__pv *arg);
/* The same with a formatted message as the one argument. */
mp__pv *mp__call_errorf(const char *type, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The reply for a container call that failed with r: `missing` (consumed) for -ENOENT when not
 * NULL, `range` as the IndexError text for -ERANGE, else by the code (TypeError, ValueError,
 * MemoryError, a traceback for anything unexpected). */
mp__pv *mp__call_fail(int r, mp__pv *missing, const char *range);

/* Python's type name of a value, for messages. */
const char *mp__call_type_name(const mp__pv *v);
/* Borrow a value as an item; false with the reply in *err (TypeError, OverflowError) for a
 * value no container can hold. */
bool mp__call_item(mp__server *srv, const mp__pv *v, mp_item *it, mp__pv **err);
/* A tree for an item the library filled, which it consumes; NULL with *err the reply for a
 * nested container (TypeError), or NULL *err when out of memory. */
mp__pv *mp__call_pv(mp__server *srv, mp_item *it, mp__pv **err);
/* A list tree of n such items (consumes them and frees the array); NULL as mp__call_pv. */
mp__pv *mp__call_list_of(mp__server *srv, mp_item *items, size_t n, mp__pv **err);
/* A dict's contents: 0 a dict tree, 'k'/'v'/'i' the list of keys, values or (key, value)
 * tuples. NULL with the reply in *r (NULL when out of memory). */
mp__pv *mp__call_snapshot(mp__server *srv, mp_dict *d, char what, mp__pv **r);

/* Check lo..hi positional arguments and no keywords; false with the reply in *r. */
bool mp__call_nargs(const mp__call *k, size_t lo, size_t hi, mp__pv **r);
/* Positional argument i (borrowed). */
const mp__pv *mp__call_arg(const mp__call *k, size_t i);
/* An int (or bool) index; false with the reply (TypeError, IndexError) in *r. */
bool mp__call_index(const mp__pv *v, ptrdiff_t *i, mp__pv **r);
/* A slice object: true with its bounds in b (MP_SLICE_DEFAULT for None, step 1 for None), and
 * *r set when a bound is bad or the step is 0; false when v is not a slice. */
bool mp__call_slice(const mp__pv *v, ptrdiff_t b[3], mp__pv **r);

#endif
