"""Issue 5, the daemon's operations: the real xpbridge started from a config
FILE, the real xpbctl, slixmpp persons and Prosody on 127.0.0.1. Config
errors and --check-config; SIGHUP reload (add, keep, remove, broken file);
SIGTERM with an iq in flight; /metrics and /healthz; the per-account send
queue bound (limits.queue_max) while the server is down. Each class has its
own server; every process is stopped by PID in cleanup, pass or fail."""
import os
import re
import signal
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from xpbtest import env, procs
from xpbtest.bridge import Bridge, RichPerson, xpbctl_path, xpbridge_path
from xpbtest.certs import DOMAIN
from xpbtest.servers import Prosody

BOT = f'bot@{DOMAIN}'
BOT2 = f'bot2@{DOMAIN}'
ALICE = f'alice@{DOMAIN}'
PASSWORDS = {BOT: 'bot-pw', BOT2: 'bot2-pw', ALICE: 'alice-pw'}
BLACKHOLE = 'urn:xpb:test:blackhole'   # an iq namespace the silent person never answers


def setUpModule():
    for name, path in (('XPBRIDGE', xpbridge_path()), ('XPBCTL', xpbctl_path())):
        if not path or not os.access(path, os.X_OK):
            if os.environ.get(name):
                raise FileNotFoundError(f'{name}={path} is not executable')
            raise unittest.SkipTest(f'{name.lower()} not built (set {name})')


# -- the daemon from a config file -----------------------------------------------------
def _q(s):
    """A libconfig string literal."""
    return '"' + str(s).replace('\\', '\\\\').replace('"', '\\"') + '"'


class ConfBridge(Bridge):
    """xpbridge --config FILE; the file is rewritten by the test (atomically:
    a SIGHUP never reads half a file). Logs at debug level to a file."""

    def __init__(self, workdir, server, accounts, metrics='0', queue_max=None, metrics_extra='',
                 bus_extra='', nofile=None):
        self.path, self.ctl_path = xpbridge_path(), xpbctl_path()
        self.dir, self.server = workdir, server
        self.jid = accounts[0] if accounts else None
        self.events = f'ipc://{workdir}/events'
        self.requests = f'ipc://{workdir}/requests'
        self.log_path = os.path.join(workdir, 'xpbridge.log')
        self.conf_path = os.path.join(workdir, 'xpbridge.conf')
        self.metrics, self.queue_max = metrics, queue_max
        self.metrics_extra = metrics_extra
        self.bus_extra = bus_extra
        self.proc, self.returncode = None, None
        self._log_mark = 0
        self.write_config(accounts)
        self.argv = [self.path, '--config', self.conf_path]
        if nofile:   # RLIMIT_NOFILE for xpbridge alone (prlimit execs it: same PID)
            self.argv = ['/usr/bin/prlimit', f'--nofile={nofile}:{nofile}', '--', *self.argv]

    def _password_file(self, jid):
        p = os.path.join(self.dir, jid.split('@')[0] + '.pass')
        with open(p, 'w') as f:
            f.write(PASSWORDS[jid] + '\n')
        os.chmod(p, 0o600)
        return p

    def config_text(self, accounts, extra=None):
        """The file for these accounts; extra: {jid: more settings text}."""
        lines = ['log = { level = "debug"; };',
                 f'bus = {{ events = {_q(self.events)}; requests = {_q(self.requests)}; '
                 f'{self.bus_extra} }};',
                 f'metrics = {{ listen = {_q(self.metrics)}; {self.metrics_extra} }};']
        if self.queue_max is not None:
            lines.append(f'limits = {{ queue_max = {self.queue_max}; }};')
        lines.append('accounts = (')
        extra = extra or {}
        for i, jid in enumerate(accounts):
            lines += ['  {', f'    jid = {_q(jid)};',
                      f'    password_file = {_q(self._password_file(jid))};',
                      '    host = "127.0.0.1";',
                      f'    port = {self.server.ports["c2s"]};',
                      f'    ca_file = {_q(env.pki().ca)};',
                      *([f'    {extra[jid]}'] if jid in extra else []),
                      '  }' + (',' if i + 1 < len(accounts) else '')]
        lines.append(');')
        return '\n'.join(lines) + '\n'

    def write_config(self, accounts=None, text=None, extra=None):
        text = self.config_text(accounts, extra) if text is None else text
        tmp = self.conf_path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, self.conf_path)
        return text

    def signal(self, sig):
        self.proc.send_signal(sig)

    def sessions(self):
        """{account: SessionInfo as JSON} from `xpbctl sessions --json`."""
        got = self.ctl('sessions', json_out=True) or {}
        return {s['account']: s for s in got.get('session', [])}

    def lines_since(self, mark, text):
        return [l for l in self.log_lines(mark) if text in l]


def _online_as(line):
    return line.split(' online as ', 1)[1].split()[0]


def _wait(pred, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout}s waiting for {what}')
        time.sleep(interval)


