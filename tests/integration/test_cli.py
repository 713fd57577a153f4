"""test_cli.py: `tandem` command-line behaviour: help, version, bad options, missing files."""
import subprocess


def run(env, *args):
    return subprocess.run([str(env.tandem), *map(str, args)], capture_output=True, text=True,
                          timeout=30)


def test_help_and_version(env):
    r = run(env, "run", "--help")
    assert r.returncode == 0 and "--kernel" in r.stdout and "--qmp" in r.stdout
    r = run(env, "--version")
    assert r.returncode == 0 and r.stdout.startswith("tandem ")
    r = run(env, "ctl", "--help")
    assert r.returncode == 0 and "--qmp" in r.stdout


def test_bad_option_exits_2_and_names_it(env):
    r = run(env, "run", "--kernle", "x")
    assert r.returncode == 2 and "--kernle" in r.stderr
    r = run(env, "run", "--kernel", env.guest("hello"), "--memory", "lots")
    assert r.returncode == 2 and "--memory" in r.stderr
    r = run(env, "run", "--kernel", env.guest("hello"), "--cpus", "0")
    assert r.returncode == 2 and "--cpus" in r.stderr
    r = run(env, "run", "--kernel", env.guest("hello"), "--serial", "bogus")
    assert r.returncode == 2 and "--serial" in r.stderr
    r = run(env, "frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr


def test_missing_kernel_file(env):
    r = run(env, "run", "--kernel", "/nonexistent/k.elf")
    assert r.returncode == 2 and "/nonexistent/k.elf" in r.stderr


def test_malformed_kernel_rejected(env, vmenv, tmp_path):
    bad = tmp_path / "bad.elf"
    bad.write_bytes(b"\x7fELF" + b"\x00" * 200)
    r = run(env, "run", "--kernel", bad)
    assert r.returncode == 1 and "multiboot" in r.stderr.lower()


def test_serial_to_file(env, vmenv, tmp_path):
    out = tmp_path / "serial.log"
    r = run(env, "run", "--kernel", env.guest("hello"), "--serial", f"file:{out}")
    assert r.returncode == 0
    assert "hello from tandem guest" in out.read_text()
    assert "hello from tandem guest" not in r.stdout
