"""A Prometheus web-config file for a test endpoint: a self-signed certificate for 127.0.0.1 and one bcrypt user.

Needs the ``openssl`` command (callers skip without it) and bcrypt; the files are written beside the web-config so
the paths in it stay relative.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def write_web_config(directory: Path, user: str, hashed: bytes) -> Path:
    """Make ``directory`` with ``server.crt``/``server.key`` (CN localhost, SAN 127.0.0.1) and ``web.yml`` in it."""
    directory.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.crt", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        cwd=directory, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    path = directory / "web.yml"
    path.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  {user}: '{hashed.decode()}'\n"
    )
    return path
