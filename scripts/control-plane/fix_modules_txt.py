#!/usr/bin/env python3
"""Rewrite Kubernetes 1.20's vendor/modules.txt into the layout Go >= 1.17 accepts.

Kubernetes 1.20 was vendored with Go 1.15. Its modules.txt lists, for replaced modules,
two header lines:
    # example.com/mod v1.2.3 => example.com/mod v1.2.3     (versioned)
    # example.com/mod => example.com/mod v1.2.3            (wildcard replacement)
and many package lines sit under the *wildcard* line (sometimes even under a nested
module's wildcard line). Go >= 1.17 attributes package lines to the module header right
above them, so packages under a wildcard line belong to a module without a version and
`go build -mod=vendor` fails with "updates to go.mod needed, disabled by -mod=vendor".

This script moves every package line under the versioned header of the module that
actually contains it (longest module-path prefix). Header lines and "## ..." annotation
lines keep their order; no line is added or removed.

Usage: fix_modules_txt.py INPUT OUTPUT   (INPUT is the pristine file; OUTPUT may equal it)
"""

import sys


def main(src, dst):
    with open(src) as f:
        lines = f.read().splitlines()

    # blocks: list of [header_line, is_versioned, module_path, annotations, packages]
    blocks, versioned = [], {}
    packages = []
    for line in lines:
        if line.startswith("## "):
            if not blocks:
                sys.exit(f"fix_modules_txt: annotation before any module header: {line!r}")
            blocks[-1][3].append(line)
        elif line.startswith("# "):
            f = line.split()
            if len(f) < 3:
                sys.exit(f"fix_modules_txt: unexpected header line: {line!r}")
            is_versioned = f[2] != "=>"
            block = [line, is_versioned, f[1], [], []]
            blocks.append(block)
            if is_versioned:
                if f[1] in versioned:
                    sys.exit(f"fix_modules_txt: module {f[1]} listed twice with a version")
                versioned[f[1]] = block
        elif line.strip():
            if len(line.split()) != 1:
                sys.exit(f"fix_modules_txt: unexpected package line: {line!r}")
            packages.append(line.strip())

    moved = 0
    modules_touched = set()
    for pkg in packages:
        # Longest module path that is a prefix of the package path.
        path, owner = pkg, None
        while True:
            if path in versioned:
                owner = versioned[path]
                break
            if "/" not in path:
                break
            path = path.rsplit("/", 1)[0]
        if owner is None:
            sys.exit(f"fix_modules_txt: no versioned module header owns package {pkg}")
        owner[4].append(pkg)

    # Count what changed relative to the original attribution (for the log line).
    current = None
    for line in lines:
        if line.startswith("# "):
            current = line
        elif line.strip() and not line.startswith("## "):
            owner_header = None
            for b in blocks:
                if line.strip() in b[4]:
                    owner_header = b[0]
                    break
            if owner_header != current:
                moved += 1
                modules_touched.add(owner_header)

    out = []
    for header, _, _, annotations, pkgs in blocks:
        out.append(header)
        out.extend(annotations)
        out.extend(pkgs)
    if sorted(out) != sorted(lines):
        sys.exit("fix_modules_txt: internal error, line multiset changed")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")
    print(
        f"fix_modules_txt: moved {moved:d} package lines of {len(modules_touched):d} modules"
        " under their versioned header"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
