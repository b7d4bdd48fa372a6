"""The end of a DDP run: ``distributed.teardown`` really ends the process group, so gloo's threads
stop while Python is whole rather than running into the interpreter's shutdown (where they made
loaded runs abort with "terminate called without an active exception")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = """
import json, os, sys
import torch
from fromzero.training import distributed

def threads():
    return len(os.listdir("/proc/self/task"))

torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1))
model(torch.randn(4, 8)).sum().backward()  # torch's own threads, if any, exist from here on
before = threads()
info, device = distributed.setup("cpu")
ddp = distributed.wrap(model, info, device)
ddp(torch.randn(4, 8)).sum().backward()  # gradients averaged by gloo
during = threads()
distributed.barrier(info)
del ddp
distributed.teardown(info)
with open(os.path.join(sys.argv[1], f"rank{info.rank}.json"), "w") as f:
    json.dump({"before": before, "during": during, "after": threads()}, f)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_teardown_ends_the_gloo_threads_of_a_ddp_run(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         str(tmp_path)],
        check=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    for rank in (0, 1):
        counts = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert counts["during"] > counts["before"], counts  # gloo started its threads...
        assert counts["after"] == counts["before"], counts  # ...and teardown ended them all
