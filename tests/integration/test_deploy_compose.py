"""docker-compose.test.yml: the seed topology as containers (3 etcd, 3 PostgreSQL + pgha, HAProxy, Prometheus).

test_compose_config always runs: `docker-compose config` (Debian's docker-compose 1.29; no Docker engine needed)
accepts the file, and the file uses conf/ as it is, on an internal network with the seed's addresses, publishing
nothing on the host. test_compose_end_to_end runs scripts/docker-e2e.sh (debootstrap base image, image build, the
cluster up, checks through HAProxy and Prometheus, a failover, everything removed, its own dockerd stopped) only
with PGHA_TEST_DOCKER=1: it takes minutes and downloads Debian packages, so scripts/test.sh leaves it out."""

import os
import shutil
import subprocess

import pytest
import yaml

import pghatest as h

ROOT = h.util.repo_root()
COMPOSE = os.path.join(ROOT, "docker-compose.test.yml")


def test_compose_config():
    dc = shutil.which("docker-compose")
    assert dc, "docker-compose is not installed (scripts/install-deps.sh installs it)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    p = subprocess.run([dc, "-f", COMPOSE, "config", "-q"], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and not p.stderr.strip(), p.stdout + p.stderr
    p = subprocess.run([dc, "-f", COMPOSE, "config"], capture_output=True, text=True, timeout=60, env=env, check=True)
    cfg = yaml.safe_load(p.stdout)
    services = cfg["services"]
    assert set(services) == {"ptrn-1", "ptrn-2", "ptrn-3", "etcd-1", "etcd-2", "etcd-3", "haproxy", "prometheus"}
    net = cfg["networks"]["seed"]
    assert net["internal"] is True and net["ipam"]["config"] == [{"subnet": "192.168.2.0/24"}]
    for name, svc in services.items():
        assert "ports" not in svc, f"{name} publishes ports on the host"
        assert svc["image"] == "pgha-test/node:bookworm"
    # a seed host = the network namespace of its etcd container, with the seed's address
    hosts = {"etcd-1": "192.168.2.96", "etcd-2": "192.168.2.91", "etcd-3": "192.168.2.98", "prometheus": "192.168.2.99"}
    for name, addr in hosts.items():
        assert services[name]["networks"]["seed"]["ipv4_address"] == addr, name
    for name in ("ptrn-1", "ptrn-2", "ptrn-3", "haproxy"):
        assert services[name]["network_mode"] == f"service:etcd-{name[-1] if name != 'haproxy' else 1}", name
    # conf/ as it is: the node files, the etcd environment files, haproxy.cfg, the Prometheus directory
    for i in (1, 2, 3):
        assert f"{ROOT}/conf/pgha/ptrn-{i}.yml:/etc/pgha/10-node.yml:ro" in services[f"ptrn-{i}"]["volumes"]
        assert services[f"ptrn-{i}"]["restart"] == "on-failure"
        with open(os.path.join(ROOT, "conf", "etcd", f"ptrn-{i}.env")) as f:
            want = dict(l.strip().split("=", 1) for l in f if l.strip() and not l.startswith("#"))
        assert services[f"etcd-{i}"]["environment"] == want
    assert f"{ROOT}/conf/haproxy/haproxy.cfg:/etc/haproxy/haproxy.cfg:ro" in services["haproxy"]["volumes"]
    assert f"{ROOT}/conf/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert services["etcd-1"]["build"]["dockerfile"] == "docker/Dockerfile"
    with open(os.path.join(ROOT, "docker", "Dockerfile")) as f:
        assert "FROM ${BASE}" in f.read()  # the locally made base image, never a registry's


@pytest.mark.needs_root
@pytest.mark.skipif(os.environ.get("PGHA_TEST_DOCKER") != "1",
                    reason="the container end-to-end test runs only with PGHA_TEST_DOCKER=1 (minutes; starts its own "
                           "dockerd and stops it)")
def test_compose_end_to_end():
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "docker-e2e.sh")], capture_output=True, text=True,
                       timeout=2700)
    print(p.stderr[-4000:])
    assert p.returncode == 0, p.stdout + p.stderr[-8000:]
    assert p.stdout.strip().endswith("passed, 0 failed")
