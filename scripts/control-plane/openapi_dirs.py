#!/usr/bin/env python3
"""Print the comma-separated openapi-gen input packages for k8s.io/kubernetes
(the KUBE target of upstream's build/root/Makefile.generated_files, v1.20):

  * every directory of the source tree holding *.go files, excluding ./vendor, ./_* and
    ./.* (staging/src/X is named vendor/X, as hack/make-rules/helpers/cache_go_dirs.sh does);
  * whose *.go files (depth 1) carry a line matching '^// *+k8s:' and contain
    '+k8s:openapi-gen=';
  * minus vendor/k8s.io/code-generator/ and vendor/k8s.io/sample-apiserver/;
  * each prefixed with k8s.io/kubernetes/, LC_ALL=C sorted, unique.

Usage: openapi_dirs.py SOURCE_ROOT
"""

import os
import re
import sys

TAG = re.compile(rb"^// *\+k8s:", re.M)


def main(root):
    root = os.path.abspath(root)
    dirs = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d != "vendor" and not d.startswith((".", "_"))]
        for fn in filenames:
            if not fn.endswith(".go"):
                continue
            path = os.path.join(dirpath, fn)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                data = f.read()
            if TAG.search(data) and b"+k8s:openapi-gen=" in data:
                name = rel
                if name.startswith("staging/src/"):
                    name = "vendor/" + name[len("staging/src/") :]
                dirs.add(name)
                break
    dirs = sorted(
        d for d in dirs if not d.startswith(("vendor/k8s.io/code-generator/", "vendor/k8s.io/sample-apiserver/"))
    )
    if not dirs:
        sys.exit(f"openapi_dirs: no +k8s:openapi-gen packages found under {root}")
    print(",".join("k8s.io/kubernetes/" + d for d in dirs))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
