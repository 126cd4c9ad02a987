"""A real Kubernetes API server for tests and benchmarks (the envtest model).

Starts etcd and kube-apiserver (built from Go modules by ``tools/kube/build.sh``) on free
127.0.0.1 ports with freshly generated certificates, a static admin token (user ``admin`` in group
``system:masters``) and a temporary data folder; waits for ``/readyz``; installs the Gateway API
standard CRDs and waits until they are Established; writes a kubeconfig.

There is no kubelet, scheduler or controller-manager: pods never run, namespaces never finish
terminating, and a test that needs a StatefulSet to look ready writes its ``status`` subresource.

Usable without pytest and without an event loop::

    from support.kubeapi import KubeAPIServer
    with KubeAPIServer.start() as api:          # bin folder: see find_kube_bin()
        print(api.kubeconfig_path)

or from a shell: ``python tests/support/kubeapi.py`` (prints the kubeconfig path, runs until Ctrl-C).

Only the standard library, ``cryptography`` and ``pyyaml`` are needed here.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# libyaml parses the ~1.2 MB of Gateway API CRDs in 0.2 s; the pure-Python loader needs ~3.5 s.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "kube" / "build.sh"

ENV_KUBE_BIN = "SANDBOXD_KUBE_BIN"  # a folder holding kube-apiserver and etcd
ENV_KUBE_CRDS = "SANDBOXD_KUBE_CRDS"  # optional: folder of CRD YAMLs (default: <bin>/../crds)

FIELD_MANAGER = "sandboxd-test-harness"
GATEWAY_API_REQUIRED_CRDS = (
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
)

# REST paths for the cluster-scoped kinds that may appear in the CRD folder.
_CLUSTER_KINDS = {
    (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
    ): "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    ),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    ),
}


class KubeHarnessError(RuntimeError):
    """The harness could not provide a running API server (build, start or setup failed)."""


class KubeBinariesMissing(KubeHarnessError):
    """kube-apiserver/etcd are not built and cannot be built here (no Go toolchain)."""


# --------------------------------------------------------------------------------------------
# Locating (and if asked, building) the binaries
# --------------------------------------------------------------------------------------------


def _has_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("kube-apiserver", "etcd"))


def cached_kube_bin() -> tuple[Path, bool]:
    """The bin folder that tools/kube/build.sh uses for the pinned versions, and whether it is complete.

    Uses ``build.sh --check`` (hashing only; no Go needed)."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "--check"], capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise KubeHarnessError(f"{BUILD_SCRIPT} --check printed nothing: {proc.stderr.strip()}")
    return Path(lines[-1]), proc.returncode == 0


def go_available() -> bool:
    return shutil.which("go") is not None


