"""The DVC remote may be object storage: a real S3 API (moto's server on loopback) through dvc[s3]."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import sh

pytestmark = pytest.mark.slow

TINY = {"scratch": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4, "max_steps": 20},
        "policy": {"first_generation": {"min_recall": 0.0, "min_generalize": 0.0}, "max_law_violations": 100}}


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on a free loopback port; stops by itself when the test ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    import boto3

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket="lineage")
    yield url, client
    server.terminate()
    server.wait(timeout=10)


def test_generation_pushed_to_s3_restores_in_a_fresh_clone(tmp_path, s3):
    url, client = s3
    store = tmp_path / "luna"
    store.mkdir()
    params = yaml.safe_load((Path(__file__).parents[1] / "lineage/template/params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    lineage = [sys.executable, "-m", "lineage"]
    dvc = str(Path(sys.executable).with_name("dvc"))
    sh(lineage + ["init", str(store), "--remote", "s3://lineage/stores/luna"], tmp_path)
    config = (store / ".dvc" / "config").read_text()
    assert "s3://lineage/stores/luna" in config  # an object-store remote is shared: committed
    sh([dvc, "remote", "modify", "--local", "origin", "endpointurl", url], store)
    sh(lineage + ["propose"], store)
    sh(lineage + ["promote", "candidates/G000-a"], store)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="lineage").get("Contents", [])]
    assert any(k.startswith("stores/luna/files/md5/") for k in keys)

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(store), str(clone)], tmp_path)
    sh([dvc, "remote", "modify", "--local", "origin", "endpointurl", url], clone)
    out = sh(lineage + ["checkout", "G000"], clone).stdout
    assert "G000" in out
    weights = list((clone / "models" / "generations" / "G000").glob("*.safetensors"))
    assert weights and weights[0].stat().st_size > 0
