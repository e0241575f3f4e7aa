"""Small generic helpers: waiting, HTTP on loopback, file tails, locating the repository."""

import json
import os
import time

import requests

# Every HTTP request of the harness goes to 127.0.0.1. A session that ignores *_proxy environment variables
# makes sure none of it is ever sent to a proxy elsewhere.
_session = None


def http_session():
    """The shared requests.Session (trust_env=False: never uses proxies from the environment)."""
    global _session
    if _session is None:
        s = requests.Session()
        s.trust_env = False
        _session = s
    return _session


class WaitTimeout(AssertionError):
    """Raised by wait_until(). An AssertionError so that pytest shows it as a test failure."""


def wait_until(predicate, timeout, interval=0.1, msg=None):
    """Call predicate() until it returns a truthy value and return that value.

    Exceptions (subclasses of Exception) raised by the predicate count as "not yet". After `timeout`
    seconds, raises WaitTimeout naming `msg` (or the predicate) together with the last value returned and
    the last exception raised, so a failure says what was being waited for and what was seen instead.
    The predicate is always tried at least once, and once more right at the deadline.
    """
    deadline = time.monotonic() + timeout
    last_value = None
    last_exc = None
    attempts = 0
    while True:
        attempts += 1
        try:
            last_value = predicate()
            if last_value:
                return last_value
            last_exc = None
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_exc = e
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - now)))
    what = msg or getattr(predicate, "__name__", repr(predicate))
    detail = f"last value: {last_value!r}"
    if last_exc is not None:
        detail += f"; last exception: {type(last_exc).__name__}: {last_exc}"
    raise WaitTimeout(f"timed out after {timeout:g}s ({attempts} attempts) waiting for {what}; {detail}")


def http_get(url, timeout=2.0, **kwargs):
    """GET url (no proxies); returns the requests.Response. `timeout` covers connect and read separately."""
    return http_session().get(url, timeout=timeout, **kwargs)


def http_request(method, url, body=None, timeout=2.0, headers=None, **kwargs):
    """Send `method` to url with an optional JSON body; returns the requests.Response (no status check).

    `body` may be a dict/list (sent as JSON), a str or bytes (sent as is) or None.
    """
    h = dict(headers or {})
    data = None
    if body is not None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
    return http_session().request(method, url, data=data, headers=h, timeout=timeout, **kwargs)


def http_json(method, url, body=None, timeout=2.0, expect_status=None, **kwargs):
    """Send a request and parse the JSON answer. Returns (status_code, parsed_json_or_None).

    If expect_status is given (int or collection of ints) and the status differs, raises AssertionError
    with the body text.
    """
    r = http_request(method, url, body=body, timeout=timeout, **kwargs)
    if expect_status is not None:
        ok = (r.status_code == expect_status) if isinstance(expect_status, int) else (r.status_code in expect_status)
        if not ok:
            raise AssertionError(f"{method} {url}: expected HTTP {expect_status}, got {r.status_code}: {r.text[:2000]}")
    try:
        parsed = r.json() if r.content else None
    except ValueError:
        parsed = None
    return r.status_code, parsed


def tail_file(path, lines=200, max_bytes=256 * 1024):
    """Last `lines` lines of a text file (decoded leniently); '' if the file does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return ""
    text = data.decode("utf-8", errors="replace")
    parts = text.splitlines()
    if size > max_bytes and parts:
        parts = parts[1:]  # first line is probably cut
    return "\n".join(parts[-lines:])


def repo_root():
    """The repository root (tests/integration/pghatest/ is three levels below it)."""
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
