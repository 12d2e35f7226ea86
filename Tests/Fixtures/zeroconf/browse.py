"""Browses for _kizuna._tcp over mDNS with python-zeroconf (on loopback unless KIZUNA_ZC_ADDRESS says otherwise), an independent
implementation, and prints what it sees as JSON lines: {"added": name, "properties": ...}
and {"removed": name}. Exits after `seconds`."""
import json
import sys
import time

from zeroconf import IPVersion, ServiceBrowser, Zeroconf

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20
import os
# The address of the interface to use (KIZUNA_ZC_ADDRESS, default 127.0.0.1): an IPv6 one
# makes this IPv6 only.
address = os.environ.get("KIZUNA_ZC_ADDRESS", "127.0.0.1")
ipv6 = ":" in address
zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V6Only if ipv6 else IPVersion.V4Only)


def say(**fields):
    print(json.dumps(fields), flush=True)


class Listener:
    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, timeout=3000)
        if info is None:
            say(unresolved=name)
            return
        say(added=name, port=info.port, addresses=info.parsed_addresses(), server=info.server,
            properties={k.decode(): (v or b"").decode() for k, v in info.properties.items()})

    def remove_service(self, zc, type_, name):
        say(removed=name)

    def update_service(self, zc, type_, name):
        pass


browser = ServiceBrowser(zc, "_kizuna._tcp.local.", Listener())
say(browsing=True)
time.sleep(seconds)
zc.close()
