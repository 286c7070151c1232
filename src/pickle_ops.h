/*
 * pickle_ops.h - the opcodes of the pickle subset, named as in Lib/pickletools.py.
 *
 * Included only by pickle.c and pickle_dump.c: the short names would collide elsewhere.
 */
#ifndef MPIPC_PICKLE_OPS_H
#define MPIPC_PICKLE_OPS_H

enum mp__pickle_op {
    MARK = '(',
    STOP = '.',
    BININT = 'J',
    BININT1 = 'K',
    BININT2 = 'M',
    NONE = 'N',
    BINUNICODE = 'X',
    BINBYTES = 'B',
    SHORT_BINBYTES = 'C',
    APPEND = 'a',
    APPENDS = 'e',
    BUILD = 'b',
    GLOBAL = 'c',
    BINGET = 'h',
    LONG_BINGET = 'j',
    BINPUT = 'q',
    LONG_BINPUT = 'r',
    EMPTY_DICT = '}',
    SETITEM = 's',
    SETITEMS = 'u',
    EMPTY_LIST = ']',
    EMPTY_TUPLE = ')',
    TUPLE = 't',
    BINFLOAT = 'G',
    REDUCE = 'R',
    PROTO = 0x80,
    NEWOBJ = 0x81,
    TUPLE1 = 0x85,
    TUPLE2 = 0x86,
    TUPLE3 = 0x87,
    NEWTRUE = 0x88,
    NEWFALSE = 0x89,
    LONG1 = 0x8a,
    LONG4 = 0x8b,
    SHORT_BINUNICODE = 0x8c,
    BINUNICODE8 = 0x8d,
    BINBYTES8 = 0x8e,
    STACK_GLOBAL = 0x93,
    MEMOIZE = 0x94,
    FRAME = 0x95,
    BYTEARRAY8 = 0x96,
};

#endif /* MPIPC_PICKLE_OPS_H */
