"""NATS JetStream for the cluster tests: `NatsCluster` starts n nats-server
processes (Debian's nats-server 2.9) on 127.0.0.1 and free ports, each with
its own store directory, clustered with explicit routes; `ClusterBridge` is
one xpbridge on bus.backend = "nats" with a config file that lists every
account (the bridges share them by leases). Processes are stopped by PID
(process group), pass or fail."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

from . import procs
from .bridge import LogFollower, xpbctl_path, xpbridge_path


def nats_server_path():
    return shutil.which('nats-server') or ('/usr/bin/nats-server'
                                           if os.access('/usr/bin/nats-server', os.X_OK) else None)


class NatsCluster:
    def __init__(self, workdir, n=3):
        self.dir, self.n = workdir, n
        ports = procs.free_ports(3 * n)
        self.client = ports[:n]
        self.route = ports[n:2 * n]
        self.http = ports[2 * n:]
        self.procs = [None] * n
        self.paused = set()

    @property
    def urls(self):
        return [f'nats://127.0.0.1:{p}' for p in self.client]

    def _argv(self, i):
        store = os.path.join(self.dir, f'n{i}')
        os.makedirs(store, exist_ok=True)
        argv = [nats_server_path(), '-js', '-a', '127.0.0.1', '-p', str(self.client[i]),
                '-m', str(self.http[i]), '-sd', store, '--server_name', f'n{i}']
        if self.n > 1:
            routes = ','.join(f'nats://127.0.0.1:{p}' for j, p in enumerate(self.route) if j != i)
            argv += ['--cluster_name', 'xpb', '--cluster', f'nats://127.0.0.1:{self.route[i]}',
                     '--routes', routes]
        return argv

    def start_node(self, i):
        log = open(os.path.join(self.dir, f'n{i}.log'), 'ab')
        self.procs[i] = procs.spawn(self._argv(i), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log)
        log.close()

    def start(self, timeout=30):
        for i in range(self.n):
            self.start_node(i)
        self.wait_ready(timeout)
        return self

    def healthy(self, i):
        try:
            with urllib.request.urlopen(f'http://127.0.0.1:{self.http[i]}/healthz',
                                        timeout=2) as r:
                return json.loads(r.read()).get('status') == 'ok'
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout=30, nodes=None):
        """Every (running) node answers /healthz ok: JetStream is up and, in a
        cluster, a meta leader is known."""
        deadline = time.monotonic() + timeout
        nodes = [i for i in range(self.n) if self.procs[i]] if nodes is None else nodes
        while time.monotonic() < deadline:
            if all(self.healthy(i) for i in nodes):
                return
            time.sleep(0.2)
        raise AssertionError(f'nats cluster not ready within {timeout}s:\n{self.log_tail(0)}')

    def kill(self, i, sig=signal.SIGKILL):
        p = self.procs[i]
        if p is not None:
            os.kill(p.pid, sig)
            p.wait(10)
            procs.kill_group(p, term_timeout=1)
            self.procs[i] = None

    def pause(self, i):
        os.kill(self.procs[i].pid, signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i):
        os.kill(self.procs[i].pid, signal.SIGCONT)
        self.paused.discard(i)

    def stop(self):
        for i in list(self.paused):
            self.resume(i)
        for i, p in enumerate(self.procs):
            if p is not None:
                procs.kill_group(p, term_timeout=5)
                self.procs[i] = None

    def log_tail(self, i, n=30):
        try:
            with open(os.path.join(self.dir, f'n{i}.log'), 'rb') as f:
                return '\n'.join(f.read().decode('utf-8', 'replace').splitlines()[-n:])
        except OSError:
            return ''


def _q(s):
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


class ClusterBridge(LogFollower):
    """xpbridge with bus.backend = "nats": every account of `accounts`
    ([(jid, password)]) listed in its config file; leases decide which run."""

    def __init__(self, workdir, bridge_id, nats_urls, accounts, xmpp_port, ca_file,
                 ttl_s=10, max_sessions=0, extra_nats='', stream_management=True):
        self.path, self.ctl_path = xpbridge_path(), xpbctl_path()
        self.dir, self.id = workdir, bridge_id
        self.log_name = bridge_id
        self.log_path = os.path.join(workdir, 'xpbridge.log')
        self.conf = os.path.join(workdir, 'xpbridge.conf')
        os.makedirs(workdir, exist_ok=True)
        acc = []
        for jid, pw in accounts:
            pf = os.path.join(workdir, jid.split('@')[0] + '.pass')
            with open(pf, 'w') as f:
                f.write(pw + '\n')
            os.chmod(pf, 0o600)
            acc.append(f'{{ jid = {_q(jid)}; password_file = {_q(pf)}; host = "127.0.0.1"; '
                       f'port = {xmpp_port}; ca_file = {_q(ca_file)}; '
                       f'stream_management = {"true" if stream_management else "false"}; }}')
        servers = ', '.join(_q(u) for u in nats_urls)
        with open(self.conf, 'w') as f:
            f.write(f'bus = {{ backend = "nats"; batch_flush_us = 0; }};\n'
                    f'metrics = {{ listen = "0"; }};\n'
                    f'log = {{ level = "debug"; }};\n'
                    f'nats = {{ servers = [ {servers} ]; bridge_id = {_q(bridge_id)}; '
                    f'lease_ttl_s = {ttl_s}; max_sessions = {max_sessions}; {extra_nats} }};\n'
                    f'accounts = ( {", ".join(acc)} );\n')
        self.proc = None

    def start(self, ready_timeout=20):
        self._log_mark = self.log_mark()
        with open(self.log_path, 'ab') as err:
            self.proc = procs.spawn([self.path, '--config', self.conf], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err)
        self.wait_log('xpbridge: ready', ready_timeout)
        return self

    def online(self):
        """Accounts this bridge has online now, from its log: 'online as'
        minus 'removed' / 'closing' since this start."""
        up = set()
        for line in self.log_lines(self._log_mark):
            if ' online as ' in line or ' resumed as ' in line:
                up.add(line.split('session ', 1)[1].split()[0])
            elif ': removed' in line and 'session ' in line:
                up.discard(line.split('session ', 1)[1].split(':')[0])
        return up

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None:
            os.kill(self.proc.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(15)
                procs.kill_group(self.proc, term_timeout=1)
                self.proc = None

    def stop(self, timeout=15):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        procs.kill_group(self.proc, term_timeout=3.0)
        rc, self.proc = self.proc.returncode, None
        return rc


_PROXY = r"""
import socket, sys, threading
lport, tport = int(sys.argv[1]), int(sys.argv[2])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', lport)); ls.listen(64)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = ls.accept()
    try:
        u = socket.create_connection(('127.0.0.1', tport))
    except OSError:
        c.close()
        continue
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"""


class TcpProxy:
    """A TCP forwarder 127.0.0.1:port -> 127.0.0.1:target in its own
    process: SIGSTOP it to cut whoever connects through it off (a network
    partition that leaves the NATS cluster itself whole)."""

    def __init__(self, target_port):
        self.port = procs.free_ports(1)[0]
        self.proc = procs.spawn(['/usr/bin/python3', '-c', _PROXY, str(self.port),
                                 str(target_port)], stdin=subprocess.DEVNULL)
        procs.wait_port(self.port, 10)
        self.paused = False

    @property
    def url(self):
        return f'nats://127.0.0.1:{self.port}'

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self):
        if self.paused:
            self.resume()
        procs.kill_group(self.proc, term_timeout=2)
