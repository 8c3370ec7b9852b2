"""Where the tests find the *secure* Kafka broker and PostgreSQL's CA.

The secure broker (SASL_SSL only, SCRAM-SHA-512, ACLs enforced, mutual TLS on the
controller listener) runs beside the plain one when the local stack is started with
`deploy/local/stack.sh start --secure` (make test does). Each setting comes from the
environment when set (`eval "$(deploy/local/stack.sh env)"` prints them), else from the
local stack's files under GLV_STATE_DIR (default /var/tmp/glv):

    GLV_SECURE_KAFKA_BOOTSTRAP            127.0.0.1:$GLV_KAFKA_SECURE_PORT (59094)
    GLV_SECURE_KAFKA_CAFILE               $GLV_STATE_DIR/tls/ca.crt
    GLV_SECURE_KAFKA_ADMIN_USER           glv-admin (a super user)
    GLV_SECURE_KAFKA_ADMIN_PASSWORD       the password itself, else read from
    GLV_SECURE_KAFKA_ADMIN_PASSWORD_FILE  $GLV_STATE_DIR/kafka-secure/admin.password
    GLV_DATABASE_CA                       $GLV_STATE_DIR/tls/ca.crt (signed PostgreSQL's certificate)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TLS_SCRIPT = REPO / "deploy" / "local" / "tls.sh"
START_HINT = "start it with deploy/local/stack.sh start --secure"


@dataclass(frozen=True)
class SecureInfra:
    bootstrap: str  # host:port of the SASL_SSL listener
    cafile: str  # the CA that signed the broker's certificate
    admin_user: str
    admin_password: str = field(repr=False)
    pg_cafile: str  # the CA that signed PostgreSQL's certificate (verify-full)
    tls_script: str  # deploy/local/tls.sh: `bash tls.sh DIR` makes another, unrelated CA


def _state_dir() -> Path:
    return Path(os.environ.get("GLV_STATE_DIR") or "/var/tmp/glv")


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    with contextlib.suppress(OSError, ValueError), socket.create_connection((host, int(port)), timeout=2):
        return True
    return False


def _readable_file(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise RuntimeError(f"secure broker: {what} {path} not found; {START_HINT}")
    return path


def secure_infra() -> SecureInfra:
    """The secure broker's settings; RuntimeError if it does not answer."""
    state = _state_dir()
    port = os.environ.get("GLV_KAFKA_SECURE_PORT") or "59094"
    bootstrap = os.environ.get("GLV_SECURE_KAFKA_BOOTSTRAP") or f"127.0.0.1:{port}"
    if not _reachable(bootstrap.split(",")[0]):
        raise RuntimeError(f"No secure Kafka broker answers on {bootstrap}; {START_HINT}")
    cafile = _readable_file(
        os.environ.get("GLV_SECURE_KAFKA_CAFILE") or str(state / "tls" / "ca.crt"), "CA certificate"
    )
    admin_user = os.environ.get("GLV_SECURE_KAFKA_ADMIN_USER") or "glv-admin"
    admin_password = os.environ.get("GLV_SECURE_KAFKA_ADMIN_PASSWORD")
    if not admin_password:
        password_file = _readable_file(
            os.environ.get("GLV_SECURE_KAFKA_ADMIN_PASSWORD_FILE") or str(state / "kafka-secure" / "admin.password"),
            "admin password file",
        )
        try:
            admin_password = Path(password_file).read_text().strip()
        except OSError as error:
            raise RuntimeError(f"secure broker: cannot read {password_file}: {error}") from error
    pg_cafile = _readable_file(os.environ.get("GLV_DATABASE_CA") or str(state / "tls" / "ca.crt"), "PostgreSQL CA")
    return SecureInfra(
        bootstrap=bootstrap,
        cafile=cafile,
        admin_user=admin_user,
        admin_password=admin_password,
        pg_cafile=pg_cafile,
        tls_script=str(TLS_SCRIPT),
    )


def make_untrusted_ca(tmp_dir: Path | str) -> Path:
    """A second CA, unrelated to the stack's, with its own server and client certificates.

    Runs deploy/local/tls.sh into tmp_dir (ca.crt, pg-server.*, kafka-server.*,
    kafka-controller.* for mutual TLS, see the script) and returns tmp_dir/ca.crt.
    """
    target = Path(tmp_dir)
    result = subprocess.run(
        ["bash", str(TLS_SCRIPT), str(target)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{TLS_SCRIPT} {target} failed ({result.returncode}): {result.stderr.strip()}")
    return target / "ca.crt"
