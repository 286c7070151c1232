# remote_manager.py - the Python client of examples/remote_manager.c: an unmodified
# multiprocessing client of the C manager.   python3 remote_manager.py 127.0.0.1:50000
import sys
from multiprocessing.managers import BaseManager, DictProxy, ListProxy


class RemoteManager(BaseManager):
    pass


RemoteManager.register('get_list', proxytype=ListProxy)
RemoteManager.register('get_dict', proxytype=DictProxy)

addr = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1:50000'
host, sep, port = addr.rpartition(':')
address = (host, int(port)) if sep and '/' not in addr else addr

m = RemoteManager(address=address, authkey=b'secret password')
m.connect()
shared_list = m.get_list()
shared_dict = m.get_dict()
shared_list.append('from Python')
shared_dict['python'] = sys.version_info[0]
shared_dict.update(answer=42)
print('Python sees the list:', shared_list)
print('Python sees the dict:', shared_dict)
