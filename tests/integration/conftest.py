"""conftest.py: fixtures for tandem's integration tests: binaries, guests, KVM gating, processes."""
import os
import pathlib
import shutil
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Env  # noqa: E402

ROOT = pathlib.Path(os.environ.get("TANDEM_ROOT", pathlib.Path(__file__).resolve().parents[2]))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (skipped under sanitizers)")
    config.addinivalue_line("markers", "qemu: needs qemu-system-x86_64")
    config.addinivalue_line("markers", "netns: needs network namespaces")


def _need(what: str, ok: bool):
    if ok:
        return
    if os.environ.get("TANDEM_REQUIRE_KVM") == "1":
        pytest.fail(f"{what} is required (TANDEM_REQUIRE_KVM=1) but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def env() -> Env:
    build = pathlib.Path(os.environ.get("TANDEM_BUILD", ROOT / "build"))
    guests = pathlib.Path(os.environ.get("TANDEM_GUESTS", build / "guests"))
    e = Env(root=ROOT, tandem=build / "tandem", guests=guests)
    assert e.tandem.exists(), f"{e.tandem} not built"
    return e


@pytest.fixture
def kvm(env):
    _need("/dev/kvm", os.access("/dev/kvm", os.R_OK | os.W_OK))
    return env


@pytest.fixture
def qemu(kvm):
    _need("qemu-system-x86_64", shutil.which("qemu-system-x86_64") is not None)
    return kvm


@pytest.fixture
def procs():
    """Every process started through this list is killed (-9) at the end of the test."""
    started = []
    yield started
    for p in started:
        p.kill()
