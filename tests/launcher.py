"""What `ray up` needs to reach this machine as a cluster node: an sshd bound to 127.0.0.1 with a
throwaway key, and the node's image (what cluster.yaml's Docker image gives: Python 3.11 with
Ray on the PATH), in a home folder of the test's own so that nothing is written to the user's."""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, free_port

SSHD = Path("/usr/sbin/sshd")


def missing_tools() -> list[str]:
    tools = [str(SSHD) if not SSHD.exists() else ""]
    tools += [t for t in ("ssh", "ssh-keygen", "rsync") if shutil.which(t) is None]
    return [t for t in tools if t]


def node_image(home: Path) -> Path:
    """A venv in ``home`` that sees this test's packages (as the cluster's image has Ray and its
    dependencies), with `ray` on the PATH that every SSH login gets from ``home/.bashrc``. The
    cluster's own setup commands then install the project into it from the copied checkout."""
    venv = home / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    inner = next((venv / "lib").glob("python3*/site-packages"))
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in outer)
    (inner / "_node_image.pth").write_text(lines)
    ray = venv / "bin" / "ray"
    ray.write_text(f"#!{venv}/bin/python\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n")
    ray.chmod(0o755)
    (home / ".bashrc").write_text(f'export PATH="{venv}/bin:$PATH"\n')
    return venv


@dataclass
class Sshd:
    """An sshd on a free 127.0.0.1 port that admits one throwaway key; every login gets ``home``
    as its HOME."""

    folder: Path
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def key(self) -> Path:
        return self.folder / "id_ed25519"

    @property
    def proxy_command(self) -> str:
        return f"{sys.executable} {REPO / 'tests' / 'ssh_relay.py'} {self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("id_ed25519", "host_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.folder / name)], check=True)
        shutil.copy(self.folder / "id_ed25519.pub", self.folder / "authorized_keys")
        self.port = free_port()
        config = self.folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.folder / 'host_ed25519'}\n"
            f"PidFile {self.folder / 'sshd.pid'}\nAuthorizedKeysFile {self.folder / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"PermitRootLogin prohibit-password\nStrictModes no\nSetEnv HOME={self.home}\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        log = (self.folder / "sshd.log").open("wb")
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        import socket

        for _ in range(100):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.folder / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def processes_with_home(home: Path) -> list[tuple[int, str]]:
    """Processes whose environment has HOME=``home``: everything the SSH logins started."""
    marker = f"HOME={home}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if marker in env:
                found.append((int(pid), Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:
            continue
    return found