def build_kube_bin(*, stream: Any = None) -> Path:
    """Run tools/kube/build.sh (a no-op when the cache is present); return the bin folder.

    Build logs go to ``stream`` (default: this process's stderr)."""
    if not go_available():
        raise KubeBinariesMissing(f"'go' is not on PATH, cannot run {BUILD_SCRIPT}")
    out = stream if stream is not None else sys.stderr
    print(
        f"[kubeapi] building kube-apiserver/etcd with {BUILD_SCRIPT} (cold: about 7 min on 2 cores)...",
        file=out,
        flush=True,
    )
    proc = subprocess.Popen(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    last = ""
    tail: list[str] = []
    for line in proc.stdout:
        print(f"[kube build] {line.rstrip()}", file=out, flush=True)
        last = line.strip() or last
        tail = [*tail[-30:], line.rstrip()]
    if proc.wait() != 0:
        raise KubeHarnessError(f"{BUILD_SCRIPT} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    bin_dir = Path(last)
    if not _has_binaries(bin_dir):
        raise KubeHarnessError(f"{BUILD_SCRIPT} finished but {bin_dir} lacks kube-apiserver/etcd")
    return bin_dir


def find_kube_bin(*, build: bool = False) -> Path:
    """Where kube-apiserver and etcd are.

    1. ``$SANDBOXD_KUBE_BIN`` (must hold both binaries, else an error: never silently ignored);
    2. tools/kube/build.sh's cache folder for the pinned versions, if complete;
    3. with ``build=True`` and Go on PATH: run build.sh (prints that it is building).
    Raises KubeBinariesMissing when none applies."""
    env = os.environ.get(ENV_KUBE_BIN)
    if env:
        p = Path(env).expanduser()
        if not _has_binaries(p):
            raise KubeHarnessError(f"${ENV_KUBE_BIN}={env} does not contain executable kube-apiserver and etcd")
        return p
    bin_dir, complete = cached_kube_bin()
    if complete:
        return bin_dir
    if build and go_available():
        return build_kube_bin()
    if go_available():
        raise KubeBinariesMissing(f"kube-apiserver/etcd not built in {bin_dir}; run tools/kube/build.sh")
    raise KubeBinariesMissing(f"kube-apiserver/etcd not built in {bin_dir} and 'go' is not on PATH")


def crds_dir_for(bin_dir: Path) -> Path:
    env = os.environ.get(ENV_KUBE_CRDS)
    return Path(env).expanduser() if env else bin_dir.parent / "crds"


# --------------------------------------------------------------------------------------------
# Certificates and credentials
# --------------------------------------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _make_pki(d: Path) -> dict[str, Path]:
    """CA, apiserver serving cert (127.0.0.1/localhost/kubernetes.*) and service-account key pair."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=7)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandboxd-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName(n)
        for n in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.0.0.1")]
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    sa_key = ec.generate_private_key(ec.SECP256R1())

    paths = {
        "ca_crt": d / "ca.crt",
        "ca_key": d / "ca.key",
        "srv_crt": d / "apiserver.crt",
        "srv_key": d / "apiserver.key",
        "sa_key": d / "sa.key",
        "sa_pub": d / "sa.pub",
    }
    paths["ca_crt"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["ca_key"], ca_key)
    paths["srv_crt"].write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["srv_key"], srv_key)
    _write_key(paths["sa_key"], sa_key)
    paths["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return paths


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGKILL the child if the harness process dies without calling stop().

    SIGKILL, not SIGTERM: etcd dies at the same moment, and a SIGTERMed kube-apiserver then hangs
    in graceful shutdown retrying etcd. The data is throwaway."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_WORK_PREFIX = "sandboxd-kube-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_stale_work_dirs() -> None:
    """Remove work folders (and kill their servers) left by harness processes that died without stop().

    Only folders whose owner.pid names a dead process are touched; a server is killed only when its
    command line names that folder."""
    for d in Path(tempfile.gettempdir()).glob(f"{_WORK_PREFIX}*"):
        try:
            owner = int((d / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError, ValueError):
                if f"{d}/" in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


def _use_pdeathsig() -> bool:
    return sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass
class KubeAPIServer:
    """A running etcd + kube-apiserver pair. Create with ``KubeAPIServer.start()``; ``stop()`` cleans up."""

    bin_dir: Path
    work_dir: Path
    url: str
    token: str
    ca_path: Path
    kubeconfig_path: Path
    etcd_url: str
    startup_seconds: float = 0.0
    _t0: float = field(default=0.0, repr=False)
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        bin_dir: Path | str | None = None,
        *,
        crds_dir: Path | str | None = None,
        install_crds: bool = True,
        build: bool = False,
        timeout: float = 120.0,
        attempts: int = 3,
        extra_apiserver_args: list[str] | None = None,
    ) -> KubeAPIServer:
        """Start etcd + kube-apiserver and return once the API (and the CRDs) are ready.

        ``bin_dir`` defaults to find_kube_bin(build=build). ``crds_dir`` defaults to <bin>/../crds
        (or $SANDBOXD_KUBE_CRDS); every CRD in it is installed. Retries ``attempts`` times when a
        picked port turns out to be taken."""
        bdir = Path(bin_dir) if bin_dir is not None else find_kube_bin(build=build)
        if not _has_binaries(bdir):
            raise KubeHarnessError(f"{bdir} does not contain executable kube-apiserver and etcd")
        cdir = Path(crds_dir) if crds_dir is not None else crds_dir_for(bdir)
        if install_crds and not any(cdir.glob("*.yaml")):
            raise KubeHarnessError(f"no CRD YAMLs in {cdir} (tools/kube/build.sh puts the Gateway API CRDs there)")
        last: Exception | None = None
        for _ in range(max(1, attempts)):
            server = cls._spawn(bdir, timeout=timeout, extra_args=extra_apiserver_args or [])
            try:
                server._wait_ready(timeout)
                if install_crds:
                    server.install_crds(cdir, timeout=timeout)
                server.startup_seconds = time.monotonic() - server._t0
                return server
            except _PortInUse as e:
                last = e
                server.stop()
            except BaseException:
                server.stop()
                raise
        raise KubeHarnessError(f"could not start kube-apiserver: {last}")

    @classmethod
    def _spawn(cls, bin_dir: Path, *, timeout: float, extra_args: list[str]) -> KubeAPIServer:
        t0 = time.monotonic()
        _reap_stale_work_dirs()
        work = Path(tempfile.mkdtemp(prefix=_WORK_PREFIX))
        (work / "owner.pid").write_text(str(os.getpid()))
        pki_dir = work / "pki"
        pki_dir.mkdir()
        pki = _make_pki(pki_dir)
        token = secrets.token_urlsafe(32)
        tokens_csv = pki_dir / "tokens.csv"
        tokens_csv.write_text(f'{token},admin,admin-uid,"system:masters"\n')
        tokens_csv.chmod(0o600)

        etcd_client, etcd_peer, api_port = _free_ports(3)
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        url = f"https://127.0.0.1:{api_port}"
        server = cls(
            bin_dir=bin_dir,
            work_dir=work,
            url=url,
            token=token,
            ca_path=pki["ca_crt"],
            kubeconfig_path=work / "kubeconfig",
            etcd_url=etcd_url,
        )
        server._t0 = t0
        atexit.register(server.stop)

        peer_url = f"http://127.0.0.1:{etcd_peer}"
        etcd_args = [
            str(bin_dir / "etcd"),
            "--name=sandboxd-test",
            f"--data-dir={work / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=sandboxd-test={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",  # test data only: much faster on slow disks
            "--log-level=warn",
        ]
        server._launch("etcd", etcd_args)
        server._wait_etcd(timeout)

        api_args = [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={work / 'apiserver-certs'}",
            f"--tls-cert-file={pki['srv_crt']}",
            f"--tls-private-key-file={pki['srv_key']}",
            f"--client-ca-file={pki['ca_crt']}",
            f"--token-auth-file={tokens_csv}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={pki['sa_pub']}",
            f"--service-account-signing-key-file={pki['sa_key']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # No controller-manager runs, so namespaces get no default ServiceAccount: do not demand one.
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--v=1",
            *extra_args,
        ]
        server._launch("kube-apiserver", api_args)
        server._write_kubeconfig()
        return server

    def stop(self) -> None:
        """Terminate kube-apiserver and etcd and delete the data folder. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._procs.clear()
        shutil.rmtree(self.work_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> KubeAPIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _launch(self, name: str, args: list[str]) -> None:
        log = open(self.work_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                # PDEATHSIG fires when the *thread* that forked exits, so only use it from the main thread.
                preexec_fn=_pdeathsig if _use_pdeathsig() else None,  # noqa: PLW1509
            )
        finally:
            log.close()
        self._procs.append((name, proc))

    def _check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                log = _tail(self.work_dir / f"{name}.log")
                if "address already in use" in log:
                    raise _PortInUse(f"{name}: address already in use")
                raise KubeHarnessError(f"{name} exited with code {proc.returncode}; last log lines:\n{log}")

    def _wait_etcd(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:  # noqa: S310
                    if json.loads(r.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise KubeHarnessError(f"etcd not healthy after {timeout}s:\n{_tail(self.work_dir / 'etcd.log')}")
            time.sleep(0.1)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            self._check_alive()
            try:
                status, body = self.request("GET", "/readyz", timeout=5)
                if status == 200:
                    return
                last = f"HTTP {status}: {body[-500:]!r}"
            except OSError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise KubeHarnessError(
                    f"kube-apiserver not ready after {timeout}s ({last}); log tail:\n"
                    f"{_tail(self.work_dir / 'kube-apiserver.log')}"
                )
            time.sleep(0.2)

    def _write_kubeconfig(self) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sandboxd-test",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_path)},
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "sandboxd-test", "context": {"cluster": "sandboxd-test", "user": "admin"}}],
            "current-context": "sandboxd-test",
            "preferences": {},
        }
        self.kubeconfig_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.kubeconfig_path.chmod(0o600)

    # -- a tiny synchronous REST client (no event loop needed) ----------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> tuple[int, bytes]:
        """One HTTP call to the API server as the admin user; returns (status, body); 4xx/5xx do not raise."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:  # noqa: S310
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def apply(self, collection_path: str, obj: dict[str, Any], *, timeout: float = 30) -> dict[str, Any]:
        """Server-side apply ``obj`` to ``<collection_path>/<name>`` (force, field manager = the harness)."""
        name = obj["metadata"]["name"]
        status, body = self.request(
            "PATCH",
            f"{collection_path}/{name}?fieldManager={FIELD_MANAGER}&force=true",
            obj,
            content_type="application/apply-patch+yaml",
            timeout=timeout,
        )
        if status not in (200, 201):
            raise KubeHarnessError(f"apply {collection_path}/{name} -> HTTP {status}: {body[:1000]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def install_crds(self, crds_dir: Path | str, *, timeout: float = 120) -> list[str]:
        """Apply every CRD (and admission policy) in ``crds_dir``/*.yaml; wait until CRDs are Established."""
        docs: list[tuple[str, dict[str, Any]]] = []
        for f in sorted(Path(crds_dir).glob("*.yaml")):
            for doc in yaml.load_all(f.read_text(), Loader=_YAML_LOADER):
                if not isinstance(doc, dict) or "kind" not in doc:
                    continue  # e.g. kustomization.yaml
                path = _CLUSTER_KINDS.get((doc.get("apiVersion", ""), doc["kind"]))
                if path is not None:
                    docs.append((path, doc))
        names = [d["metadata"]["name"] for _, d in docs if d["kind"] == "CustomResourceDefinition"]
        missing = [n for n in GATEWAY_API_REQUIRED_CRDS if n not in names]
        if missing:
            raise KubeHarnessError(f"{crds_dir} lacks Gateway API CRDs {missing}")
        with ThreadPoolExecutor(4, thread_name_prefix="kube-crds") as ex:
            list(ex.map(lambda pd: self.apply(pd[0], pd[1], timeout=timeout), docs))
        self.wait_crds_established(names, timeout=timeout)
        return names

    def wait_crds_established(self, names: list[str], *, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            self._check_alive()
            still = []
            for n in pending:
                status, body = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}")
                conds = (json.loads(body).get("status") or {}).get("conditions") or [] if status == 200 else []
                if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                    still.append(n)
            pending = still
            if pending and time.monotonic() > deadline:
                raise KubeHarnessError(f"CRDs not Established after {timeout}s: {pending}")
            if pending:
                time.sleep(0.2)
        # Established means served; also wait for discovery, which clients (DynamicClient, kubectl) use.
        groups = {n.split(".", 1)[1] for n in names}
        for g in groups:
            while True:
                status, _ = self.request("GET", f"/apis/{g}")
                if status == 200:
                    break
                if time.monotonic() > deadline:
                    raise KubeHarnessError(f"API group {g} not in discovery after {timeout}s")
                time.sleep(0.2)


class _PortInUse(KubeHarnessError):
    pass


@contextlib.contextmanager
def running_kube_api(**kw: Any) -> Iterator[KubeAPIServer]:
    """``with running_kube_api() as api: ...`` (same keywords as KubeAPIServer.start)."""
    server = KubeAPIServer.start(**kw)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run a throwaway kube-apiserver + etcd until Ctrl-C.")
    ap.add_argument("--bin-dir", help="folder with kube-apiserver and etcd (default: $SANDBOXD_KUBE_BIN or cache)")
    ap.add_argument("--build", action="store_true", help="run tools/kube/build.sh when the cache is missing")
    ap.add_argument("--no-crds", action="store_true", help="do not install the Gateway API CRDs")
    args = ap.parse_args(argv)
    with KubeAPIServer.start(args.bin_dir, build=args.build, install_crds=not args.no_crds) as api:
        print(f"ready in {api.startup_seconds:.1f}s; export KUBECONFIG={api.kubeconfig_path}", file=sys.stderr)
        print(api.kubeconfig_path, flush=True)
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