class SilentPerson(RichPerson):
    """A person who receives iqs in BLACKHOLE and never answers them (a
    registered handler keeps slixmpp from answering feature-not-implemented)."""

    def start(self, timeout=15):
        super().start(timeout)
        self.swallowed = []
        done = threading.Event()

        def setup():
            self._client.register_handler(Callback(
                'xpb-blackhole', MatchXPath(f'{{jabber:client}}iq/{{{BLACKHOLE}}}query'),
                self._swallow))
            done.set()
        self._call(setup)
        done.wait(5)
        return self

    def _swallow(self, iq):
        with self._cond:
            self.swallowed.append(iq)
            self._cond.notify_all()


AVAILABLE = ('available', 'chat', 'away', 'dnd', 'xa')   # slixmpp's presence['type']


def _presence_from(jid, ptype=None):
    """Predicate for RichPerson stanzas: presence from jid; ptype 'available'
    matches any available presence (slixmpp reports its show as the type)."""
    def pred(k, s):
        if k != 'presence' or str(s['from']) != jid:
            return False
        if ptype == 'available':
            return s['type'] in AVAILABLE
        return ptype is None or s['type'] == ptype
    return pred


async def _roster_round_trip(client):
    return await client.get_roster()


def _stanzas_since(person, mark, pred):
    with person._cond:
        return [s for k, s in person.stanzas[mark:] if pred(k, s)]


