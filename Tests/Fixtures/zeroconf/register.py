"""Registers a _kizuna._tcp service with python-zeroconf (on loopback unless KIZUNA_ZC_ADDRESS says otherwise), then withdraws it
(a goodbye) when stdin closes. Usage: register.py INSTANCE ID PORT"""
import json
import socket
import sys

from zeroconf import IPVersion, ServiceInfo, Zeroconf

instance, ident, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
import os
# The address of the interface to use (KIZUNA_ZC_ADDRESS, default 127.0.0.1): an IPv6 one
# makes this IPv6 only.
address = os.environ.get("KIZUNA_ZC_ADDRESS", "127.0.0.1")
ipv6 = ":" in address
zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V6Only if ipv6 else IPVersion.V4Only)
info = ServiceInfo(
    "_kizuna._tcp.local.", f"{instance}._kizuna._tcp.local.",
    addresses=[socket.inet_pton(socket.AF_INET6 if ipv6 else socket.AF_INET, address)], port=port,
    properties={"id": ident, "name": instance, "services": "file-transfer"},
    server=f"{instance}.local.")
zc.register_service(info)
print(json.dumps({"registered": instance}), flush=True)
sys.stdin.read()
zc.unregister_service(info)
zc.close()
print(json.dumps({"unregistered": instance}), flush=True)
