"""One version: the Cargo workspace's, in the native module and in the
installed package's metadata (maturin writes it there)."""

import importlib.metadata
import tomllib

import ferroloop
from conftest import ROOT


def test_version_comes_from_the_cargo_workspace():
    workspace = tomllib.loads((ROOT / 'Cargo.toml').read_text())
    version = workspace['workspace']['package']['version']
    assert ferroloop.__version__ == version
    assert importlib.metadata.version('ferroloop') == version