class OpsBase(unittest.TestCase):
    """A Prosody per class, accounts bot, bot2 and alice."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Prosody(env.scratch('prosody'), env.pki())
        cls.srv.start()
        cls.addClassCleanup(cls._stop_server)
        for jid, pw in PASSWORDS.items():
            cls.srv.register(jid.split('@')[0], pw)

    @classmethod
    def _stop_server(cls):
        cls.srv.stop()
        cls.srv.wait_ports_closed()

    def new_bridge(self, accounts, **kw):
        b = ConfBridge(env.scratch('bridge'), self.srv, accounts, **kw)
        self.addCleanup(b.stop)   # SIGTERM, then the process group
        self.bridge = b
        return b

    def new_person(self, cls=RichPerson, user='alice'):
        p = cls(f'{user}@{DOMAIN}', PASSWORDS[f'{user}@{DOMAIN}'], env.pki().ca,
                self.srv.ports['c2s'])
        self.addCleanup(p.stop)
        return p.start()

    def crash_server(self):
        """SIGKILL the server (a crash: every TCP connection drops, no stream
        end). Restarted with self.srv.start()."""
        os.killpg(self.srv.proc.pid, signal.SIGKILL)
        self.srv.stop()
        self.assertTrue(self.srv.wait_ports_closed(), 'prosody ports still open')

    def freeze_server(self):
        """SIGSTOP the server: connections stay open, nothing is answered.
        Thawed by thaw_server() or in cleanup, pass or fail."""
        os.killpg(self.srv.proc.pid, signal.SIGSTOP)
        self.addCleanup(self.thaw_server)

    def thaw_server(self):
        if self.srv.proc is not None:
            try:
                os.killpg(self.srv.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        b = getattr(self, 'bridge', None)
        if result and len(result.failures) + len(result.errors) > before and b:
            print(f'\n--- {self.id()}: xpbridge log tail ---\n{b.log_tail(30)}')
        return out


# -- config errors ---------------------------------------------------------------------
class TestConfigErrors(unittest.TestCase):
    """Exit status 2 with FILE:LINE on stderr; nothing is started."""

    def setUp(self):
        self.dir = env.scratch('conf')
        self.pw = os.path.join(self.dir, 'bot.pass')
        with open(self.pw, 'w') as f:
            f.write('secret\n')
        os.chmod(self.pw, 0o600)

    def write(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, 'w') as f:
            f.write(text)
        return p

    def run_bridge(self, *args, timeout=10):
        p = procs.spawn([xpbridge_path(), *args], stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            procs.kill_group(p, term_timeout=1.0)
            self.fail(f'xpbridge {args} still running after {timeout}s (should have exited)')
        finally:
            procs.kill_group(p, term_timeout=1.0)
        return p.returncode, out, err

    def good(self, extra=''):
        ev, rq = f'ipc://{self.dir}/events', f'ipc://{self.dir}/requests'
        return (f'log = {{ level = "info"; }};\n'
                f'bus = {{ events = "{ev}"; requests = "{rq}"; }};\n'
                f'{extra}'
                f'accounts = (\n'
                f'  {{ jid = "{BOT}"; password_file = "{self.pw}";\n'
                f'    host = "127.0.0.1"; port = 1; }}\n'
                f');\n')

    def assert_nothing_bound(self):
        for s in ('events', 'requests'):
            self.assertFalse(os.path.exists(os.path.join(self.dir, s)),
                             f'{s} socket created by a config that should be refused')

    def test_syntax_error_names_file_and_line(self):
        text = self.good().replace('  { jid', '  { jid = ; bad\n  jid', 1)
        line = text.splitlines().index('  { jid = ; bad') + 1
        p = self.write('syntax.conf', text)
        for extra in ((), ('--check-config',)):
            with self.subTest(extra=extra):
                rc, out, err = self.run_bridge('--config', p, *extra)
                self.assertEqual(rc, 2, err)
                self.assertIn(f'{p}:{line}:', err)
                self.assertRegex(err, r'syntax error')
        self.assert_nothing_bound()

    def test_unknown_key_names_file_and_line(self):
        text = self.good().replace('port = 1; }', 'port = 1;\n    pasword = "x"; }')
        line = text.splitlines().index('    pasword = "x"; }') + 1
        p = self.write('unknown.conf', text)
        rc, out, err = self.run_bridge('--config', p)
        self.assertEqual(rc, 2, err)
        self.assertIn(f'{p}:{line}:', err)
        self.assertIn('pasword', err)
        self.assert_nothing_bound()
        # Also an unknown global group.
        p = self.write('unknown2.conf', self.good('metricz = { listen = "0"; };\n'))
        rc, out, err = self.run_bridge('--config', p, '--check-config')
        self.assertEqual(rc, 2, err)
        self.assertIn(f'{p}:3:', err)
        self.assertIn('metricz', err)

    def test_check_config_on_a_good_file(self):
        p = self.write('good.conf', self.good())
        rc, out, err = self.run_bridge('--config', p, '--check-config')
        self.assertEqual(rc, 0, err)
        self.assertIn('ok', out)
        self.assertIn('1 accounts', out)
        self.assert_nothing_bound()
        # The shipped example parses too (its password file does not exist:
        # --check-config opens every password file, so exit 2 naming it).
        ex = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tools',
                          'xpbridge.conf.example')
        rc, out, err = self.run_bridge('--config', ex, '--check-config')
        self.assertEqual(rc, 2, out + err)
        self.assertIn('/etc/xpbridge/bot.pass', err)
        self.assertNotRegex(err, r'xpbridge\.conf\.example:\d+:')

    def test_non_loopback_metrics_needs_allow_remote(self):
        port = procs.free_ports(1)[0]
        p = self.write('remote.conf', self.good(f'metrics = {{ listen = "0.0.0.0:{port}"; }};\n'))
        rc, out, err = self.run_bridge('--config', p)
        self.assertEqual(rc, 2, err)
        self.assertIn('0.0.0.0', err)
        self.assertIn('allow_remote', err)
        self.assertNotIn(port, procs.listening_ports())
        self.assert_nothing_bound()
        # The same address from the flag; and allowed with allow_remote (control).
        p2 = self.write('local.conf', self.good('metrics = { listen = "127.0.0.1:9"; };\n'))
        rc, out, err = self.run_bridge('--config', p2, '--metrics', f'0.0.0.0:{port}')
        self.assertEqual(rc, 2, err)
        p3 = self.write('allowed.conf', self.good(
            f'metrics = {{ listen = "0.0.0.0:{port}"; allow_remote = true; }};\n'))
        rc, out, err = self.run_bridge('--config', p3, '--check-config')
        self.assertEqual(rc, 0, err)


    def test_ws_url_rule_everywhere(self):
        """Issue 12: ws:// (WebSocket without TLS) is refused in the file, by
        --check-config, at start-up (exit 2) and in a bus open; allowed only
        to a loopback host with allow_plaintext_ws."""
        ws_remote = self.good().replace(
            'port = 1; }', 'ws_url = "ws://xmpp.example.com:5280/ws"; allow_plaintext_ws = true; }')
        ws_local_implicit = self.good().replace('port = 1; }', 'ws_url = "ws://127.0.0.1:1/ws"; }')
        for name, text, want in (('remote.conf', ws_remote, 'allowed only to a loopback host'),
                                 ('local.conf', ws_local_implicit, 'allow_plaintext_ws')):
            p = self.write(name, text)
            for extra in ((), ('--check-config',)):
                with self.subTest(name=name, extra=extra):
                    rc, out, err = self.run_bridge('--config', p, *extra)
                    self.assertEqual(rc, 2, err)
                    self.assertIn(f'{p}:', err)
                    self.assertIn(want, err)
        self.assert_nothing_bound()
        rc, out, err = self.run_bridge('--jid', BOT, '--password-file', self.pw,
                                       '--ws-url', 'ws://127.0.0.1:1/ws')
        self.assertEqual(rc, 2, err)
        self.assertIn('--allow-plaintext-ws', err)
        # Control: loopback with the setting passes, and ws_url alone means websocket.
        ok = self.good().replace(
            'port = 1; }', 'ws_url = "ws://127.0.0.1:1/ws"; allow_plaintext_ws = true; }')
        rc, out, err = self.run_bridge('--config', self.write('ok.conf', ok), '--check-config')
        self.assertEqual(rc, 0, err)
        # A bus open cannot set allow_plaintext_ws: ws:// is refused there,
        # even where the configuration lets requests choose the transport.
        b = ConfBridge(env.scratch('bridge'), None, [], bus_extra='allow_open_overrides = true;')
        self.addCleanup(b.stop)
        b.start(online_timeout=None)
        r = b.ctl('open', '--account', BOT, '--password-file', self.pw, '--transport',
                  'websocket', '--ws-url', 'ws://127.0.0.1:1/ws', check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('ERR_BAD_REQUEST', r.stderr)
        self.assertIn('ws://', r.stderr)
        self.assertEqual(b.sessions(), {})
        self.assertEqual(b.stop(), 0)

# -- SIGHUP ----------------------------------------------------------------------------
class TestReload(OpsBase):
    def test_sighup_adds_keeps_and_removes_accounts(self):
        b = self.new_bridge([BOT])
        a_full = b.start()
        alice = self.new_person()
        # alice subscribes to bot's presence (the bot approves over the bus).
        alice.presence(to=BOT, ptype='subscribe')
        alice.run(_roster_round_trip)   # the server has handled the subscribe
        b.ctl('presence', '--account', BOT, '--to', ALICE, '--type', 'subscribed')
        self.assertTrue(alice.wait_stanza(_presence_from(a_full, 'available')),
                        'alice never saw the bot available after subscribing')
        before = b.sessions()[BOT]
        self.assertEqual((before['state'], before['jid']), ('STATE_ONLINE', a_full))

        # 1. Add B.
        mark = b.log_mark()
        b.write_config([BOT, BOT2])
        b.signal(signal.SIGHUP)
        b_full = _online_as(b.wait_log(f'session {BOT2} online as ', 20, since=mark))
        b.wait_log('reload: done', 5, since=mark)
        s = b.sessions()
        self.assertEqual(set(s), {BOT, BOT2})
        self.assertEqual((s[BOT2]['state'], s[BOT2]['jid']), ('STATE_ONLINE', b_full))
        self.assertEqual((s[BOT]['state'], s[BOT]['jid']), ('STATE_ONLINE', a_full))
        self.assertEqual(s[BOT].get('reconnects', '0'), before.get('reconnects', '0'))
        self.assertEqual(b.lines_since(mark, f'session {BOT} online as'), [])
        self.assertEqual(b.lines_since(mark, f'session {BOT}:'), [])
        # A's stream is the same one: it still answers, and alice heard no change.
        r = b.ctl('iq', '--account', BOT, '--to', DOMAIN, '--ping', json_out=True)
        self.assertEqual(r['type'], 'TYPE_RESULT')

        # 2. A broken file: logged with FILE:LINE, both sessions kept.
        mark = b.log_mark()
        good = b.config_text([BOT2])
        bad_line = len(good.splitlines()) + 1
        b.write_config(text=good + 'limits = { queue_max = ; };\n')
        b.signal(signal.SIGHUP)
        line = b.wait_log('reload failed, keeping the running accounts', 5, since=mark)
        self.assertIn(f'{b.conf_path}:{bad_line}:', line)
        self.assertEqual(b.lines_since(mark, 'reload: removing'), [])
        s = b.sessions()
        self.assertEqual({k: (v['state'], v['jid']) for k, v in s.items()},
                         {BOT: ('STATE_ONLINE', a_full), BOT2: ('STATE_ONLINE', b_full)})

        # 3. Remove A: closed cleanly (alice sees its own unavailable presence,
        # not one the server makes up for a dropped stream), B untouched.
        mark, pmark = b.log_mark(), len(alice.stanzas)
        b.write_config([BOT2])
        b.signal(signal.SIGHUP)
        b.wait_log(f'reload: removing account {BOT}', 5, since=mark)
        gone = _wait(lambda: _stanzas_since(alice, pmark, _presence_from(a_full, 'unavailable')),
                     10, 'alice to see the removed account go unavailable')
        self.assertFalse(str(gone[0]['status']).startswith('Disconnected'),
                         f'unclean close: {gone[0]}')
        b.wait_log(f'session {BOT}: removed', 5, since=mark)
        self.assertEqual(b.lines_since(mark, 'not closed within'), [])
        s = b.sessions()
        self.assertEqual(set(s), {BOT2})
        self.assertEqual((s[BOT2]['state'], s[BOT2]['jid']), ('STATE_ONLINE', b_full))
        self.assertEqual(b.lines_since(mark, f'session {BOT2} online as'), [])
        r = b.ctl('send', '--account', BOT, '--to', ALICE, 'x', check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('ERR_UNKNOWN_ACCOUNT', r.stderr)
        b.ctl('send', '--account', BOT2, '--to', ALICE, 'from b after reload')
        got = alice.wait_messages(1, body_prefix='from b after reload')
        self.assertEqual([m['from'] for m in got], [b_full])

        # 4. A changed setting restarts that account with the new settings.
        mark = b.log_mark()
        b.write_config([BOT2], extra={BOT2: 'send_presence = false;'})
        b.signal(signal.SIGHUP)
        b.wait_log(f'reload: account {BOT2} changed; restarting it', 5, since=mark)
        b2_full = _online_as(b.wait_log(f'session {BOT2} online as ', 20, since=mark))
        self.assertTrue(b.lines_since(mark, f'session {BOT2}: removed'))
        s = b.sessions()
        self.assertEqual({k: v['state'] for k, v in s.items()}, {BOT2: 'STATE_ONLINE'})
        self.assertEqual(s[BOT2]['jid'], b2_full)
        self.assertEqual(b.stop(), 0)


    def test_sighup_refuses_empty_config_and_fifo(self):
        """Issue 12: a reload that would remove every account, or that reads
        something other than a regular file (a FIFO would block the loop),
        is refused by name and the running accounts stay; a FIFO is refused
        at start-up too (exit 2)."""
        b = self.new_bridge([BOT])
        a_full = b.start()
        # An emptied file: every account would go.
        mark = b.log_mark()
        b.write_config([])
        b.signal(signal.SIGHUP)
        line = b.wait_log('reload refused, keeping the running accounts', 5, since=mark)
        self.assertIn('may not remove every account', line)
        self.assertEqual(b.lines_since(mark, 'reload: removing'), [])
        self.assertEqual({k: (v['state'], v['jid']) for k, v in b.sessions().items()},
                         {BOT: ('STATE_ONLINE', a_full)})
        # A FIFO in place of the file: refused at once, without a writer.
        os.remove(b.conf_path)
        os.mkfifo(b.conf_path)
        mark = b.log_mark()
        t0 = time.monotonic()
        b.signal(signal.SIGHUP)
        line = b.wait_log('reload failed, keeping the running accounts', 5, since=mark)
        self.assertIn('not a regular file', line)
        r = b.ctl('iq', '--account', BOT, '--to', DOMAIN, '--ping', json_out=True)
        self.assertEqual(r['type'], 'TYPE_RESULT')
        self.assertLess(time.monotonic() - t0, 4, 'the loop was blocked by the FIFO')
        self.assertEqual(b.lines_since(mark, 'reload: removing'), [])
        # ... and at start-up.
        r = subprocess.run([xpbridge_path(), '--config', b.conf_path, '--check-config'],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn('not a regular file', r.stderr)
        os.remove(b.conf_path)
        b.write_config([BOT])
        self.assertEqual(b.stop(), 0)


# -- SIGTERM ---------------------------------------------------------------------------
class TestShutdown(OpsBase):
    def test_sigterm_answers_pending_iq_and_closes_sessions(self):
        b = self.new_bridge([BOT])
        bot_full = b.start()
        alice = self.new_person(SilentPerson)
        # Directed presence: the server sends alice the bot's unavailable too
        # (RFC 6121 §4.6.3).
        b.ctl('presence', '--account', BOT, '--to', alice.jid)
        self.assertTrue(alice.wait_stanza(_presence_from(bot_full, 'available')))
        iq = procs.spawn([b.ctl_path, 'iq', '--requests', b.requests, '--account', BOT,
                          '--to', alice.jid, '--iq-timeout', '60000', '--timeout', '65000',
                          '--xml', f"<iq type='get'><query xmlns='{BLACKHOLE}'/></iq>"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        self.addCleanup(procs.kill_group, iq, 1.0)
        _wait(lambda: alice.swallowed, 10, 'the iq to reach the silent person')
        self.assertIsNone(iq.poll(), 'xpbctl iq returned before the shutdown')
        mark = b.log_mark()
        t0 = time.monotonic()
        b.signal(signal.SIGTERM)
        try:
            rc = b.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail(f'xpbridge still running 10 s after SIGTERM\n{b.log_tail()}')
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, b.log_tail())
        self.assertLess(took, 5, 'shutdown took longer than the documented 3 s wait')
        try:
            out, err = iq.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.fail('the pending xpbctl iq got no answer after xpbridge exited')
        # An error reply (1), not "no reply" (3).
        self.assertEqual(iq.returncode, 1, f'stdout {out!r} stderr {err!r}')
        self.assertRegex(err, r'ERR_(INTERNAL|NOT_CONNECTED)')
        gone = alice.wait_stanza(_presence_from(bot_full, 'unavailable'), timeout=10)
        self.assertTrue(gone, 'alice never saw the bot go unavailable')
        self.assertFalse(str(gone[0]['status']).startswith('Disconnected'),
                         f'unclean close: {gone[0]}')
        self.assertTrue(b.lines_since(mark, 'signal SIGTERM: shutting down'))
        self.assertEqual(b.lines_since(mark, 'not closed within'), [])
        # Every request still open was answered: a new one finds nobody home.
        r = b.ctl('status', '--timeout', '500', check=False)
        self.assertNotEqual(r.returncode, 0)


# -- a server that stops answering ------------------------------------------------------
class TestUnresponsiveServer(OpsBase):
    def test_sigterm_with_a_frozen_server_exits_within_3s(self):
        """docs/operations.md: xpbridge waits at most 3 s for the servers."""
        b = self.new_bridge([BOT])
        b.start()
        self.freeze_server()
        t0 = time.monotonic()
        b.signal(signal.SIGTERM)
        try:
            rc = b.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail('xpbridge still running 10 s after SIGTERM with a frozen server')
        self.assertEqual(rc, 0, b.log_tail())
        self.assertLess(time.monotonic() - t0, 4.0)

    def test_account_re_added_while_closing_is_started(self):
        """docs/configuration.md: "accounts new in the file are started". An
        account removed by one SIGHUP and put back by the next while its close
        is still waiting for the server must be started again once closed;
        today reload_account() returns early for a `removing` account and it
        is silently dropped ("reload: done (2 accounts configured ...)")."""
        b = self.new_bridge([BOT, BOT2])
        b.start()
        b.wait_log(f'session {BOT2} online as ', 10)
        self.freeze_server()
        mark = b.log_mark()
        b.write_config([BOT2])
        b.signal(signal.SIGHUP)
        b.wait_log(f'reload: removing account {BOT}', 5, since=mark)
        b.wait_log('reload: done', 5, since=mark)
        mark = b.log_mark()
        b.write_config([BOT, BOT2])
        b.signal(signal.SIGHUP)
        b.wait_log('reload: done', 5, since=mark)
        self.thaw_server()
        b.wait_log(f'session {BOT}: removed', 5, since=mark)
        b.wait_log(f'session {BOT} online as ', 8, since=mark)
        s = b.sessions()
        self.assertEqual({k: v['state'] for k, v in s.items()},
                         {BOT: 'STATE_ONLINE', BOT2: 'STATE_ONLINE'})


# -- /metrics and /healthz ---------------------------------------------------------------
def http_get(port, path, timeout=5):
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers.get('Content-Type', '')
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get('Content-Type', '')


_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text, test):
    """{(name, frozenset(labels)): value}; checks the 0.0.4 text format on
    the way: every sample's family has # HELP and # TYPE before it."""
    helps, types, samples = set(), {}, {}
    for line in text.splitlines():
        if line.startswith('# HELP '):
            helps.add(line.split(' ', 3)[2])
        elif line.startswith('# TYPE '):
            _, _, name, typ = line.split(' ')
            test.assertIn(typ, ('counter', 'gauge', 'histogram', 'summary', 'untyped'), line)
            types[name] = typ
        elif line.startswith('#') or not line:
            continue
        else:
            m = _SAMPLE.fullmatch(line)
            test.assertIsNotNone(m, f'not a sample line: {line!r}')
            name, labels, value = m.groups()
            fam = re.sub(r'_(bucket|sum|count)$', '', name) if name not in types else name
            test.assertIn(fam, types, f'{name}: no # TYPE before it')
            test.assertIn(fam, helps, f'{name}: no # HELP before it')
            lab = frozenset(_LABEL.findall(labels or ''))
            test.assertNotIn((name, lab), samples, f'duplicate sample {line!r}')
            samples[(name, lab)] = float(value)
    return samples


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def tcp_listeners(port):
    """[(family, local address hex, inode)] of LISTEN sockets on port."""
    out = []
    for path, fam in (('/proc/net/tcp', 4), ('/proc/net/tcp6', 6)):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    addr, hport = p[1].rsplit(':', 1)
                    if p[3] == '0A' and int(hport, 16) == port:
                        out.append((fam, addr, p[9]))
        except FileNotFoundError:
            pass
    return out


