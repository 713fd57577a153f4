"""engine.py: which CPU engine the benchmarks compare on this host, for tandem and for QEMU.

With /dev/kvm both run on KVM; without it tandem runs on its emulator and QEMU on TCG (its
`-accel tcg -cpu max`). BENCH_ACCEL=kvm|emu forces tandem's side (QEMU follows it).
"""
import os


def name() -> str:
    forced = os.environ.get("BENCH_ACCEL")
    if forced:
        return forced
    return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "emu"


def tandem_args() -> list:
    return ["--accel", name()]


def qemu_args() -> list:
    if name() == "kvm":
        return ["-enable-kvm", "-cpu", "host,-arch-capabilities"]
    return ["-accel", "tcg", "-cpu", "max"]


def label() -> str:
    return "tandem kvm vs QEMU kvm" if name() == "kvm" else "tandem emu vs QEMU TCG"
