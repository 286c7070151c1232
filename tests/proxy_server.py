"""A Python SyncManager server for test_manager_proxy.c, which drives it from C.

Usage: proxy_server.py tcp|<AF_UNIX path> <authkey>

Prints "<address> <pid>" once the server listens (the address as mp_client_connect takes it),
then serves in the main thread while a second thread reads commands on stdin, one a line:
  dump   print the shared list, dict and Namespace (registered as get_list, get_dict, get_ns),
         one line each, nested proxies shown as the objects they stand for
  refs   print how many objects the server tracks (len(id_to_refcount))
  pyset  change the shared objects from Python (C then reads them)
EOF on stdin ends the process with status 0.
"""
import os
import sys
import threading
from multiprocessing import managers as mm


class Weird(list):
    """A list whose methods raise what C must map to MP_EREMOTE or MP_ETYPE."""

    def append(self, x):
        raise ZeroDivisionError("weird append")

    def __getitem__(self, i):
        return (1, 2)


def main():
    where, key = sys.argv[1], sys.argv[2].encode()
    address = ("127.0.0.1", 0) if where == "tcp" else where
    shared_list, shared_dict, shared_ns, weird = [], {}, mm.Namespace(), Weird()

    class M(mm.SyncManager):
        pass

    M.register("get_list", callable=lambda: shared_list, proxytype=mm.ListProxy)
    M.register("get_dict", callable=lambda: shared_dict, proxytype=mm.DictProxy)
    M.register("get_ns", callable=lambda: shared_ns, proxytype=mm.NamespaceProxy)
    M.register("get_weird", callable=lambda: weird, proxytype=mm.ListProxy)
    # AutoProxy: the server exposes only list's public methods (no __getitem__).
    M.register("get_plain", callable=lambda: shared_list)
    srv = M(address=address, authkey=key).get_server()

    def show(x):
        if isinstance(x, mm.BaseProxy):
            entry = srv.id_to_obj.get(x._id) or srv.id_to_local_proxy_obj.get(x._id)
            x = entry[0]
        if isinstance(x, list):
            return "[" + ", ".join(show(v) for v in x) + "]"
        if isinstance(x, dict):
            return "{" + ", ".join(show(k) + ": " + show(v) for k, v in x.items()) + "}"
        if isinstance(x, mm.Namespace):
            return "Namespace(" + ", ".join(
                k + "=" + show(v) for k, v in sorted(vars(x).items())) + ")"
        return repr(x)

    def commands():
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "dump":
                out = [show(shared_list), show(shared_dict), show(shared_ns)]
            elif cmd == "refs":
                out = [str(len(srv.id_to_refcount))]
            elif cmd == "pyset":
                shared_list.append("from python")
                shared_dict["python"] = 3
                shared_dict["tuple"] = (1, 2)
                shared_ns.lang = "python"
                out = ["ok"]
            else:
                out = ["unknown command " + cmd]
            print("\n".join(out), flush=True)
        sys.stdout.flush()
        os._exit(0)

    a = srv.address
    print(f"{a[0]}:{a[1]}" if isinstance(a, tuple) else a, os.getpid(), flush=True)
    threading.Thread(target=commands, daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
