"""The Python side of manager_proxy.c: a SyncManager server with a shared list and dict.

    python3 manager_proxy_server.py [HOST:PORT]     (127.0.0.1:0, an ephemeral port, by default)

Prints the address it serves on, then serves until its stdin closes; before it exits it prints
what C left in the list and the dict.
"""
import sys
import threading
from multiprocessing.managers import DictProxy, ListProxy, SyncManager

jobs = ["from Python"]
results = {}


class JobManager(SyncManager):
    pass


JobManager.register("get_jobs", callable=lambda: jobs, proxytype=ListProxy)
JobManager.register("get_results", callable=lambda: results, proxytype=DictProxy)

host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0").rpartition(":")
server = JobManager(address=(host, int(port)), authkey=b"secret password").get_server()
print("%s:%d" % server.address, flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
print("Python sees the jobs:", jobs)
print("Python sees the results:", results, flush=True)
