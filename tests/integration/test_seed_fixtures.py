"""The first users' patroni.yml files (tests/fixtures/seed) run unchanged but for addresses, ports,
directories, bin_dir, locale and memory sizes: they bootstrap and run a working 2-node cluster."""

import copy
import os

import pytest
import yaml

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

SEED_DIR = os.path.join(h.util.repo_root(), "tests", "fixtures", "seed")


def rewrite(seed, name, etcd, pg_port, rest_port, basedir):
    """Only what must differ on a test machine: addresses, ports, directories, bin_dir, locale, memory."""
    cfg = copy.deepcopy(seed)
    node_dir = os.path.join(basedir, name)
    cfg["restapi"]["listen"] = cfg["restapi"]["connect_address"] = f"127.0.0.1:{rest_port}"
    cfg["etcd3"]["hosts"] = ",".join(etcd.endpoints)
    pg = cfg["postgresql"]
    pg["listen"] = f"127.0.0.1:{pg_port}"
    pg["connect_address"] = f"127.0.0.1:{pg_port}"
    pg["data_dir"] = os.path.join(node_dir, "data")
    pg["config_dir"] = os.path.join(node_dir, "conf")
    pg["bin_dir"] = h.find_pg_bindir()
    pg["pgpass"] = os.path.join(node_dir, "pgpass")
    pg["parameters"]["unix_socket_directories"] = node_dir
    boot = cfg["bootstrap"]
    boot["initdb"] = [{"locale": "C.UTF-8"} if isinstance(o, dict) and "locale" in o else o for o in boot["initdb"]]
    boot["pg_hba"] = [l.replace("192.168.0.0/16", "127.0.0.1/32").replace("10.0.2.0/24", "127.0.0.1/32")
                      .replace("0.0.0.0/0", "127.0.0.1/32") for l in boot["pg_hba"]]
    params = boot["dcs"]["postgresql"]["parameters"]
    params["shared_buffers"] = "128MB"
    params["maintenance_work_mem"] = "64MB"
    params["effective_cache_size"] = "1GB"
    params["work_mem"] = "4MB"
    params["log_directory"] = os.path.join(node_dir, "pg_log")
    return cfg


@pytest.fixture
def seed_cluster(request, tmp_base):
    seeds = {}
    for n in (1, 2):
        with open(os.path.join(SEED_DIR, f"ptrn-{n}.yml")) as f:
            seeds[f"ptrn-{n}"] = yaml.safe_load(f)
    c = HaCluster(tmp_base, n=0, scope=seeds["ptrn-1"]["scope"])
    ports = h.allocate_ports(4)
    for i, (name, seed) in enumerate(seeds.items()):
        cfg = rewrite(seed, name, c.etcd, ports[2 * i], ports[2 * i + 1], tmp_base)
        c.nodes[name] = h.PghaNode(cfg, tmp_base)
        os.makedirs(os.path.join(tmp_base, name, "pg_log"), exist_ok=True)
        h.make_dir(os.path.join(tmp_base, name, "pg_log"), owner="postgres", mode=0o700)
    yield c, seeds
    c.destroy()


def test_seed_configs_bootstrap_a_two_node_cluster(seed_cluster):
    c, seeds = seed_cluster
    # the namespace "/service/" and scope "postgres-cluster" of the files are used as they are
    assert c.key("leader") == "/service/postgres-cluster/leader"
    c.start(["ptrn-1"])
    assert c.wait_leader(120) == "ptrn-1"
    c.start(["ptrn-2"])
    c.wait_streaming("ptrn-1", ["ptrn-2"], 180)
    # the dynamic configuration is the seed's bootstrap.dcs, with loop_wait adjusted by the timing rule
    cfg = c.wait_value("config", lambda v: v and v.get("ttl") == 60, 30, msg="/config from the seed's bootstrap.dcs")
    assert cfg["ttl"] == 60 and cfg["retry_timeout"] == 27 and cfg["loop_wait"] == 6
    assert cfg["master_start_timeout"] == 300 and cfg["synchronous_mode"] is True
    # PostgreSQL 15 runs with wal_keep_size instead of the seed's wal_keep_segments: 130 x 16MB
    assert c.sql("ptrn-1", "SHOW wal_keep_size")[0][0] == "2080MB"
    assert c.sql("ptrn-1", "SHOW shared_preload_libraries")[0][0] == "pg_stat_statements,auto_explain"
    assert c.sql("ptrn-1", "SHOW hot_standby_feedback")[0][0] == "on"
    assert c.sql("ptrn-1", "SHOW max_connections")[0][0] == "800"
    # replication works end to end with the seeds' users and passwords (unquoted numbers)
    c.sql("ptrn-1", "CREATE TABLE seed_check (id int)")
    c.sql("ptrn-1", "INSERT INTO seed_check VALUES (42)")
    h.wait_until(lambda: c.sql("ptrn-2", "SELECT count(*) FROM seed_check")[0][0] == 1, 30)
    c.wait_value("members/ptrn-2", lambda m: m and m.get("role") == "replica" and m.get("state") == "running", 30,
                 msg="members/ptrn-2 to be a running replica")
    # synchronous_mode: true in the seed: ptrn-2 becomes the synchronous standby, in /sync and in
    # synchronous_standby_names (quoted: the name has a dash)
    sync = c.wait_value("sync", lambda v: v and v.get("sync_standby") == "ptrn-2", 90, msg="/sync to name ptrn-2")
    assert c.sql("ptrn-1", "SHOW synchronous_standby_names")[0][0] == '"ptrn-2"'
    assert c.sql("ptrn-1", "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'ptrn-2'")[0][0] \
        == "sync"
    assert sync["leader"] == "ptrn-1"
