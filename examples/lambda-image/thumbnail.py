"""The sample job: reads its input from the environment, writes progress to
stdout and fails with a message on stderr, like any batch program."""

import os
import sys

source = os.environ.get("INPUT")
if not source:
    print("INPUT is not set", file=sys.stderr)
    sys.exit(2)
size = int(os.environ.get("SIZE", "256"))
print(f"berth job {os.environ.get('BERTH_JOB_ID')} launch {os.environ.get('BERTH_LAUNCH')}")
print(f"thumbnail of {source} at {size} px")
