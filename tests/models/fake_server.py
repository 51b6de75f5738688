"""A stand-in for llama-server: parses its flags, answers /health 503 then 200 (loading, then
loaded), and can crash on demand. Run as ``python fake_server.py --port P --model M ...``."""

from __future__ import annotations

import argparse
import http.server
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--model", required=True)
parser.add_argument("--loading-s", type=float, default=0.3)
parser.add_argument("--exit-at-once", action="store_true")
args, _ = parser.parse_known_args()
if args.exit_at_once:
    print("error: cannot load the model", flush=True)
    sys.exit(3)
started = time.monotonic()
print(f"fake llama-server pid {os.getpid()} on {args.port}", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        loaded = time.monotonic() - started >= args.loading_s
        self.send_response(200 if loaded else 503)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if loaded else b'{"status": "loading"}')

    def log_message(self, *a: object) -> None:
        pass


http.server.HTTPServer((args.host, args.port), Handler).serve_forever()
