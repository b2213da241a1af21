#!/usr/bin/env python3
"""Finds import cycles between the modules of src/ (production code only).

For every file, each `crate::…` and `super::…` path it names gives an edge between the two
sibling modules where the paths part (src/a/x.rs naming crate::b::y is a -> b; naming
crate::a::z is x -> z). A strongly connected group of two or more siblings is a cycle. Test
modules (`tests.rs`, `*_tests.rs`, and what follows `#[cfg(test)]`) are left out.
Exit 1 and the cycles, or exit 0.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
TEST_ONLY = re.compile(r"(^|/)(tests|[a-z_]+_tests|twin|contract|memory)\.rs$")


def module_of(rel):
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def production_text(path):
    text = open(path).read()
    cut = text.find("#[cfg(test)]\nmod tests")
    return text if cut < 0 else text[:cut]


def paths_named(text, module):
    for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
        parts = m.group(2).split("::")[1:]
        if m.group(1) == "crate":
            yield parts
        else:
            base = list(module)
            rest = parts
            while rest and rest[0] == "super":
                rest = rest[1:]
                base = base[:-1]
            yield base[:-1] + rest if rest else base[:-1]
    # `use super::{a, b}` and `use crate::{a, b}` groups
    for m in re.finditer(r"\b(crate|super)::\{([^}]*)\}", text):
        base = [] if m.group(1) == "crate" else module[:-1]
        for item in m.group(2).split(","):
            name = item.strip().split("::")[0]
            if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                yield base + [name]


def main():
    modules = set()
    files = []
    for root, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(root, name), ROOT)
                if TEST_ONLY.search(rel):
                    continue
                files.append(rel)
                modules.add(tuple(module_of(rel)))
    edges = {}
    for rel in files:
        module = module_of(rel)
        for target in paths_named(production_text(os.path.join(ROOT, rel)), module):
            k = 0
            while k < len(module) and k < len(target) and module[k] == target[k]:
                k += 1
            if k >= len(module) or k >= len(target):
                continue
            a, b = tuple(module[: k + 1]), tuple(target[: k + 1])
            if b in modules:
                edges.setdefault(a, set()).add(b)
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(group)

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    for group in out:
        print("cycle:", " <-> ".join("::".join(g) for g in sorted(group)))
    print(f"{len(modules)} modules, {sum(len(v) for v in edges.values())} edges, {len(out)} cycles")
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
