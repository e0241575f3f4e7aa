"""The per-run base directory: /tmp/pghatest-<pid>-<random>/, readable by the postgres user.

Layout (everything of one run lives below it):
    /tmp/pghatest-<pid>-<rand>/            0755 root   (the run)
        etcd-session/                      the shared 3-member cluster (pytest session)
            e0/ e1/ e2/                    data dir + etcd.log per member
        <test name>/                       one per test (tmp_base fixture)
            etcd-XXXX/ ...                 clusters started by the test
            <node>/                        0755 postgres: PgNode/PghaNode dir, also its unix socket dir
                data/                      0700 postgres: PGDATA
                postgres.log / pgha.log / pgha.yml

It is removed when the run succeeds. When it fails it is kept only with PGHATEST_KEEP=1 (a KEEP marker
file is then left in it, so a later run's stale-run cleanup leaves it alone), otherwise removed too.
"""

import os
import re
import secrets
import shutil

from . import proc


def keep_requested():
    return os.environ.get("PGHATEST_KEEP") == "1"


def make_dir(path, owner=None, mode=0o755):
    """mkdir -p path; chmod mode and chown owner (user name) on the directory itself."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner:
        proc.chown_to(path, owner)
    return path


def safe_name(s, maxlen=60):
    """A file-name-safe version of s (test node ids contain '/', '[', ':' ...)."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("._")
    return (s or "x")[:maxlen]


class RunDir:
    """A run's base directory (see module doc). Use .subdir() for parts and .cleanup(failed) at the end."""

    def __init__(self, root="/tmp", prefix="pghatest"):
        self.path = os.path.join(root, f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}")
        make_dir(self.path, mode=0o755)
        proc.registry.add_dir(self.path)

    def __repr__(self):
        return f"<RunDir {self.path}>"

    def subdir(self, *parts, owner=None, mode=0o755):
        return make_dir(os.path.join(self.path, *parts), owner=owner, mode=mode)

    def cleanup(self, failed=False):
        """Remove the directory, except after a failure with PGHATEST_KEEP=1. Returns True if kept."""
        if failed and keep_requested():
            try:
                with open(os.path.join(self.path, "KEEP"), "w") as f:
                    f.write("kept because PGHATEST_KEEP=1 and the run failed\n")
            except OSError:
                pass
            proc.registry.remove_dir(self.path)
            return True
        shutil.rmtree(self.path, ignore_errors=True)
        proc.registry.remove_dir(self.path)
        return False


def remove_tree(path, failed=False):
    """Remove a per-test directory unless failed and PGHATEST_KEEP=1. Returns True if kept."""
    if failed and keep_requested():
        return True
    shutil.rmtree(path, ignore_errors=True)
    return False
