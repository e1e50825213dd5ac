"""Connection churn in a process of its own: connect, GET a key, reset (RST), repeat.

`python -m tests.helpers.churn PORT SECONDS KEY [THREADS [RATE]]` prints how many
connections it made; RATE (connections a second, all threads together) is a ceiling.
The reply is not waited for: like a client that gives up, each connection is reset right
after its request, so the proxy has a large reply to drop.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time


def churn(port: int, seconds: float, key: bytes, counts: list[int], i: int, gap: float) -> None:
    request = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)
    linger = struct.pack("ii", 1, 0)  # close() sends RST
    end = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < end:
        next_at += gap
        if (wait := next_at - time.monotonic()) > 0:
            time.sleep(wait)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.sendall(request)
            s.close()
            counts[i] += 1
        except OSError:
            time.sleep(0.001)


if __name__ == "__main__":
    port, seconds, key = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].encode()
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    gap = n / float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    counts = [0] * n
    threads = [
        threading.Thread(target=churn, args=(port, seconds, key, counts, i, gap)) for i in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(counts))
