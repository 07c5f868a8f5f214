# Copyright: k8router.edge contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in ingress-controller pods of the lab: one HTTP server on a worker answering on every pod IP.

Each answer names the cluster, the pod address the request reached and the Host header, so the lab's
client can tell which cluster and pod served it. Standard library only (the worker's python3).
Usage: python3 lab-backend.py CLUSTER [PORT]
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    cluster = "unknown"
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        pod = self.connection.getsockname()[0]
        host = self.headers.get("Host", "")
        body = f"cluster={self.cluster} pod={pod} host={host} path={self.path}\n"
        data = body.encode("utf-8", "replace")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Lab-Cluster", self.cluster)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Quiet: the journal would fill with one line per request under load."""


def main():
    Handler.cluster = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 80
    # Every pod address of this worker (they are on lo); the container's own address answers too.
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
