"""xpbridge as a systemd service, without systemd: the real xpbridge started
with NOTIFY_SOCKET pointing at a datagram socket of ours (sd_notify(3)'s
protocol) must send READY=1 with a STATUS line once the bus is bound, ping
WATCHDOG=1 within WATCHDOG_USEC, send RELOADING=1 then READY=1 on SIGHUP and
STOPPING=1 on SIGTERM. With JOURNAL_STREAM naming its stderr it writes "<N>"
priority prefixes and no timestamps; SIGUSR1 reopens --log-file after a
rotation. No XMPP server is needed: the config has no accounts."""
import os
import re
import signal
import socket
import tempfile
import time
import unittest

from xpbtest import procs
from xpbtest.bridge import xpbridge_path


def setUpModule():
    path = xpbridge_path()
    if not path or not os.access(path, os.X_OK):
        raise unittest.SkipTest('xpbridge not built (set XPBRIDGE)')


class Service(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='xpb-service-')
        os.chmod(self.dir, 0o700)
        self.conf = os.path.join(self.dir, 'xpbridge.conf')
        with open(self.conf, 'w') as f:
            f.write(f'bus = {{ events = "ipc://{self.dir}/events"; '
                    f'requests = "ipc://{self.dir}/requests"; }};\n'
                    'metrics = { listen = "0"; };\n')
        self.sock_path = os.path.join(self.dir, 'notify')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.settimeout(10)
        self.proc = None
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        if self.proc is not None:
            procs.kill_group(self.proc)
        self.sock.close()
        for name in sorted(os.listdir(self.dir), reverse=True):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def start(self, extra_env=None, args=(), stderr=None):
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path)
        env.update(extra_env or {})
        self.proc = procs.spawn([xpbridge_path(), '--config', self.conf, *args], env=env,
                                stderr=stderr)

    def recv_until(self, key, timeout=10):
        """Datagrams until one has the line KEY=...; returns them all."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            seen.append(msg)
            if any(line.startswith(key + '=') for line in msg.split('\n')):
                return seen
        self.fail(f'no {key}= from xpbridge within {timeout}s; got {seen!r}')

    def test_ready_status_watchdog_reload_stop(self):
        self.start({'WATCHDOG_USEC': '400000'})
        ready = self.recv_until('READY')
        self.assertIn('STATUS=0 of 0 sessions online', ready[-1])
        # Pinged at half the interval: two pings well inside 2 s.
        self.recv_until('WATCHDOG', timeout=2)
        self.recv_until('WATCHDOG', timeout=2)
        self.proc.send_signal(signal.SIGHUP)
        got = self.recv_until('RELOADING')
        self.recv_until('READY')
        self.proc.send_signal(signal.SIGTERM)
        got = self.recv_until('STOPPING')
        self.assertEqual(self.proc.wait(timeout=10), 0)
        self.assertTrue(got)

    def test_no_watchdog_without_watchdog_usec(self):
        self.start()
        self.recv_until('READY')
        self.sock.settimeout(1.5)
        try:
            extra = self.sock.recv(4096).decode()
        except socket.timeout:
            extra = ''
        self.assertNotIn('WATCHDOG=1', extra)

    def test_journal_prefixes(self):
        err_path = os.path.join(self.dir, 'stderr')
        with open(err_path, 'w') as err:
            st = os.fstat(err.fileno())
            self.start({'JOURNAL_STREAM': f'{st.st_dev}:{st.st_ino}'}, stderr=err)
        self.recv_until('READY')
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        with open(err_path) as f:
            lines = f.read().splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r'^<[3467]>[^<]', line)
            self.assertNotRegex(line, r'\d{4}-\d\d-\d\dT', 'the journal stamps lines itself')
        self.assertTrue(any(l.startswith('<6>xpbridge: ready') for l in lines), lines)

    def test_plain_stderr_keeps_timestamps(self):
        err_path = os.path.join(self.dir, 'stderr')
        with open(err_path, 'w') as err:
            # JOURNAL_STREAM of another file: stderr is not the journal.
            st = os.stat(self.conf)
            self.start({'JOURNAL_STREAM': f'{st.st_dev}:{st.st_ino}'}, stderr=err)
        self.recv_until('READY')
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        with open(err_path) as f:
            first = f.readline()
        self.assertRegex(first, r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info ')

    def test_sigusr1_reopens_log_file(self):
        log = os.path.join(self.dir, 'xpbridge.log')
        self.start(args=('--log-file', log))
        self.recv_until('READY')
        os.rename(log, log + '.1')          # what logrotate does
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not os.path.exists(log):
            time.sleep(0.05)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=10), 0)
        with open(log) as f:
            new = f.read()
        with open(log + '.1') as f:
            old = f.read()
        self.assertIn('SIGUSR1: log file reopened', new)
        self.assertIn('xpbridge: stopped', new)
        self.assertIn('xpbridge: ready', old)
        self.assertNotIn('stopped', old)


if __name__ == '__main__':
    unittest.main()
