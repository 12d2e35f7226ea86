"""The plain socket copy the file-transfer benchmark compares with: one TCP connection on
loopback, the sender's file sent with sendfile(2), the receiver writing 1 MiB reads to a
file. No framing, no verification. Usage:
  socket_copy.py receive PORT OUT      (prints READY, then the bytes received at the end)
  socket_copy.py send PORT FILE"""
import os
import socket
import sys

mode, port = sys.argv[1], int(sys.argv[2])
if mode == "receive":
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1)
    print("READY", flush=True)
    connection, _ = server.accept()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    total = 0
    with open(sys.argv[3], "wb", buffering=0) as out:
        while True:
            count = connection.recv_into(buffer)
            if count == 0:
                break
            out.write(view[:count])
            total += count
    print(total, flush=True)
else:
    with open(sys.argv[3], "rb") as source, socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendfile(source)
