"""The real daemon and its command line for the end-to-end tests: start
xpbridge for one account (flags only, ipc:// bus in a scratch directory) and
stop it by PID; run xpbctl commands; follow `xpbctl tail --json` on a reader
thread; talk raw NNG REQ over ipc to send bytes xpbctl never would; and a
slixmpp person with a few more abilities (threads, chat states, show/status,
subscriptions, MUC) on top of xpbtest.person.Person."""
import asyncio
import json
import os
import socket
import struct
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

from . import procs
from .person import Person

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
BUILD_DIRS = ('build/release', 'build/e2e', 'build/daemon', 'build/ctl', 'build')


def _find(env_name, rel):
    p = os.environ.get(env_name)
    if p:
        return p
    for d in BUILD_DIRS:
        c = os.path.join(ROOT, d, rel)
        if os.access(c, os.X_OK):
            return c
    return None


def xpbridge_path():
    return _find('XPBRIDGE', 'bridge/xpbridge')


def xpbctl_path():
    return _find('XPBCTL', 'tools/xpbctl')


class BridgeError(AssertionError):
    pass


class LogFollower:
    """Reading an xpbridge's log file as it grows. The class using it sets
    log_path, proc (the process, for a death while waiting), _log_mark (the
    log's size at this start) and log_name (who, in error messages)."""
    log_name = 'xpbridge'

    def log_mark(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_lines(self, since=0):
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(since)
                return f.read().decode('utf-8', 'replace').splitlines()
        except OSError:
            return []

    def wait_log(self, text, timeout, since=None):
        """The first log line (written after `since`, default: this start)
        containing text (or any of a tuple of texts)."""
        since = self._log_mark if since is None else since
        deadline = time.monotonic() + timeout
        texts = (text,) if isinstance(text, str) else tuple(text)
        while True:
            for line in self.log_lines(since):
                if any(t in line for t in texts):
                    return line
            if self.proc.poll() is not None:
                raise BridgeError(f'{self.log_name} exited ({self.proc.returncode}) before '
                                  f'"{text}"; log tail:\n{self.log_tail()}')
            if time.monotonic() > deadline:
                raise BridgeError(f'no "{text}" in the {self.log_name} log within {timeout}s; '
                                  f'log tail:\n{self.log_tail()}')
            time.sleep(0.05)

    def log_tail(self, n=40):
        return '\n'.join(self.log_lines()[-n:])


class Bridge(LogFollower):
    """One xpbridge process serving one account from flags (--jid ...), its
    bus on ipc:// sockets in `workdir`, logs at debug level to a file."""

    def __init__(self, workdir, jid, password, host, port, ca_file, rooms=(),
                 roster=True, extra=()):
        self.path, self.ctl_path = xpbridge_path(), xpbctl_path()
        self.dir, self.jid = workdir, jid
        self.events = f'ipc://{workdir}/events'
        self.requests = f'ipc://{workdir}/requests'
        self.log_path = os.path.join(workdir, 'xpbridge.log')
        pw = os.path.join(workdir, 'bot.pass')
        with open(pw, 'w') as f:
            f.write(password + '\n')
        os.chmod(pw, 0o600)
        self.argv = [self.path, '--jid', jid, '--password-file', pw, '--host', host,
                     '--port', str(port), '--ca-file', ca_file, '--events', self.events,
                     '--requests', self.requests, '--metrics', '0', '--log-level', 'debug']
        for r in rooms:
            self.argv += ['--room', r]
        if roster:
            self.argv.append('--roster')
        self.argv += list(extra)
        if '--state-dir' not in self.argv:  # as before the default state directory
            self.argv += ['--state-dir', 'none']
        self.proc = None
        self.returncode = None

    def start(self, online_timeout=20):
        """Start and wait for the ready line and (unless online_timeout is
        None) for the session to be online; returns the bound full JID."""
        self._log_mark = self.log_mark()
        with open(self.log_path, 'ab') as err:
            self.proc = procs.spawn(self.argv, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err)
        self.wait_log('xpbridge: ready', 10)
        if online_timeout is None:
            return None
        # With a state directory a restart resumes the stream (XEP-0198).
        line = self.wait_log((f'session {self.jid} online as ', f'session {self.jid} resumed as '),
                             online_timeout)
        self.full_jid = line.split(' as ', 1)[1].split()[0]
        return self.full_jid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM (clean shutdown), then the process group; keeps the exit status."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        procs.kill_group(self.proc, term_timeout=3.0)
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    # -- xpbctl ------------------------------------------------------------------
    def ctl(self, *args, check=True, timeout=30, json_out=False):
        """Run `xpbctl CMD ARGS` against this bridge. With json_out, returns
        the parsed JSON of stdout; else the CompletedProcess."""
        cmd, rest = args[0], list(args[1:])
        argv = [self.ctl_path, cmd, '--requests', self.requests]
        if json_out:
            argv.append('--json')
        r = subprocess.run(argv + rest, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise BridgeError(f'xpbctl {cmd} {rest} exited {r.returncode}\nstdout: {r.stdout}'
                              f'\nstderr: {r.stderr}\nbridge log tail:\n{self.log_tail(20)}')
        if json_out:
            return json.loads(r.stdout) if r.stdout.strip() else None
        return r

    def tail(self, *args):
        t = Tail(self.ctl_path, self.events, args)
        return t


class Tail:
    """`xpbctl tail --json ARGS` with its events collected in arrival order."""

    def __init__(self, ctl_path, events_url, args=()):
        self.argv = [ctl_path, 'tail', '--json', '--events', events_url, *args]
        self.events = []   # parsed JSON objects (events, and gap lines)
        self.bad = []      # lines that are not JSON
        self._cond = threading.Condition()
        self.proc = procs.spawn(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0)
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode('utf-8', 'replace').strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                with self._cond:
                    self.bad.append(line)
                continue
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def _read_err(self):
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode('utf-8', 'replace').rstrip())

    def mark(self):
        with self._cond:
            return len(self.events)

    def find(self, pred, since=0):
        with self._cond:
            return [e for e in self.events[since:] if pred(e)]

    def wait(self, pred, n=1, timeout=15, since=0):
        """At least n events (after index since) matching pred; raises on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [e for e in self.events[since:] if pred(e)]
                left = deadline - time.monotonic()
                if len(got) >= n:
                    return got
                if left <= 0 or getattr(self, 'eof', False):
                    raise BridgeError(
                        f'tail: {len(got)} of {n} wanted events within {timeout}s; last events:\n'
                        + '\n'.join(json.dumps(e) for e in self.events[-8:])
                        + f'\nstderr: {self.stderr[-5:]}')
                self._cond.wait(min(left, 0.5))

    def sync(self, poke, pred_for, timeout=15):
        """Repeat poke(i) until the event pred_for(i) shows up: proves the
        subscription is in place (PUB/SUB drops what comes before)."""
        deadline = time.monotonic() + timeout
        i = 0
        while time.monotonic() < deadline:
            poke(i)
            try:
                return self.wait(pred_for(i), timeout=1.0)
            except BridgeError:
                i += 1
        raise BridgeError(f'tail never saw a poke within {timeout}s; stderr: {self.stderr[-5:]}')

    def wait_exit(self, timeout=15):
        """The exit status, once every line it printed has been read (the
        reader thread may still be on the last one when the process is gone);
        None on timeout."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        with self._cond:
            self._cond.wait_for(lambda: getattr(self, 'eof', False), timeout=5)
        return rc

    def stop(self):
        procs.kill_group(self.proc, term_timeout=3.0)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass


# -- event helpers ------------------------------------------------------------------
def stanza(ev):
    return ev.get('stanza') or {}


def body(ev):
    b = stanza(ev).get('body') or []
    return b[0].get('text') if b else None


def is_message(ev, prefix=None, mtype=None):
    s = stanza(ev)
    if s.get('kind') != 'KIND_MESSAGE':
        return False
    if mtype and s.get('type') != mtype:
        return False
    return prefix is None or (body(ev) or '').startswith(prefix)


def is_presence(ev, ptype=None, frm=None):
    s = stanza(ev)
    if s.get('kind') != 'KIND_PRESENCE':
        return False
    if ptype is not None and s.get('type') != ptype:
        return False
    return frm is None or (s.get('from') or '').startswith(frm)


def state(ev):
    return (ev.get('state') or {}).get('state')


# -- raw NNG REQ over ipc (the SP wire protocol) -----------------------------------------
# NNG's ipc transport: after connect each side sends 8 bytes
#   0x00 'S' 'P' 0x00, protocol id (16 bits, big endian), 0x00 0x00
# (REQ v0 is 0x30, REP v0 0x31); every message is then one byte 0x01, a 64-bit
# big-endian length and the payload. A REQ payload starts with a 32-bit request
# id with the high bit set (sp-request-reply RFC), which REP echoes back.
SP_REQ, SP_REP = 0x30, 0x31


def _recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError('peer closed')
        buf += chunk
    return buf


class RawReq:
    def __init__(self, url, timeout=10):
        assert url.startswith('ipc://'), url
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(url[len('ipc://'):])
        self.sock.sendall(b'\x00SP\x00' + struct.pack('>H', SP_REQ) + b'\x00\x00')
        hdr = _recv_exact(self.sock, 8)
        if hdr[:4] != b'\x00SP\x00' or struct.unpack('>H', hdr[4:6])[0] != SP_REP:
            raise ConnectionError(f'not an NNG REP peer: {hdr!r}')
        self._id = 0x80000001

    def request(self, payload):
        """Send payload, return the reply's payload (request id stripped)."""
        rid = self._id
        self._id += 1
        msg = struct.pack('>I', rid) + payload
        self.sock.sendall(b'\x01' + struct.pack('>Q', len(msg)) + msg)
        while True:
            head = _recv_exact(self.sock, 9)
            body_ = _recv_exact(self.sock, struct.unpack('>Q', head[1:])[0])
            if struct.unpack('>I', body_[:4])[0] == rid:
                return body_[4:]

    def close(self):
        self.sock.close()


# -- a little protobuf, enough for Request and Response --------------------------------
def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_varint(field, n):
    return _varint(field << 3) + _varint(n)


def pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def pb_fields(buf):
    """Top-level fields of a protobuf message: {number: [values]} (varints as
    int, length-delimited as bytes)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _read_varint(buf, i)
        elif wt == 2:
            n, i = _read_varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f'wire type {wt}')
        out.setdefault(num, []).append(val)
    return out


def _read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7f) << shift
        if not b & 0x80:
            return n, i
        shift += 7


ERR_BAD_REQUEST, ERR_API_VERSION, ERR_UNKNOWN_ACCOUNT, ERR_INVALID_RECORD = 1, 2, 3, 7
ERR_FORBIDDEN = 14


def response_code(reply):
    """(code, error_text, request_id) of an xpb.v1.Response."""
    f = pb_fields(reply)
    code = f.get(3, [0])[0]
    text = f.get(4, [b''])[0].decode('utf-8', 'replace')
    rid = f.get(2, [b''])[0].decode('utf-8', 'replace')
    return code, text, rid


# -- the person, with a few more abilities ---------------------------------------------
MUC_NS = 'http://jabber.org/protocol/muc'


class RichPerson(Person):
    """Person recording whole stanzas (thread, chat state, show, status, MUC
    status codes) besides the harness's summaries, and doing subscriptions
    and MUC by hand. Subscription requests are not auto-answered."""

    def start(self, timeout=15):
        super().start(timeout)
        self.stanzas = []  # (kind, slixmpp stanza) in arrival order
        done = threading.Event()

        def setup():
            c = self._client
            c.roster.auto_authorize = None   # answer subscriptions ourselves
            c.roster.auto_subscribe = False
            c.add_event_handler('message', lambda m: self._keep('message', m))
            c.add_event_handler('presence', lambda p: self._keep('presence', p))
            done.set()
        self._call(setup)
        done.wait(5)
        return self

    def _keep(self, kind, st):
        with self._cond:
            self.stanzas.append((kind, st))
            self._cond.notify_all()

    def run(self, coro_fn, timeout=15):
        """Run coro_fn(client) on the person's loop; return its result."""
        fut = asyncio.run_coroutine_threadsafe(coro_fn(self._client), self._loop)
        return fut.result(timeout)

    def wait_stanza(self, pred, timeout=15, n=1, since=0):
        """At least n stanzas (after index since) matching pred, or what came by the timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [s for k, s in self.stanzas[since:] if pred(k, s)]
                left = deadline - time.monotonic()
                if len(got) >= n or left <= 0:
                    return got
                self._cond.wait(left)

    def presence(self, to=None, ptype=None, xml=None):
        def go():
            if xml:
                self._client.send_raw(xml)
            else:
                self._client.send_presence(pto=to, ptype=ptype)
        self._call(go)

    def join_room(self, room, nick, persistent=True, timeout=15):
        """Enter room (creating it as an instant room when new); returns the
        occupant nicks present in the join burst."""
        mark = len(self.stanzas)
        self.send_raw(f"<presence to='{room}/{nick}'><x xmlns='{MUC_NS}'>"
                      "<history maxstanzas='0'/></x></presence>")

        def self_pres(k, s):
            return (k == 'presence' and str(s['from']) == f'{room}/{nick}'
                    and s['type'] != 'error')
        # Only this attempt's answer: an earlier attempt's error (a room still
        # locked, XEP-0045 §10.1.2) must not answer a retry.
        got = self.wait_stanza(lambda k, s: self_pres(k, s) or
                               (k == 'presence' and str(s['from']).startswith(room)
                                and s['type'] == 'error'), timeout, since=mark)
        if not got or got[0]['type'] == 'error':
            raise RuntimeError(f'{self.jid_bare} could not join {room}: '
                               f'{got[0] if got else "no answer"}')
        xml = str(got[0])
        if "code='201'" in xml or 'code="201"' in xml:
            self._configure(room, persistent, timeout)
        with self._cond:
            burst = [s for k, s in self.stanzas[mark:] if k == 'presence'
                     and str(s['from']).startswith(room + '/')]
        return {str(s['from']).split('/', 1)[1] for s in burst if s['type'] != 'unavailable'}

    def _configure(self, room, persistent, timeout):
        """XEP-0045 §10.1.3: submit the room configuration (unlocks it)."""
        fields = ("<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig"
                  "</value></field>")
        if persistent:
            fields += "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"

        async def go(c):
            iq = c.make_iq_set(ito=room)
            iq.append(ET.fromstring(f"<query xmlns='{MUC_NS}#owner'><x xmlns='jabber:x:data' "
                           f"type='submit'>{fields}</x></query>"))
            return await iq.send(timeout=timeout)
        self.run(go, timeout + 2)

    def occupants(self, room):
        """Nicks currently present in room, from the presences seen."""
        present = {}
        with self._cond:
            for k, s in self.stanzas:
                if k == 'presence' and str(s['from']).startswith(room + '/'):
                    present[str(s['from']).split('/', 1)[1]] = s['type'] != 'unavailable'
        return {n for n, here in present.items() if here}
