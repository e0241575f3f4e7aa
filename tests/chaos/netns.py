"""The chaos suite's private network: one bridge, one network namespace per host, nft partitions.

Everything this module creates is named with the prefix `pghac` (namespaces `pghac-<host>`, the bridge
`pghac-br`, the host ends of the veth pairs `pghac-<host>h`) and uses only the private subnet
10.77.0.0/24: hosts get 10.77.0.1..., the client namespace 10.77.0.100 and the root namespace (the
runner: REST commands, etcd reads, the final reads) 10.77.0.254 on the bridge. No route to anything
else is added, no forwarding is enabled: packets can only travel between these addresses.

Partitions are nft rules inside the host namespaces (table `inet pghac`): a host drops what it sends to
and receives from the hosts on the other side. The client namespace and the runner's bridge address are
never cut: clients keep reaching every node, as in Jepsen (an isolated old primary is still reachable by
clients, the case that must be fenced).

cleanup_stale() removes what a killed earlier run left (only names with the prefix); the lock file
makes sure it never removes what a live run uses.
"""

import fcntl
import os
import signal
import subprocess
import time

PREFIX = "pghac"
SUBNET = "10.77.0"
BRIDGE = f"{PREFIX}-br"
ROOT_ADDR = f"{SUBNET}.254"
CLIENT = "cl"
CLIENT_ADDR = f"{SUBNET}.100"
LOCK_PATH = "/tmp/pghac.lock"
NFT_TABLE = "pghac"


def run(args, check=True, input=None, timeout=30):
    p = subprocess.run([str(a) for a in args], input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(map(str, args))}\n{p.stdout}")
    return p


def ns_name(host):
    return f"{PREFIX}-{host}"


def list_namespaces():
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(PREFIX + "-")]


def list_links():
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@")[0]
            if name.startswith(PREFIX):
                names.append(name)
    return names


def ns_pids(ns):
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def kill_ns_processes(ns, timeout=10.0):
    """SIGKILL every process inside namespace ns (only processes our runs started live there)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = ns_pids(ns)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGCONT)  # a SIGSTOPped process still dies of SIGKILL; harmless
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes in {ns} survive SIGKILL: {pids}")
        time.sleep(0.1)


class RunLock:
    """An exclusive flock on /tmp/pghac.lock: one chaos run per machine (they share names and addresses)."""

    def __init__(self, wait=0):
        self.fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise RuntimeError(f"another chaos run holds {LOCK_PATH} (pid {self._holder()})") from None
                time.sleep(1)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    @staticmethod
    def _holder():
        try:
            with open(LOCK_PATH) as f:
                return f.read().strip()
        except OSError:
            return "?"

    def release(self):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def cleanup_stale(log=print):
    """Remove leftovers of an earlier run (call with the RunLock held): processes in our namespaces, the
    namespaces, our links, and /tmp/pghac-run-* directories."""
    for ns in list_namespaces():
        log(f"cleanup: leftover namespace {ns}")
        kill_ns_processes(ns)
        run(["ip", "netns", "del", ns], check=False)
    for link in list_links():
        log(f"cleanup: leftover link {link}")
        run(["ip", "link", "del", link], check=False)
    import shutil
    for name in os.listdir("/tmp"):
        if name.startswith(f"{PREFIX}-run-"):
            log(f"cleanup: leftover directory /tmp/{name}")
            # a postmaster left in no namespace of ours would not be here: everything ran inside them
            shutil.rmtree(os.path.join("/tmp", name), ignore_errors=True)


class Net:
    """hosts: names of the host namespaces (e.g. n1, n2, n3), addresses 10.77.0.1..n; plus the client."""

    def __init__(self, hosts):
        self.hosts = list(hosts)
        self.addr = {h: f"{SUBNET}.{i + 1}" for i, h in enumerate(self.hosts)}
        self.addr[CLIENT] = CLIENT_ADDR
        self.created = False
        self.cut = set()  # frozenset({a, b}) of cut host pairs

    def ns(self, host):
        return ns_name(host)

    def prefix(self, host):
        """Command prefix that runs a command inside host's namespace (ip netns exec execs: same PID)."""
        return ["ip", "netns", "exec", self.ns(host)]

    def setup(self):
        self.created = True
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{ROOT_ADDR}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        for h in self.hosts + [CLIENT]:
            ns = self.ns(h)
            veth = f"{PREFIX}-{h}h"
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "link", "set", veth, "master", BRIDGE])
            run(["ip", "link", "set", veth, "up"])
            run(["ip", "-n", ns, "addr", "add", f"{self.addr[h]}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def destroy(self):
        """Kill every process in our namespaces, delete them, the veths and the bridge. Idempotent."""
        errors = []
        for h in self.hosts + [CLIENT]:
            ns = self.ns(h)
            if ns in list_namespaces():
                try:
                    kill_ns_processes(ns)
                except Exception as e:  # noqa: BLE001 - go on with the rest
                    errors.append(str(e))
                run(["ip", "netns", "del", ns], check=False)
        for link in list_links():
            run(["ip", "link", "del", link], check=False)
        self.created = False
        if errors:
            raise RuntimeError("; ".join(errors))

    # ------------------------------------------------------------------ partitions
    def _apply(self, host):
        """(Re)write host's nft table from self.cut."""
        peers = sorted(self.addr[o] for pair in self.cut if host in pair for o in pair if o != host)
        run(["ip", "netns", "exec", self.ns(host), "nft", "delete", "table", "inet", NFT_TABLE], check=False)
        if not peers:
            return
        addrs = ", ".join(peers)
        rules = (f"table inet {NFT_TABLE} {{\n"
                 f"  chain input {{\n    type filter hook input priority 0; policy accept;\n"
                 f"    ip saddr {{ {addrs} }} drop\n  }}\n"
                 f"  chain output {{\n    type filter hook output priority 0; policy accept;\n"
                 f"    ip daddr {{ {addrs} }} drop\n  }}\n}}\n")
        run(["ip", "netns", "exec", self.ns(host), "nft", "-f", "-"], input=rules)

    def cut_links(self, pairs, first=None):
        """Cut every host pair in pairs (both directions, at both ends). The rules of host `first` are
        written first: its cut is complete when this returns from that host (the others follow)."""
        touched = []
        for a, b in pairs:
            if a != b:
                self.cut.add(frozenset((a, b)))
                touched += [x for x in (a, b) if x not in touched]
        if first in touched:
            touched.remove(first)
            touched.insert(0, first)
        cut_at = None
        for h in touched:
            self._apply(h)
            if cut_at is None:
                cut_at = time.monotonic()
        return cut_at

    def partition(self, groups, first=None):
        """Cut every link between hosts of different groups (hosts in no group keep all links). Returns
        the time at which the first host (`first`, or any) was cut off completely."""
        pairs = []
        for i, g in enumerate(groups):
            for other in groups[i + 1:]:
                pairs += [(a, b) for a in g for b in other]
        return self.cut_links(pairs, first)

    def heal(self):
        touched = {h for pair in self.cut for h in pair}
        self.cut.clear()
        for h in touched:
            self._apply(h)
        # also clear tables left by a failed earlier apply
        for h in self.hosts:
            run(["ip", "netns", "exec", self.ns(h), "nft", "delete", "table", "inet", NFT_TABLE], check=False)
