# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in pods of the lab: one HTTP server and one UDP echo on a worker, answering on every pod IP.

Each answer names the cluster and the pod address the request reached (and, for HTTP, the Host header), so
the lab's client can tell which cluster and pod served it. Standard library only (the worker's python3).

HTTP listens on every address of the worker (the pod IPs are on lo). UDP gets one socket per pod IP given,
so each reply leaves from the address the datagram reached, as conntrack needs to undo kube-proxy's DNAT.
Usage: python3 lab-backend.py CLUSTER [HTTP_PORT [UDP_PORT POD_IP...]]
"""

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    cluster = "unknown"
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        pod = self.connection.getsockname()[0]
        host = self.headers.get("Host", "")
        body = f"cluster={self.cluster} pod={pod} host={host} path={self.path} src={self.client_address[0]}\n"
        data = body.encode("utf-8", "replace")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Lab-Cluster", self.cluster)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Quiet: the journal would fill with one line per request under load."""


def udp_echo(cluster, address, port):
    """Answer each datagram with ``cluster=C pod=IP`` and what it carried (at most 512 bytes of it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    while True:
        data, peer = sock.recvfrom(2048)
        reply = f"cluster={cluster} pod={address} echo=".encode() + data[:512]
        try:
            sock.sendto(reply, peer)
        except OSError:
            continue


def main():
    Handler.cluster = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 80
    if len(sys.argv) > 3:
        udp_port = int(sys.argv[3])
        for address in sys.argv[4:]:
            threading.Thread(target=udp_echo, args=(Handler.cluster, address, udp_port), daemon=True).start()
    # Every pod address of this worker (they are on lo); the container's own address answers too.
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