def socket_inodes(pid):
    out = set()
    d = f'/proc/{pid}/fd'
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if t.startswith('socket:['):
            out.add(t[8:-1])
    return out


class TestMetrics(OpsBase):
    def test_metrics_and_healthz(self):
        port = procs.free_ports(1)[0]
        b = self.new_bridge([BOT], metrics=f'127.0.0.1:{port}')
        b.start()
        b.wait_log(f'metrics 127.0.0.1:{port}', 1)
        alice = self.new_person()

        # Bound to 127.0.0.1 only, by xpbridge.
        ls = tcp_listeners(port)
        self.assertEqual([(f, a) for f, a, _ in ls], [(4, '0100007F')], ls)
        self.assertIn(ls[0][2], socket_inodes(b.proc.pid))

        code, text, _ = http_get(port, '/healthz')
        self.assertEqual((code, text.strip()), (200, 'ok'))
        code, text, ctype = http_get(port, '/metrics')
        self.assertEqual(code, 200)
        self.assertIn('text/plain', ctype)
        self.assertIn('version=0.0.4', ctype)
        self.assertIn('# HELP xpb_stanzas_total ', text)
        self.assertIn('# TYPE xpb_stanzas_total counter', text)
        self.assertIn('# TYPE xpb_sessions gauge', text)
        m0 = parse_metrics(text, self)
        self.assertEqual(metric(m0, 'xpb_sessions', state='online'), 1)
        for st in ('connecting', 'disconnected', 'closing', 'stopped'):
            self.assertEqual(metric(m0, 'xpb_sessions', state=st), 0, st)
        self.assertEqual(http_get(port, '/nope')[0], 404)

        def msgs(m, d):
            return metric(m, 'xpb_stanzas_total', direction=d, kind='message')
        self.assertIsNotNone(msgs(m0, 'in'))
        self.assertIsNotNone(msgs(m0, 'out'))
        n_in, n_out = 7, 4
        for i in range(n_in):
            alice.send(BOT, f'metrics-in-{i}')
        for i in range(n_out):
            b.ctl('send', '--account', BOT, '--to', alice.jid, f'metrics-out-{i}')
        self.assertEqual(len(alice.wait_messages(n_out, body_prefix='metrics-out-')), n_out)

        def grown():
            m = parse_metrics(http_get(port, '/metrics')[1], self)
            if msgs(m, 'in') - msgs(m0, 'in') >= n_in and \
               msgs(m, 'out') - msgs(m0, 'out') >= n_out:
                return m
            return None
        m1 = _wait(grown, 10, f'{n_in} in / {n_out} out messages counted')
        time.sleep(0.5)   # nothing else is sent to or by the bot: the counts are exact
        m1 = parse_metrics(http_get(port, '/metrics')[1], self)
        self.assertEqual(msgs(m1, 'in') - msgs(m0, 'in'), n_in)
        self.assertEqual(msgs(m1, 'out') - msgs(m0, 'out'), n_out)
        for d in ('in', 'out'):
            for f in ('xml', 'record'):
                self.assertGreater(metric(m1, 'xpb_bytes_total', direction=d, format=f),
                                   metric(m0, 'xpb_bytes_total', direction=d, format=f), (d, f))
        self.assertEqual(metric(m1, 'xpb_sessions', state='online'), 1)
        self.assertEqual(metric(m1, 'xpb_queue_depth', account=BOT), 0)
        # The limits in force, beside the gauges they bound (defaults here).
        self.assertEqual(metric(m1, 'xpb_queue_max'), 1000)
        self.assertEqual(metric(m1, 'xpb_max_stanza_bytes'), 262144)
        self.assertEqual(metric(m1, 'xpb_muc_self_ping_seconds'), 300)
        # limits.loops "auto": one worker loop per core, none on one core.
        cores = os.cpu_count() or 1
        self.assertEqual(metric(m1, 'xpb_worker_loops'), cores if cores >= 2 else 0)
        self.assertGreaterEqual(metric(m1, 'xpb_bus_requests_total'), n_out)

        # Server gone: not healthy, and the gauge says so.
        alice.stop()
        self.crash_server()

        def unhealthy():
            c, t, _ = http_get(port, '/healthz')
            return (c, t) if c != 200 else None
        code, text = _wait(unhealthy, 10, '/healthz to fail')
        self.assertEqual(code, 503)
        self.assertIn('no session online', text)
        m2 = parse_metrics(http_get(port, '/metrics')[1], self)
        self.assertEqual(metric(m2, 'xpb_sessions', state='online'), 0)
        self.assertEqual(b.stop(), 0)
        self.assertEqual(tcp_listeners(port), [], 'metrics listener outlived xpbridge')


