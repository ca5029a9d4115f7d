#!/usr/bin/env python3
"""Checks the rules of docs/architecture.md, "Who may use whom".

    check-layers.py SOURCE_ROOT ARCHIVE...

1. Includes, by folder: src/basic/ includes nothing of svemig but itself and
   the public svemig/error.h; src/ never includes daemon/; of src/'s
   folders, a lower one never includes a higher one (basic < sim, stream <
   migrate < membership: src/'s own files lie in several layers, which 2. checks);
   a program's folder under daemon/ includes only itself, daemon/shared/,
   src/basic/, include/ and the generated headers; daemon/shared/ no
   program's folder.
2. Calls: the files of each static library (libsvemig.a, libbasic.a,
   libsvemig-shared.a) call each other in no circle. The graph comes from
   the archive's symbols: a member that uses a symbol another defines
   depends on it.

Prints each violation and exits 1, or prints what it checked and exits 0.
"""
import collections
import os
import re
import subprocess
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
PROGRAMS = ("svemigd", "vmm", "ctl", "demo", "hook")

# src/'s folders from the lowest up: a folder may include its own headers and
# those of folders below it, never above.
SRC_RANKS = {"basic": 0, "uapi": 0, "sim": 1, "stream": 1, "store": 1, "migrate": 2, "membership": 3}


def headers_under(root, sub):
    names = {}
    for d, _, files in os.walk(os.path.join(root, sub)):
        for f in files:
            if f.endswith(".h"):
                names.setdefault(f, os.path.relpath(os.path.join(d, f), root))
    return names


def sources(root, sub):
    for d, _, files in os.walk(os.path.join(root, sub)):
        for f in sorted(files):
            if f.endswith((".c", ".h")):
                yield os.path.relpath(os.path.join(d, f), root)


def src_folder(path):
    """The src/ folder a file or include path lies in ('' for src/ itself)."""
    parts = path.split("/")
    return parts[0] if len(parts) > 1 else ""


def check_includes(root):
    bad = []
    daemon_headers = headers_under(root, "daemon")
    basic_headers = set(headers_under(root, "src/basic"))
    shared_headers = set(headers_under(root, "daemon/shared"))
    generated = {"config.h", "api.pb-c.h", "peer.pb-c.h", "stream.pb-c.h"}

    for f in sources(root, "src"):
        rel = f[len("src/"):]
        folder = src_folder(rel)
        for inc in INCLUDE.findall(open(os.path.join(root, f)).read()):
            if inc in daemon_headers and not os.path.exists(os.path.join(root, "src", inc)) \
                    and inc not in basic_headers:
                bad.append(f"{f}: includes {inc}, a header of daemon/ ({daemon_headers[inc]})")
            if folder == "basic":
                if inc not in basic_headers and inc != "svemig/error.h":
                    bad.append(f"{f}: src/basic/ includes {inc}; it may use nothing else of svemig")
                continue
            inc_folder = src_folder(inc) if os.path.exists(os.path.join(root, "src", inc)) else None
            if inc_folder is None or folder == "" or inc_folder == "":
                continue
            if SRC_RANKS.get(inc_folder, 0) > SRC_RANKS.get(folder, 0):
                bad.append(f"{f}: src/{folder}/ includes {inc}, from src/{inc_folder}/ above it")

    for f in sources(root, "daemon"):
        parts = f.split("/")
        prog = parts[1]
        own = set(headers_under(root, f"daemon/{prog}"))
        for inc in INCLUDE.findall(open(os.path.join(root, f)).read()):
            if inc.startswith("svemig/") or inc in generated or inc in basic_headers:
                continue
            if inc in own:
                continue
            if prog in PROGRAMS and inc in shared_headers:
                continue
            where = daemon_headers.get(inc, "src/ (the library's internals)")
            bad.append(f"{f}: includes {inc} from {where}; daemon/{prog}/ may use only "
                       "its own folder, daemon/shared/, src/basic/ and include/")
    return bad


def archive_graph(archive):
    """member -> the members whose symbols it uses."""
    defined, used = collections.defaultdict(set), collections.defaultdict(set)
    out = subprocess.run(["nm", "-A", archive], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        head, _, rest = line.rpartition(":")
        member = head.split(":")[-1]
        p = rest.split()
        if len(p) == 3 and p[1] in "TDBRV":
            defined[member].add(p[2])
        elif len(p) == 2 and p[0] == "U":
            used[member].add(p[1])
    owner = {}
    for m, syms in defined.items():
        for s in syms:
            owner.setdefault(s, m)
    graph = collections.defaultdict(set)
    for m, syms in used.items():
        for s in syms:
            if s in owner and owner[s] != m:
                graph[m].add(owner[s])
    return graph, set(defined) | set(used)


def cycles(graph, nodes):
    """Strongly connected components of more than one member (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root, archives = sys.argv[1], sys.argv[2:]
    bad = check_includes(root)
    members = 0
    for a in archives:
        graph, nodes = archive_graph(a)
        members += len(nodes)
        for comp in cycles(graph, nodes):
            bad.append(f"{os.path.basename(a)}: these files call each other in a circle: "
                       + " ".join(comp))
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} layering violation(s): see docs/architecture.md, \"Who may use whom\"")
        return 1
    print(f"layers: the includes of src/ and daemon/ and the calls between {members} files "
          f"of {len(archives)} libraries follow docs/architecture.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
