"""Child process bookkeeping: every process the harness starts is registered
here and stopped by process group when the test ends, at interpreter exit or
on SIGTERM/SIGINT, so no server outlives a test run."""
import atexit
import shutil
import tempfile
import os
import signal
import socket
import subprocess
import threading
import time

_live = {}
_lock = threading.Lock()


# A watchdog per child: it blocks reading a pipe whose write end only this
# process holds; when we die in any way (even SIGKILL from a ctest timeout)
# the read returns EOF and the watchdog kills the child's process group.
_WATCHDOG = r"""
import os, signal, sys, time
pgid = int(sys.argv[1])
sys.stdin.buffer.read()
for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        break
    time.sleep(3)
"""
_watchdogs = {}


def _own_state_home(argv, kw):
    """xpbridge keeps its state in $XDG_STATE_HOME/xpbridge unless told
    otherwise (--state-dir), and one state directory serves one bridge: each
    xpbridge a test starts gets its own XDG_STATE_HOME, never the user's."""
    if not any('xpbridge' in os.path.basename(str(a)) for a in argv[:4]):
        return
    env = dict(kw.get('env') or os.environ)
    if 'XDG_STATE_HOME' in (kw.get('env') or {}):
        return
    d = tempfile.mkdtemp(prefix='xpb-state-home-')
    atexit.register(shutil.rmtree, d, True)
    env['XDG_STATE_HOME'] = d
    kw['env'] = env


def spawn(argv, **kw):
    """Popen in a new session (own process group), remember it, and arm a
    watchdog that stops the group should this test process die."""
    _own_state_home(argv, kw)
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    with _lock:
        _live[p.pid] = p
    try:
        w = subprocess.Popen(['/usr/bin/python3', '-c', _WATCHDOG, str(p.pid)],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        with _lock:
            _watchdogs[p.pid] = w
    except OSError:
        pass
    return p


def _disarm(pid):
    with _lock:
        w = _watchdogs.pop(pid, None)
    if w is not None:
        w.kill()  # the group is gone; the watchdog has nothing left to do
        w.wait()
        w.stdin.close()


def kill_group(p, term_timeout=8.0):
    """SIGTERM the child's process group, wait until every member is gone
    (not only the leader: ejabberdctl's Erlang VM outlives its shell), then
    SIGKILL whatever is left."""
    if p is None:
        return
    pgid = p.pid  # start_new_session: pgid == pid
    for sig, wait in ((signal.SIGTERM, term_timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            p.poll()
            if not group_members(pgid):
                break
            time.sleep(0.05)
        else:
            continue
        break
    try:
        p.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    with _lock:
        _live.pop(p.pid, None)
    _disarm(p.pid)


def group_members(pgid):
    """PIDs of live (non-zombie) processes in process group pgid."""
    out = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/stat') as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(')') + 2:].split()
        if fields[0] != 'Z' and int(fields[2]) == pgid:
            out.append(int(name))
    return out


def group_alive(p):
    return bool(group_members(p.pid))


def kill_all():
    with _lock:
        procs = list(_live.values())
    for p in procs:
        kill_group(p, term_timeout=3.0)


atexit.register(kill_all)


def _on_signal(signum, _frame):
    kill_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


for _s in (signal.SIGTERM, signal.SIGHUP):
    try:
        signal.signal(_s, _on_signal)
    except ValueError:  # not in the main thread
        pass


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1, chosen by the kernel."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def listening_ports():
    """Set of TCP ports in LISTEN state on this host (IPv4 and IPv6)."""
    ports = set()
    for f in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if parts[3] == '0A':
                        ports.add(int(parts[1].rsplit(':', 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def wait_port(port, timeout, proc=None):
    """Wait until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f'process exited with {proc.returncode} before port {port} opened')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f'nothing listens on 127.0.0.1:{port} after {timeout}s')
