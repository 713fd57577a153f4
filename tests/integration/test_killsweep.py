"""test_killsweep.py: a CI smoke of scripts/killsweep.sh (the long sweep runs outside CI):
two iterations, each killing the primary of a netkv pair under client load and of a blkcheck
pair; nothing acknowledged may be lost."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import _need

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.netns
def test_killsweep_smoke(vmenv):
    _need("root and iproute2", os.geteuid() == 0 and shutil.which("ip") is not None)
    lan = f"kt{os.getpid() % 100000}"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "killsweep.sh"), "2", "--lan", lan,
                        "--accel", vmenv.accel,
                        "--logs", f"/tmp/tandem-killsweep-smoke-{os.getpid()}"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TANDEM_BUILD": str(vmenv.tandem.parent),
                            "TANDEM_GUESTS": str(vmenv.guests)})
    out = r.stdout + r.stderr
    m = re.search(r"killsweep: (\d+) iterations, (\d+) takeovers, (\d+) acknowledged writes "
                  r"lost, (\d+) contradictions, (\d+) failures", r.stdout)
    assert m, out
    iterations, takeovers, lost, contradictions, failures = map(int, m.groups())
    assert lost == 0 and contradictions == 0, out
    assert (iterations, takeovers, failures) == (2, 4, 0), out
    assert r.returncode == 0, out
    # the sweep leaves no namespace behind
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not re.search(rf"^{lan}-", ns, re.M), ns
