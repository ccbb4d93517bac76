"""The log receiver of docker-compose.yml's Alertmanager: prints each alert notification it is sent.

Alertmanager has no receiver that only logs, and the compose stack must send alerts somewhere
without credentials for a pager or a chat. This is that somewhere: a webhook receiver that prints
one line per alert (`docker compose logs -f alert-log`) and answers 200. Replace it with a real
receiver in config/alertmanager.yml. Python's standard library only: it runs on python:3-alpine.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = 8080
MAX_BODY = 1 << 20


def lines(notification):
    """One printable line per alert of an Alertmanager webhook notification (format version 4)."""
    for alert in notification.get("alerts", []):
        labels = alert.get("labels", {})
        annotations = alert.get("annotations", {})
        where = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
        yield " ".join(
            [
                alert.get("status", "?").upper(),
                labels.get("alertname", "?"),
                f"severity={labels.get('severity', '-')}",
                f"{{{where}}}",
                json.dumps(annotations.get("summary", "")),
                annotations.get("runbook_url", ""),
            ]
        )


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # the healthcheck
        self._answer(200, b"ok\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._answer(400, b"need a JSON body up to 1 MiB\n")
            return
        try:
            notification = json.loads(self.rfile.read(length))
        except ValueError:
            self._answer(400, b"not JSON\n")
            return
        for line in lines(notification):
            print(line, flush=True)
        self._answer(200, b"ok\n")

    def _answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # the alert lines are the log; no access log around them
        pass


if __name__ == "__main__":
    print(f"alert-log: listening on :{PORT}", file=sys.stderr, flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
