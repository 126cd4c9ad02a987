"""Running the pinned helm binary on deploy/helm/sandboxd and reading what it renders.

``Helm`` wraps the binary ``tools/kube/build.sh helm`` builds: ``template`` returns the rendered objects,
``run`` the finished process (for the guards, whose failures are the point). ``helm_bin_dir`` finds the cache
folder without Go; ``build_helm`` fills it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
CHART: Final = REPO_ROOT / "deploy" / "helm" / "sandboxd"
BUILD_SCRIPT: Final = REPO_ROOT / "tools" / "kube" / "build.sh"
MINIMAL_VALUES: Final = CHART / "ci" / "minimal-values.yaml"
FULL_VALUES: Final = CHART / "ci" / "full-values.yaml"
#: A helm binary to use instead of the cached build.
ENV_HELM: Final = "SANDBOXD_HELM"


class HelmUnavailable(RuntimeError):
    """No helm binary, and none can be built here."""


def helm_bin_dir() -> tuple[Path, bool]:
    """The cache folder ``build.sh helm`` uses for the pinned version, and whether it holds the binary."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "helm", "--check"], capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise HelmUnavailable(f"{BUILD_SCRIPT} helm --check printed nothing: {proc.stderr.strip()}")
    return Path(lines[-1]), proc.returncode == 0


def build_helm(*, stream: Any = None) -> Path:
    """Run ``build.sh helm`` (minutes on a cold Go cache), its log on ``stream``; the bin folder."""
    out = stream if stream is not None else sys.stderr
    print(f"[helm] building helm with {BUILD_SCRIPT} helm (cold: about 5 min on 2 cores)...", file=out, flush=True)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "helm"], stdout=subprocess.PIPE, stderr=out, text=True, check=False
    )
    if proc.returncode != 0:
        raise HelmUnavailable(f"{BUILD_SCRIPT} helm failed with exit code {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


def find_helm() -> Path | None:
    """``$SANDBOXD_HELM``, else the cached build; None when neither exists."""
    explicit = os.environ.get(ENV_HELM)
    if explicit:
        return Path(explicit)
    bin_dir, complete = helm_bin_dir()
    return bin_dir / "helm" if complete else None


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        # No kube context, no plugins, no repositories: the run depends on the chart and the arguments only.
        env = {
            **os.environ,
            "HELM_CACHE_HOME": "/nonexistent/helm-cache",
            "HELM_CONFIG_HOME": "/nonexistent/helm-config",
            "HELM_DATA_HOME": "/nonexistent/helm-data",
            "KUBECONFIG": "/nonexistent/kubeconfig",
        }
        proc = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=env, check=False, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def template_args(
        self,
        *,
        values: Sequence[Path] = (MINIMAL_VALUES,),
        set_values: Mapping[str, str] | None = None,
        namespace: str = "sandboxd",
        release: str = "sbx",
    ) -> list[str]:
        args = ["template", release, str(CHART), "--namespace", namespace]
        for path in values:
            args += ["--values", str(path)]
        for key, value in (set_values or {}).items():  # strings stay strings; bools and numbers are typed
            if isinstance(value, str):
                args += ["--set-string", f"{key}={value}"]
            else:
                args += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
        return args

    def render(self, **kwargs: Any) -> str:
        """``helm template`` output; an ``AssertionError`` with helm's message when it fails."""
        return self.run(*self.template_args(**kwargs), check=True).stdout

    def template(self, **kwargs: Any) -> list[dict[str, Any]]:
        """The rendered objects, in helm's order."""
        return [doc for doc in yaml.safe_load_all(self.render(**kwargs)) if doc]

    def refusal(self, **kwargs: Any) -> str:
        """``helm template`` must fail: its error message (stderr)."""
        proc = self.run(*self.template_args(**kwargs))
        assert proc.returncode != 0, f"helm template succeeded but should have failed:\n{proc.stdout[:2000]}"
        return proc.stderr


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    assert len(found) == 1, f"expected one {kind} for {component}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name → env entry of the Deployment's container (each name once)."""
    entries = container(deployment)["env"]
    names = [e["name"] for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"{deployment['metadata']['name']} sets {duplicates} twice"
    return {e["name"]: e for e in entries}
