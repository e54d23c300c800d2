#!/bin/sh
# GET on this member's Patroni REST API (the image has no curl): `patroni-rest /cluster` prints the
# body; the exit status is 0 for a 2xx answer. For healthchecks, the compose test and operators.
set -eu
exec python3 -c '
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen("http://127.0.0.1:8008" + sys.argv[1], timeout=3) as r:
        print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.read().decode())
    sys.exit(1)
' "${1:-/health}"
