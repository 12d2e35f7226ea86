#!/usr/bin/env python3
"""Memory a hostile peer can pin in a Kizuna host: RSS of a real `kizuna run` under each
attack of issue 11, printed as it goes.

    python3 Benchmarks/hostile-peers/pinning.py [--kizuna .build/release/kizuna] [--connections 80]

Starts one host (accept = ask, so offers wait) with the built-in plugins on loopback,
then, one after another, holds connections that never finish their handshake, holds
handshaked connections that stream the largest messages without being read, leaves offers
pending while pushing data behind them, streams large frames nobody watches, and leaves
large messages unfinished. After the last it prints what the transport's own counter says
it holds (action `held-bytes`, capped by `max-held-bytes`). After
each it prints the host's resident memory (VmRSS) and its peak (VmHWM), and at the end
checks that the host still answers `kizuna status`. Traffic goes to 127.0.0.1 only.

The attacker speaks TLS 1.3 with a key pair of its own (made by `kizuna id` in a folder of
its own): a third party the host never paired with, as the transport refuses plaintext.
"""
import argparse, json, os, shutil, socket, ssl, struct, subprocess, sys, tempfile, threading, time

def frame(payload): return struct.pack(">I", len(payload)) + payload
def js(o): return json.dumps(o, separators=(",", ":")).encode()

def memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"): fields[key] = int(value.split()[0]) // 1024
    return fields

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kizuna", default=".build/debug/kizuna")
    parser.add_argument("--connections", type=int, default=80)
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    work = tempfile.mkdtemp(prefix="kizuna-pinning-")
    try:
        plugins = os.path.join(work, "plugins")
        shutil.copytree(os.path.join(repo, "manifests"), plugins)
        with open(os.path.join(plugins, "mdns-discovery.toml")) as f: text = f.read()
        with open(os.path.join(plugins, "mdns-discovery.toml"), "w") as f: f.write(text.replace('"_kizuna._tcp"', '"_kzpin._tcp"'))
        sock = os.path.join(work, "host.sock")
        host = subprocess.Popen([args.kizuna, "run", "--plugins-dir", plugins, "--interface", "lo", "--socket", sock, "--name", "target", "--state-dir", os.path.join(work, "state"),
                                 "--receive-dir", os.path.join(work, "in"), "--accept", "ask"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        port = None
        for line in host.stdout:
            if "listening" in line and "address=" in line: port = int(line.split("address=")[1].split()[0].rsplit(":", 1)[1])
            if "host running" in line: break
        threading.Thread(target=lambda: [None for _ in host.stdout], daemon=True).start()
        if port is None: sys.exit("the host did not report its transport's port")
        print(f"host pid {host.pid}, transport port {port}: {memory(host.pid)} MiB at start")

        mallory_state = os.path.join(work, "mallory")
        mallory = json.loads(subprocess.run([args.kizuna, "id", "--state-dir", mallory_state, "--json"], capture_output=True, text=True, check=True).stdout)["id"]
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.minimum_version = ssl.TLSVersion.TLSv1_3
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        tls.load_cert_chain(os.path.join(mallory_state, "identity", "certificate.pem"), os.path.join(mallory_state, "identity", "key.pem"))

        def connect(service=None):
            s = tls.wrap_socket(socket.create_connection(("127.0.0.1", port))); s.settimeout(2)
            if service:
                s.sendall(frame(js({"kizuna": 2, "id": mallory, "name": "mallory", "service": service})))
                try: s.recv(4096)
                except OSError: pass
            return s

        def figure(action):
            out = subprocess.run([args.kizuna, "plugins", "call", "tcp-transport", action, "--socket", sock], capture_output=True, text=True, timeout=30)
            return int(out.stdout.strip() or -1)

        def report(label, held):
            time.sleep(2)
            m = memory(host.pid)
            print(f"{label}: RSS {m['VmRSS']} MiB, peak {m['VmHWM']} MiB ({held} connections held by the attacker)")

        def push(s, payload, seconds=3):
            s.setblocking(False)
            end = time.time() + seconds
            data = frame(payload)
            sent = 0
            while time.time() < end:
                try: sent += s.send(data)
                except (BlockingIOError, OSError): time.sleep(0.01)
            return sent

        big = b"\x02" + bytes(1 << 20)   # the largest message the transport takes by default
        # 1. Connections that announce a 16 MiB handshake and send it slowly.
        held = []
        for _ in range(args.connections):
            try:
                s = connect(); s.sendall(struct.pack(">I", 16 << 20) + bytes(1 << 20)); held.append(s)
            except OSError: pass
        report("1. unfinished 16 MiB handshakes", len(held)); [s.close() for s in held]
        # 2. Handshaked file-transfer connections pushing 1 MiB messages that are never read.
        held = []
        for _ in range(args.connections):
            try: held.append(connect("file-transfer"))
            except OSError: pass
        threads = [threading.Thread(target=push, args=(s, big)) for s in held]
        [t.start() for t in threads]; [t.join() for t in threads]
        report("2. unread 1 MiB messages on handshaked connections", len(held)); [s.close() for s in held]
        # 3. Offers left pending, with data pushed behind them.
        held = []
        for i in range(40):
            try:
                s = connect("file-transfer")
                s.sendall(frame(b"\x01" + js({"type": "offer", "id": f"o{i}", "name": "x", "files": [{"path": f"f{i}", "size": 1 << 30, "modified": 0}], "total": 1 << 30})))
                held.append(s)
            except OSError: pass
        threads = [threading.Thread(target=push, args=(s, big)) for s in held]
        [t.start() for t in threads]; [t.join() for t in threads]
        report("3. pending offers with data behind them", len(held)); [s.close() for s in held]
        # 4. Streams of the largest frames the receiver takes, with no viewer.
        held = []
        for i in range(8):
            try:
                s = connect("streaming"); s.sendall(frame(b"\x01" + js({"type": "start", "id": f"s{i}"}))); held.append(s)
            except OSError: pass
        frame_payload = b"\x02" + struct.pack(">Q", 0) + bytes(256 << 10)
        threads = [threading.Thread(target=push, args=(s, frame_payload)) for s in held]
        [t.start() for t in threads]; [t.join() for t in threads]
        report("4. 256 KiB frames nobody watches", len(held)); [s.close() for s in held]
        # 5. Handshaked connections that announce a 1 MiB message, send 900 KiB of it and hold still.
        held = []
        for _ in range(args.connections):
            try:
                s = connect("file-transfer"); s.sendall(struct.pack(">I", 1 << 20) + bytes(900 << 10)); held.append(s)
            except OSError: pass
        report("5. unfinished 1 MiB messages", len(held))
        print(f"   the transport holds {figure('held-bytes') >> 10} KiB of peers' messages (cap: max-held-bytes)")
        [s.close() for s in held]
        print(f"most the transport held at once: {figure('peak-held-bytes') >> 10} KiB")
        status = subprocess.run([args.kizuna, "status", "--socket", sock], capture_output=True, text=True, timeout=30)
        print(f"host still serves: {'yes' if status.returncode == 0 else 'NO: ' + status.stderr.strip()}; peak RSS {memory(host.pid)['VmHWM']} MiB")
        host.terminate(); host.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
