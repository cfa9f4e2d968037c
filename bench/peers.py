"""Installs the other Rust loops that bench/run.py compares ferroloop with
into this interpreter's environment (uvloop comes with the environment):

    python bench/peers.py

rloop comes as a wheel from the package registry. rsloop has no wheel for
this machine's glibc: its source distribution is built into a wheel with the
nightly Rust toolchain it needs. It pins a nightly by date; where that one is
not installed, rustup's 'nightly' builds it, with the unstable library
features the pinned nightly accepts without asking switched on. The wheel is
built once and kept in target/bench-peers/, so a second run, or a new
virtual environment, installs it at once.

A peer that cannot be installed is skipped, with the reason printed; when
its build failed, the reason is kept beside the wheels, bench/run.py repeats
it in its notes, and later runs do not build again (delete
target/bench-peers/ to retry).
"""

import importlib.metadata
import os
import shlex
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / 'target' / 'bench-peers'
NIGHTLY = 'nightly'
PIP_TIMEOUT = 600
BUILD_TIMEOUT = 3600


@dataclass(frozen=True)
class Peer:
    name: str
    version: str
    # Library features that are unstable on the installed nightly but that the
    # nightly the source pins lets it use.
    unstable_features: tuple = ()

    @property
    def requirement(self):
        return f'{self.name}=={self.version}'

    @property
    def failure_note(self):
        return CACHE / f'{self.name}-{self.version}.failed'

    @property
    def build_log(self):
        return CACHE / f'{self.name}-{self.version}-build.log'

    def cached_wheels(self):
        return sorted(CACHE.glob(f'{self.name}-{self.version}-*.whl'))


PEERS = (
    Peer('rloop', '0.5.0'),
    Peer('rsloop', '0.1.66', unstable_features=('allocator_api',)),
)


class CannotInstall(Exception):
    pass


def installed_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def pip(*args, env=None, timeout=PIP_TIMEOUT, log=None):
    """Runs pip of this interpreter; raises CannotInstall with its last words."""
    command = [sys.executable, '-m', 'pip', *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CannotInstall(f'{shlex.join(command[2:])} took over {timeout} s') from None
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode:
        errors = [line.strip() for line in (done.stdout + done.stderr).splitlines()
                  if 'error' in line.lower()]
        reason = errors[0] if errors else f'exit status {done.returncode}'
        raise CannotInstall(f'{shlex.join(command[2:4])} failed: {reason}')


def has_nightly():
    try:
        toolchains = subprocess.run(['rustup', 'toolchain', 'list'], capture_output=True,
                                    text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.startswith(f'{NIGHTLY}-') for line in toolchains.splitlines())


def configured_rustflags(sdist):
    """The build.rustflags of the source's .cargo/config.toml: RUSTFLAGS in
    the environment replaces them, so ours must repeat them."""
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if member.name.endswith('/.cargo/config.toml') and member.name.count('/') == 2:
                config = tomllib.load(archive.extractfile(member))
                return list(config.get('build', {}).get('rustflags', []))
    return []


def build_wheel(peer):
    """Builds the peer's wheel from its source distribution into CACHE."""
    if not has_nightly():
        raise CannotInstall(f'no wheel for this platform, and no {NIGHTLY} Rust '
                            'toolchain to build its source with')
    source_dir = CACHE / 'sources'
    env = dict(os.environ, RUSTUP_TOOLCHAIN=NIGHTLY)
    pip('download', '--no-deps', '--no-binary', peer.name, '--dest', str(source_dir),
        peer.requirement, env=env)
    sdist = next(source_dir.glob(f'{peer.name}-{peer.version}.tar.gz'))
    rustflags = configured_rustflags(sdist) + [
        f'-Zcrate-attr=feature({feature})' for feature in peer.unstable_features]
    env.update(CARGO_TARGET_DIR=str(CACHE / f'build-{peer.name}'),
               RUSTFLAGS=' '.join(rustflags))
    print(f'peers: building {peer.requirement} from source with rustup\'s {NIGHTLY} '
          f'(once; log in {peer.build_log.relative_to(ROOT)})', flush=True)
    pip('wheel', '--no-deps', '--wheel-dir', str(CACHE), str(sdist), env=env,
        timeout=BUILD_TIMEOUT, log=peer.build_log)


def install(peer):
    """Makes the peer importable at its version; returns a line saying how."""
    if installed_version(peer.name) == peer.version:
        return f'{peer.requirement} installed'
    if not peer.cached_wheels():
        if peer.failure_note.exists():
            raise CannotInstall(peer.failure_note.read_text().strip())
        try:
            pip('install', '--quiet', '--only-binary', ':all:', peer.requirement)
            return f'{peer.requirement} installed from the registry'
        except CannotInstall:
            try:
                build_wheel(peer)
            except CannotInstall as exc:
                peer.failure_note.write_text(f'{exc}\n')
                raise
    pip('install', '--quiet', '--no-deps', str(peer.cached_wheels()[-1]))
    return f'{peer.requirement} installed from {peer.cached_wheels()[-1].relative_to(ROOT)}'


def missing_reason(name):
    """Why the named peer is not installed, as this script recorded it."""
    for peer in PEERS:
        if peer.name == name and peer.failure_note.exists():
            return peer.failure_note.read_text().strip()
    return 'not installed (make bench installs it with bench/peers.py)'


def main():
    CACHE.mkdir(parents=True, exist_ok=True)
    for peer in PEERS:
        try:
            print(f'peers: {install(peer)}', flush=True)
        except CannotInstall as exc:
            print(f'peers: {peer.name} skipped: {exc}', flush=True)


if __name__ == '__main__':
    main()
