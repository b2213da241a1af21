#!/usr/bin/env python3
"""A tiny function speaking the Lambda Invoke API, for the demo.

POST /2015-03-31/functions/{name}/invocations with an event; prints each record and answers
with an empty batchItemFailures list (every record succeeded).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        event = json.loads(self.rfile.read(length) or b"{}")
        name = self.path.split("/")[3] if self.path.count("/") >= 4 else "?"
        records = event.get("Records", [])
        print(f"[function {name}] invoked with {len(records)} record(s)", flush=True)
        for r in records:
            print(f"    {r.get('messageId')}: {r.get('body')}", flush=True)
        body = json.dumps({"batchItemFailures": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9001
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
