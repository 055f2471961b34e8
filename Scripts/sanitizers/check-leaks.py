#!/usr/bin/env python3
"""Reads the LeakSanitizer report at the end of the test process's log (Scripts/sanitize.sh address) and fails on
any leak that could be the project's.

swift-corelibs-xctest never frees a test case: XCTestCase and its XCTestCaseRun hold each other strongly, so at exit
every test-case instance, and everything it holds (fixtures loaded in setUp, HummingbirdTesting's embedded
channels, XCTest's own bookkeeping), is an *indirect* leak: a cycle with no leaked root, which no suppression can
name, since LeakSanitizer matches suppressions against each record's own allocation stack. So the rule is:

  - a direct leak that Scripts/sanitizers/lsan.supp does not suppress fails;
  - an indirect leak fails when any frame of its allocation stack is in the project's Sources/ (an object of the
    project's code in a cycle, or kept by one), and is counted as XCTest's otherwise.

The `unclip` processes the CLI tests start are built with the same sanitizer and check their own leaks at exit,
with no exceptions: a leak there is exit status 23 and a failed test.

  check-leaks.py LOG   prints what it found; exit 0 when nothing is the project's
"""
import pathlib
import re
import sys

SOURCES = str(pathlib.Path(__file__).resolve().parents[2] / "Sources") + "/"  # this checkout's own code

log = open(sys.argv[1], errors="replace").read()
reports = [m.start() for m in re.finditer(r"==\d+==ERROR: LeakSanitizer: detected memory leaks", log)]
if not reports:
    print("leaks: none reported")
    sys.exit(0)
failed = 0
xctest = [0, 0]
for start in reports:
    section = log[start:]
    end = section.find("SUMMARY: AddressSanitizer")
    section = section[:end if end >= 0 else len(section)]
    for record in re.split(r"\n(?=(?:Direct|Indirect) leak of)", section)[1:]:
        head = record.split("\n", 1)[0]
        size = int(re.search(r"of (\d+) byte", head).group(1))
        count = int(re.search(r"in (\d+) object", head).group(1))
        project = [line.strip() for line in record.split("\n") if SOURCES in line]
        if head.startswith("Direct") or project:
            failed += 1
            print("leaks: the project's?\n" + "\n".join(record.split("\n")[:16]))
        else:
            xctest[0] += count
            xctest[1] += size
print(f"leaks: {failed} record(s) that could be the project's; {xctest[0]} allocation(s), {xctest[1]} byte(s) "
      "kept by XCTest's test-case cycles (no frame in Sources/)")
sys.exit(1 if failed else 0)