def _cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _fd_count(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def _open_idle(port, n):
    """n TCP connections to port that send nothing."""
    import socket
    out = []
    for _ in range(n):
        c = socket.create_connection(('127.0.0.1', port), timeout=5)
        c.setblocking(False)
        out.append(c)
    return out


def _closed_by_peer(socks):
    """How many of socks the peer has closed (EOF or reset)."""
    n = 0
    for c in socks:
        try:
            if c.recv(1) == b'':
                n += 1
        except BlockingIOError:
            pass
        except OSError:
            n += 1
    return n


class TestMetricsLimits(OpsBase):
    """Issue 12: a local user holding hundreds of idle /metrics connections
    must not starve the bridge. xpbridge runs with RLIMIT_NOFILE = 64."""
    NOFILE, IDLE_S, N_IDLE = 64, 2, 300
    LOG_BOUND = 64 * 1024

    def _bridge(self, extra):
        port = procs.free_ports(1)[0]
        b = self.new_bridge([BOT], metrics=f'127.0.0.1:{port}', nofile=self.NOFILE,
                            metrics_extra=f'idle_timeout_s = {self.IDLE_S}; {extra}')
        b.start()
        return b, port

    def _close_all(self, socks):
        for c in socks:
            c.close()

    def _bus_and_session_work(self, b):
        st = b.ctl('status', json_out=True)
        self.assertTrue(st, 'no status reply')
        r = b.ctl('iq', '--account', BOT, '--to', DOMAIN, '--ping', json_out=True, timeout=15)
        self.assertEqual(r['type'], 'TYPE_RESULT')

    def test_connection_cap_and_idle_timeout(self):
        b, port = self._bridge('')      # max_connections: the default, 16
        log0 = b.log_mark()
        socks = _open_idle(port, self.N_IDLE)
        self.addCleanup(self._close_all, socks)
        # Over the cap: closed at once. The bridge's descriptors stay bounded.
        refused = _wait(lambda: _closed_by_peer(socks) >= self.N_IDLE - 16, 10,
                        'connections over max_connections closed at once')
        self.assertTrue(refused)
        self.assertLess(_fd_count(b.proc.pid), self.NOFILE)
        self._bus_and_session_work(b)
        # The 16 admitted ones: closed by idle_timeout_s.
        _wait(lambda: _closed_by_peer(socks) == self.N_IDLE, self.IDLE_S + 8,
              'idle connections closed by metrics.idle_timeout_s')
        m = parse_metrics(http_get(port, '/metrics')[1], self)
        self.assertEqual(metric(m, 'xpb_metrics_max_connections'), 16)
        # Every idle connection was either refused at once or timed out (a
        # slot freed by the timeout may admit a later one while the test is
        # still connecting); the only one accepted otherwise is this request.
        refused = metric(m, 'xpb_metrics_connections_refused_total')
        timed_out = metric(m, 'xpb_metrics_connections_timed_out_total')
        self.assertEqual(refused + timed_out, self.N_IDLE, m)
        self.assertGreaterEqual(refused, self.N_IDLE // 2)
        self.assertGreaterEqual(timed_out, 16)
        self.assertEqual(metric(m, 'xpb_metrics_connections_total'), timed_out + 1)
        self.assertEqual(metric(m, 'xpb_metrics_connections'), 1)   # this request
        self.assertEqual(metric(m, 'xpb_metrics_accept_errors_total'), 0)
        self._bus_and_session_work(b)
        self.assertLess(b.log_mark() - log0, self.LOG_BOUND)
        self.assertEqual(b.stop(), 0)

    def test_out_of_descriptors_pauses_accept(self):
        """A cap above the fd limit: accept() fails with EMFILE. The listener
        pauses instead of spinning, the log stays small, libevent writes
        nothing to stderr, and everything recovers once the idle connections
        time out."""
        b, port = self._bridge('max_connections = 1000;')
        log0 = b.log_mark()
        cpu0, t0 = _cpu_seconds(b.proc.pid), time.monotonic()
        socks = _open_idle(port, self.N_IDLE)
        self.addCleanup(self._close_all, socks)
        time.sleep(1.5)   # out of descriptors for a while
        self.assertGreaterEqual(_fd_count(b.proc.pid), self.NOFILE - 2)
        cpu = _cpu_seconds(b.proc.pid) - cpu0
        wall = time.monotonic() - t0
        self.assertLess(cpu, 0.3 * wall, f'{cpu:.2f} s CPU in {wall:.2f} s: spinning on accept()')
        # Everything it held is closed by the timeout; pending ones are then served.
        _wait(lambda: _closed_by_peer(socks) == self.N_IDLE, 6 * self.IDLE_S + 20,
              'every idle connection closed')
        self._bus_and_session_work(b)
        m = parse_metrics(http_get(port, '/metrics')[1], self)
        self.assertGreater(metric(m, 'xpb_metrics_accept_errors_total'), 0)
        self.assertGreater(metric(m, 'xpb_metrics_connections_timed_out_total'), 0)
        self.assertLess(b.log_mark() - log0, self.LOG_BOUND)
        lines = b.lines_since(log0, 'metrics: accept() failed: ')
        self.assertTrue(lines, 'accept errors not logged through our logger')
        self.assertIn('EMFILE', lines[0])
        self.assertEqual(b.lines_since(log0, 'Error from accept() call'), [])
        self.assertEqual(b.stop(), 0)


# -- queue_max -------------------------------------------------------------------------
class TestQueueFull(OpsBase):
    QUEUE_MAX = 5

    def test_queue_full_while_server_down_then_delivered(self):
        b = self.new_bridge([BOT], queue_max=self.QUEUE_MAX)
        b.start()
        alice = self.new_person()
        alice.stop()   # offline: what the bot sends waits in offline storage
        # Nothing unacknowledged left (it would take queue room after the drop).
        _wait(lambda: b.sessions()[BOT].get('unacked', 0) in (0, '0'), 10, 'unacked == 0')
        self.crash_server()
        _wait(lambda: b.sessions()[BOT]['state'] != 'STATE_ONLINE', 10, 'session not online')

        for i in range(self.QUEUE_MAX):
            r = b.ctl('send', '--account', BOT, '--to', ALICE, f'queued-{i}')
            self.assertEqual(r.stdout.split()[-1], 'queued', r.stdout)
        self.assertEqual(int(b.sessions()[BOT].get('queued', 0)), self.QUEUE_MAX)
        r = b.ctl('send', '--account', BOT, '--to', ALICE, 'queued-overflow', check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('ERR_QUEUE_FULL', r.stderr)
        self.assertIn('queue_max', r.stderr)
        self.assertIn(str(self.QUEUE_MAX), r.stderr)

        mark = b.log_mark()
        self.srv.start()
        b.wait_log(f'session {BOT} online as ', 30, since=mark)
        _wait(lambda: int(b.sessions()[BOT].get('queued', 0)) == 0, 10, 'the queue to drain')
        alice = self.new_person()
        got = alice.wait_messages(self.QUEUE_MAX, timeout=10, body_prefix='queued-')
        alice.wait_quiet(1.0)
        got = alice.messages(body_prefix='queued-')
        self.assertEqual([m['body'] for m in got],
                         [f'queued-{i}' for i in range(self.QUEUE_MAX)])
        self.assertEqual(b.stop(), 0)


if __name__ == '__main__':
    unittest.main()
