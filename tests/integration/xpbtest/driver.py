"""Wrapper for tests/integration/xpb_session_driver: writes commands to its
stdin, reads its JSON-line events from stdout on a reader thread, and kills
it (process group) in teardown. Protocol: see the driver contract in issue 4."""
import json
import os
import subprocess
import threading
import time

from . import procs


def driver_path(explicit=None):
    p = explicit or os.environ.get('XPB_DRIVER')
    if not p:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.abspath(os.path.join(here, '..', '..', '..'))
        for cand in ('build/release', 'build/harness', 'build'):
            c = os.path.join(root, cand, 'tests', 'integration', 'xpb_session_driver')
            for f in (c, os.path.join(root, cand, 'tests', 'xpb_session_driver')):
                if os.access(f, os.X_OK):
                    return f
    return p


class DriverError(AssertionError):
    pass


class Driver:
    def __init__(self, workdir, ca_file=None, path=None, log_level='debug'):
        self.path = driver_path(path)
        if not self.path or not os.access(self.path, os.X_OK):
            raise FileNotFoundError(f'xpb_session_driver not found (XPB_DRIVER={self.path})')
        self.workdir = workdir
        self.events = []          # every event, in order
        self._cond = threading.Condition()
        self._cursor = 0
        argv = [self.path, '--log-level', log_level]
        if ca_file:
            argv += ['--ca-file', ca_file]
        self.stderr_path = os.path.join(workdir, f'driver-{id(self)}.stderr')
        with open(self.stderr_path, 'wb') as err:
            self.proc = procs.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err, bufsize=0)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.decode('utf-8', 'replace').strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {'event': 'unparsed', 'line': line}
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self.events.append({'event': 'exit'})
            self._cond.notify_all()

    # -- commands ------------------------------------------------------------
    def cmd(self, line):
        if self.proc.poll() is not None:
            raise DriverError(f'driver exited ({self.proc.returncode}); stderr:\n{self.stderr_tail()}')
        self.proc.stdin.write((line + '\n').encode())
        self.proc.stdin.flush()

    def password_file(self, name, password):
        path = os.path.join(self.workdir, f'pw-{name}')
        with open(path, 'w') as f:
            f.write(password + '\n')
        os.chmod(path, 0o600)
        return path

    def open(self, name, jid, password, **opts):
        pw = self.password_file(name, password)
        kv = ' '.join(f'{k}={v}' for k, v in opts.items())
        self.cmd(f'open {name} {jid} {pw} {kv}'.rstrip())

    def send(self, name, to, body, mtype='chat', mid='-'):
        self.cmd(f'send {name} {to} {mtype} {mid} {body}')

    def sendxml(self, name, xml):
        self.cmd(f'sendxml {name} {xml}')

    def close(self, name):
        self.cmd(f'close {name}')

    def cut(self, name):
        self.cmd(f'cut {name}')

    def freeze(self, name):
        self.cmd(f'freeze {name}')

    def stats(self, name, timeout=5):
        mark = len(self.events)
        self.cmd(f'stats {name}')
        return self.wait_for('stats', session=name, timeout=timeout, since=mark)

    # -- events ----------------------------------------------------------------
    def find(self, event=None, since=0, **match):
        with self._cond:
            return [e for e in self.events[since:] if _matches(e, event, match)]

    def wait_for(self, event=None, timeout=10, since=None, pred=None, **match):
        """The first event at or after `since` (default: the cursor, i.e.
        after the last event returned by wait_for) matching event/fields and
        pred; moves the cursor past it. Raises DriverError on timeout."""
        start = self._cursor if since is None else since
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.events):
                    e = self.events[i]
                    i += 1
                    if _matches(e, event, match) and (pred is None or pred(e)):
                        self._cursor = max(self._cursor, i)
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or (self.events and self.events[-1].get('event') == 'exit'):
                    break
                self._cond.wait(left)
        raise DriverError(f'no event {event} {match} within {timeout}s; recent events:\n'
                          + '\n'.join(json.dumps(e) for e in self.events[-15:])
                          + f'\nstderr tail:\n{self.stderr_tail()}')

    def wait_count(self, n, event, timeout=10, since=0, **match):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [e for e in self.events[since:] if _matches(e, event, match)]
                left = deadline - time.monotonic()
                if len(got) >= n or left <= 0:
                    return got
                self._cond.wait(left)

    def index_of(self, event=None, since=0, pred=None, **match):
        """Index of the first event at or after `since` matching, or None."""
        with self._cond:
            for i in range(since, len(self.events)):
                e = self.events[i]
                if _matches(e, event, match) and (pred is None or pred(e)):
                    return i
        return None

    def mark(self):
        with self._cond:
            return len(self.events)

    def stderr_tail(self, n=30):
        try:
            with open(self.stderr_path, errors='replace') as f:
                return ''.join(f.readlines()[-n:])
        except OSError:
            return ''

    # -- teardown --------------------------------------------------------------
    def quit(self, timeout=10):
        """Ask for a clean exit; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            try:
                self.cmd('quit')
                self.proc.stdin.close()
            except (OSError, DriverError):
                pass
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.proc.returncode

    def kill(self):
        procs.kill_group(self.proc, term_timeout=3.0)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def _matches(e, event, match):
    if event is not None and e.get('event') != event:
        return False
    return all(e.get(k) == v for k, v in match.items())
