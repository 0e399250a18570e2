"""Where shopguard keeps its files on this platform."""

from __future__ import annotations

import os
import re
import stat
from importlib.resources import files
from pathlib import Path

import platformdirs

APP = "shopguard"


def shipped_config_dir() -> Path:
    """The defaults installed with the package (`config/` in the source tree)."""
    return Path(str(files("shopguard.defaults")))


def user_config_dir() -> Path:
    """The user's own configuration: `shopguard.yaml`, `sites/*.yaml`, `profile.yaml`."""
    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def state_dir() -> Path:
    """Logs, the CA and other files shopguard writes."""
    return Path(platformdirs.user_state_dir(APP, appauthor=False))


def default_log_path() -> Path:
    return state_dir() / "flows.jsonl"


def confdir() -> Path:
    """shopguard's own mitmproxy confdir (its CA lives here, not in ~/.mitmproxy)."""
    return state_dir() / "mitmproxy"


def addon_script() -> Path:
    """The entry script for `mitmdump -s` / `mitmweb -s`."""
    return Path(str(files("shopguard") / "script" / "shopguard_addons.py"))


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by the user only; return it."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        directory.chmod(0o700)  # mkdir's mode is filtered by the umask
    return path


def own_dir(path: Path) -> Path:
    """A directory of shopguard's own (its state, its CA, the default log directory): created
    as `private_dir` does, and made private (700) also when it exists; return it."""
    private_dir(path)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


# the files of the CA directory anyone may have: the CA's certificate in its three formats, and
# Diffie-Hellman parameters; every other file there holds a key (the CA's, WireGuard's)
PUBLIC_FILES = re.compile(r".+-ca-cert\.(pem|p12|cer)|.+-dhparam\.pem")


def protect_keys(directory: Path) -> None:
    """Make every file of `directory` (the CA directory) but its public ones readable by the
    user only (600): mitmproxy writes some of them with the umask's mode."""
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        info = path.lstat()
        secret = stat.S_ISREG(info.st_mode) and not PUBLIC_FILES.fullmatch(path.name)
        if secret and stat.S_IMODE(info.st_mode) != 0o600:
            path.chmod(0o600)


def install_secret() -> bytes:
    """The per-install key of the log's fingerprints, created on first use (mode 600, also
    made so when it exists)."""
    path = private_dir(state_dir()) / "secret.key"
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        pass
    else:
        if stat.S_IMODE(path.stat().st_mode) != 0o600:
            path.chmod(0o600)
        return secret
    secret = os.urandom(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


def default_profile_path() -> Path:
    return user_config_dir() / "profile.yaml"
