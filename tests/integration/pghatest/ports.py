"""TCP port allocation on 127.0.0.1 that never collides between runs on one machine.

Approach
--------
* Ports come from a fixed range *below* the kernel's ephemeral range (read from
  /proc/sys/net/ipv4/ip_local_port_range; default 32768-60999), by default 15000..32000 clipped to end
  below it. Ports handed out by bind(0) would come from the ephemeral range, where the kernel also picks
  the source ports of every outgoing connection (our own HTTP and libpq clients included); a server
  restarted later on such a port could find it taken by a client socket. Below that range only programs
  that ask for a port explicitly get one.
* A candidate is chosen at random (a per-process random generator), then:
  1. it is *claimed* with an exclusive, non-blocking flock() on /tmp/pghatest-ports/<port>.lock, held
     open for as long as the port is allocated. Two harness processes (two pytest runs, a demo next to
     a test run) can never hold the same port, and the lock disappears by itself when its holder dies
     (even by SIGKILL), so there are no stale reservations. A release unlinks the file while still
     holding the lock; a claimer checks after flock() that the path still names the inode it locked;
     files of dead holders stay behind, unlocked, and are simply reused;
  2. it is verified free by binding 127.0.0.1:<port> (without SO_REUSEADDR, so a port with a listener or
     with connections still in TIME_WAIT is skipped). This catches programs that are not the harness.
* The lock is held until release()/release_all() or process exit, so a member that is stopped and
  restarted during a test gets its own port back.
There is still a window between the bind check and the real server binding in which an unrelated
program could take the port; with random choice in a 17000-port range that is very unlikely, and the
server then fails loudly (its log is shown).
"""

import errno
import fcntl
import os
import random
import socket
import threading

LOCK_DIR = os.environ.get("PGHATEST_PORT_LOCK_DIR", "/tmp/pghatest-ports")
DEFAULT_LOW = 15000
DEFAULT_HIGH = 32000


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def port_is_free(port, host="127.0.0.1"):
    """True if host:port can be bound right now (no listener, no TIME_WAIT leftovers)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class PortAllocator:
    """Hands out free loopback ports, each protected by a lock file held for the allocator's lifetime."""

    def __init__(self, low=None, high=None, lock_dir=LOCK_DIR):
        eph_lo, eph_hi = _ephemeral_range()
        if low is None:
            low = DEFAULT_LOW
        if high is None:
            high = DEFAULT_HIGH
            # Stay out of the ephemeral range when it overlaps ours.
            if eph_lo <= high and eph_hi >= low:
                high = eph_lo - 1 if eph_lo - 1 > low + 1000 else high
        if high <= low:
            raise ValueError(f"empty port range {low}..{high}")
        self.low, self.high = low, high
        self.lock_dir = lock_dir
        self._held = {}  # port -> open lock file object
        self._mutex = threading.Lock()
        self._rng = random.Random(int.from_bytes(os.urandom(8), "little"))

    def _ensure_lock_dir(self):
        os.makedirs(self.lock_dir, exist_ok=True)
        try:
            os.chmod(self.lock_dir, 0o1777)  # usable by every user, like /tmp
        except PermissionError:
            pass

    def _try_claim(self, port):
        path = os.path.join(self.lock_dir, f"{port}.lock")
        try:
            f = open(path, "a+")
        except PermissionError:
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        # The previous holder unlinks the file when it releases the port (while still holding the lock);
        # if that happened between our open() and flock(), we locked an orphaned inode: try again later.
        try:
            same = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            f.close()
            return None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        return f

    def allocate(self, n=1):
        """Return a list of n distinct free ports (all claimed until released)."""
        self._ensure_lock_dir()
        out = []
        with self._mutex:
            tries = 0
            while len(out) < n:
                tries += 1
                if tries > 20000:
                    for p in out:
                        self._release_locked(p)
                    raise RuntimeError(f"no free port found in {self.low}..{self.high}")
                port = self._rng.randint(self.low, self.high)
                if port in self._held or port in out:
                    continue
                f = self._try_claim(port)
                if f is None:
                    continue
                if not port_is_free(port):
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
                    f.close()
                    continue
                self._held[port] = f
                out.append(port)
        return out

    def allocate_one(self):
        return self.allocate(1)[0]

    def _release_locked(self, port):
        f = self._held.pop(port, None)
        if f is not None:
            try:
                os.unlink(os.path.join(self.lock_dir, f"{port}.lock"))  # still locked: see _try_claim
            except OSError:
                pass
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            finally:
                f.close()

    def release(self, *ports):
        with self._mutex:
            for p in ports:
                self._release_locked(p)

    def release_all(self):
        with self._mutex:
            for p in list(self._held):
                self._release_locked(p)

    def held(self):
        return sorted(self._held)


def remove_stale_locks(lock_dir=LOCK_DIR):
    """Remove lock files nobody holds (left by harness processes that died). Returns how many.

    Same protocol as a release: lock, unlink while locked, unlock; a concurrent claimer notices the
    unlinked inode and moves on."""
    removed = 0
    try:
        names = os.listdir(lock_dir)
    except OSError:
        return 0
    for name in names:
        if not name.endswith(".lock"):
            continue
        path = os.path.join(lock_dir, name)
        try:
            f = open(path, "a+")
        except OSError:
            continue
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        try:
            if os.fstat(f.fileno()).st_ino == os.stat(path).st_ino:
                os.unlink(path)
                removed += 1
        except OSError:
            pass
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()
    return removed


_default = None
_default_mutex = threading.Lock()


def default_allocator():
    global _default
    with _default_mutex:
        if _default is None:
            _default = PortAllocator()
        return _default


def allocate_ports(n=1):
    """n free loopback ports from the process-wide allocator."""
    return default_allocator().allocate(n)


def allocate_port():
    return default_allocator().allocate_one()


def release_ports(*ports):
    default_allocator().release(*ports)
