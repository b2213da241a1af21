#!/usr/bin/env python3
"""Keeps src/ in small rooms: no file over 500 lines, no production function over 80 lines,
and no `#[allow(dead_code)]` (items are pub(crate), so the compiler finds dead code).
Functions in test modules (`tests.rs`, `*_tests.rs`, after `#[cfg(test)]`) are not counted.
Exit 1 with the offenders, or exit 0."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_FILE_LINES = 500
MAX_FN_LINES = 80
FN = re.compile(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)")


def long_functions(lines):
    """(name, first line, length) of each function longer than the limit."""
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            code = re.sub(r'"(\\.|[^"\\])*"|//.*', "", lines[j])
            depth += code.count("{") - code.count("}")
            started = started or "{" in code
            if started and depth <= 0:
                break
            if not started and code.rstrip().endswith(";"):
                break
            j += 1
        if started and j - i + 1 > MAX_FN_LINES:
            yield m.group(6), i + 1, j - i + 1
        i += 1


def main():
    problems = []
    for root, _, names in os.walk(ROOT):
        for name in sorted(names):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, os.path.join(ROOT, ".."))
            lines = open(path).read().split("\n")
            if len(lines) - 1 > MAX_FILE_LINES:
                problems.append(f"{rel}: {len(lines) - 1} lines (limit {MAX_FILE_LINES})")
            for n, line in enumerate(lines, 1):
                if "allow(dead_code)" in line:
                    problems.append(f"{rel}:{n}: #[allow(dead_code)]")
            if name == "tests.rs" or name.endswith("_tests.rs"):
                continue
            end = next((k for k, l in enumerate(lines) if l.startswith("#[cfg(test)]")), len(lines))
            for fn, start, length in long_functions(lines[:end]):
                problems.append(f"{rel}:{start}: fn {fn} is {length} lines (limit {MAX_FN_LINES})")
    for p in problems:
        print(p)
    print(f"sizes: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
