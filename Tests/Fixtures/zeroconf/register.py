"""Registers a _kizuna._tcp service with python-zeroconf on loopback, then withdraws it
(a goodbye) when stdin closes. Usage: register.py INSTANCE ID PORT"""
import json
import socket
import sys

from zeroconf import IPVersion, ServiceInfo, Zeroconf

instance, ident, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
info = ServiceInfo(
    "_kizuna._tcp.local.", f"{instance}._kizuna._tcp.local.",
    addresses=[socket.inet_aton("127.0.0.1")], port=port,
    properties={"id": ident, "name": instance, "services": "file-transfer"},
    server=f"{instance}.local.")
zc.register_service(info)
print(json.dumps({"registered": instance}), flush=True)
sys.stdin.read()
zc.unregister_service(info)
zc.close()
print(json.dumps({"unregistered": instance}), flush=True)
