"""test_guests.py: every test guest boots, prints and exits as specified, under tandem and QEMU."""
import pytest

from harness import qemu_run, qemu_status, tandem_run, ticks


def test_hello_tandem(vmenv, procs):
    p = tandem_run(vmenv, "hello", procs=procs)
    assert p.wait(60) == 0
    assert "hello from tandem guest" in p.text


def test_hello_qemu(qemu, procs):
    p = qemu_run(qemu, "hello", procs=procs)
    assert p.wait(60) == qemu_status(0)
    assert "hello from tandem guest" in p.text


@pytest.mark.parametrize("runner", ["tandem", "qemu"])
def test_counter_ticks_and_exits(vmenv, procs, runner):
    if runner == "qemu":
        from conftest import _need
        import shutil
        _need("qemu-system-x86_64", shutil.which("qemu-system-x86_64") is not None)
        p = qemu_run(vmenv, "counter", append="ticks=30", procs=procs)
        expect = qemu_status(0)
    else:
        p = tandem_run(vmenv, "counter", append="ticks=30", procs=procs)
        expect = 0
    assert p.wait(120) == expect, p.text
    t = ticks(p.text)
    assert t, p.text
    assert t == sorted(t) and max(t) <= 30
    assert "CORRUPT" not in p.text


@pytest.mark.parametrize("runner", ["tandem", "qemu"])
def test_dirty_rounds(vmenv, procs, runner):
    if runner == "qemu":
        from conftest import _need
        import shutil
        _need("qemu-system-x86_64", shutil.which("qemu-system-x86_64") is not None)
        p = qemu_run(vmenv, "dirty", append="pages=100 rounds=5", procs=procs)
        expect = qemu_status(0)
    else:
        p = tandem_run(vmenv, "dirty", append="pages=100 rounds=5", procs=procs)
        expect = 0
    assert p.wait(120) == expect, p.text
    assert "round 5" in p.text or "round 4" in p.text, p.text


def test_counter_two_vcpus(vmenv, procs):
    p = tandem_run(vmenv, "counter", "--cpus", "2", append="ticks=10", procs=procs)
    assert p.wait(120) == 0, p.text
    assert "CORRUPT" not in p.text


def test_counter_mem_too_big_is_reported(vmenv, procs):
    p = tandem_run(vmenv, "counter", "--memory", "32M", append="mem=64M ticks=1", procs=procs)
    assert p.wait(60) == 2, p.text


def test_unmapped_port_reads_all_ones(vmenv, procs):
    p = tandem_run(vmenv, "hello", append="port", procs=procs)
    assert p.wait(60) == 0, p.text
    assert "port 0x80=ff 0x1234=ff 0xfffe=ffff" in p.text
    assert "hello from tandem guest" in p.text


def test_write_beyond_ram_is_dropped(vmenv, procs):
    p = tandem_run(vmenv, "hello", "--memory", "64M", append="oob", procs=procs)
    assert p.wait(60) == 0, p.text
    assert "oob 0xE0000000=ffffffff" in p.text
    assert "hello from tandem guest" in p.text


def test_guest_page_fault_is_reported(vmenv, procs):
    p = tandem_run(vmenv, "hello", append="fault", procs=procs)
    assert p.wait(60) == 4, p.text
    assert "EXCEPTION vec=14" in p.text
