#!/usr/bin/python3
"""summarize.py: fold meson's testlog.json, pytest's junit XML and the fuzz log into one line."""
import json
import os
import pathlib
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    results = pathlib.Path(sys.argv[1])
    build_failed = sys.argv[2] != "0"
    passed = failed = skipped = 0
    failures = []
    # CI: every test must run (guests boot on the emulator where /dev/kvm is absent).
    strict = os.environ.get("TANDEM_REQUIRE_GUESTS") == "1"
    for log in sorted(results.glob("unit-*.json")):
        for line in log.read_text().splitlines():
            if not line.strip():
                continue
            t = json.loads(line)
            if t["result"] in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif t["result"] == "SKIP" and not strict:
                skipped += 1
            else:
                failed += 1
                failures.append(f"{log.stem}: {t['name']} ({t['result']})")
    for xml in sorted(results.glob("int-*.xml")):
        for case in ET.parse(xml).iter("testcase"):
            name = f"{xml.stem}: {case.get('classname')}.{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                failures.append(name)
            elif case.find("skipped") is not None:
                if strict:
                    failed += 1
                    failures.append(f"{name} (skipped: {case.find('skipped').get('message')})")
                else:
                    skipped += 1
            else:
                passed += 1
    fuzz = results / "fuzz.txt"
    if fuzz.exists():
        if "fuzz exit 0" in fuzz.read_text():
            passed += 1
        else:
            failed += 1
            failures.append("fuzz: stream loader")
    fmt = results / "format.txt"
    if fmt.exists():
        if "format: FAILED" in fmt.read_text():
            failed += 1
            failures.append("format: clang-format --dry-run --Werror")
        else:
            passed += 1
    if build_failed:
        failed += 1
        failures.append("build")
    for f in failures:
        print(f"FAILED {f}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
