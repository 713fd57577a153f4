"""conftest.py: fixtures for tandem's integration tests: binaries, guests, the engine, processes."""
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
    """Skip when what is missing; under TANDEM_REQUIRE_GUESTS=1 (CI) a missing what fails."""
    if ok:
        return
    if os.environ.get("TANDEM_REQUIRE_GUESTS") == "1":
        pytest.fail(f"{what} is required (TANDEM_REQUIRE_GUESTS=1) but not available")
    pytest.skip(f"{what} not available")


def kvm_present() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def _engine() -> str:
    """The engine guests boot on: TANDEM_ACCEL, else KVM where /dev/kvm opens, else the emulator.
    It is always named on tandem's command line, so no test runs on a silent fallback."""
    return os.environ.get("TANDEM_ACCEL") or ("kvm" if kvm_present() else "emu")


@pytest.fixture(scope="session")
def env() -> Env:
    build = pathlib.Path(os.environ.get("TANDEM_BUILD", ROOT / "build"))
    guests = pathlib.Path(os.environ.get("TANDEM_GUESTS", build / "guests"))
    e = Env(root=ROOT, tandem=build / "tandem", guests=guests, accel=_engine())
    assert e.tandem.exists(), f"{e.tandem} not built"
    return e


def pytest_report_header(config):
    return f"tandem engine for guests: {_engine()} (/dev/kvm {'present' if kvm_present() else 'absent'})"


@pytest.fixture
def vmenv(env):
    """A test that boots a guest: it runs on env.accel (kvm, or emu without /dev/kvm)."""
    if env.accel == "kvm":
        _need("/dev/kvm", kvm_present())
    return env


@pytest.fixture
def qemu(vmenv):
    _need("qemu-system-x86_64", shutil.which("qemu-system-x86_64") is not None)
    return vmenv


@pytest.fixture
def procs():
    """Every process started through this list is killed (-9) at the end of the test."""
    started = []
    yield started
    for p in started:
        p.kill()
