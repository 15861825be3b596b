"""Issue 15, item 7: the client libraries in clients/ against a live
xpbridge and Prosody on 127.0.0.1. Each runs its echo-bot example as a
separate process (an account the bridge was started with, no `open`); a
slixmpp person sends a message and must get the same body back. The Python
class also drives the library's requests (status, sessions, send) and its
error mapping against the real bridge. Every process is stopped by PID in
cleanup, pass or fail.

PythonClient finds the protoc output in XPB_PY_GEN (made by the build) or
makes it (clients/python/xpbridge/_proto.py). NodeClient runs `npm ci` of
clients/node/package-lock.json into XPB_NODE_PREFIX (the build's
clients/node) first; it skips, saying why, only when npm cannot install at
all. Run as a script, a run whose tests were all skipped exits 77."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest

from xpbtest import env, procs
from xpbtest.bridge import Bridge, xpbridge_path
from xpbtest.person import Person
from xpbtest.certs import DOMAIN
from xpbtest.servers import Prosody

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BOT, ALICE = f'bot@{DOMAIN}', f'alice@{DOMAIN}'


def setUpModule():
    path = xpbridge_path()
    if not path or not os.access(path, os.X_OK):
        if os.environ.get('XPBRIDGE'):
            raise FileNotFoundError(f'XPBRIDGE={path} is not executable')
        raise unittest.SkipTest('xpbridge not built (set XPBRIDGE)')


class Proc:
    """A child process (own process group) with its output collected."""

    def __init__(self, argv, env_extra):
        e = dict(os.environ, **env_extra)
        self.proc = procs.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=e, bufsize=0)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode('utf-8', 'replace').rstrip())

    def wait_line(self, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in l for l in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f'no "{text}" from {self.proc.args[:2]} within {timeout}s '
                             f'(exit {self.proc.poll()}):\n' + '\n'.join(self.lines[-30:]))

    def stop(self):
        procs.kill_group(self.proc, term_timeout=3.0)
        self.proc.stdout.close()


class LiveFixture:
    """Prosody with bot and alice, xpbridge serving bot, alice online."""
    bridge_extra = ()

    @classmethod
    def setUpClass(cls):
        cls.stack = []
        try:
            cls.srv = Prosody(env.scratch('prosody'), env.pki())
            cls.srv.start()
            cls.stack.append(cls.srv.stop)
            cls.srv.register('bot', 'bot-pw')
            cls.srv.register('alice', 'alice-pw')
            cls.bridge = Bridge(env.scratch('bridge'), BOT, 'bot-pw', '127.0.0.1',
                                cls.srv.ports['c2s'], env.pki().ca, extra=cls.bridge_extra)
            cls.bridge.start()
            cls.stack.append(cls.bridge.stop)
            cls.alice = Person(ALICE, 'alice-pw', env.pki().ca, cls.srv.ports['c2s']).start()
            cls.stack.append(cls.alice.stop)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        while cls.stack:
            fn = cls.stack.pop()
            try:
                fn()
            except Exception as e:  # keep stopping the rest
                print(f'cleanup: {fn}: {e}')


class EchoMixin(LiveFixture):
    """The echo-bot example; subclasses give bot_argv() and bot_env()."""

    def start_bot(self):
        bot = Proc(self.bot_argv() + [BOT, self.bridge.events, self.bridge.requests],
                   self.bot_env())
        self.addCleanup(bot.stop)
        bot.wait_line('ready', 30)
        return bot

    def echo(self, bot, tag, timeout=20):
        """Alice sends tag-N until one comes back (PUB/SUB drops what is
        published before the bot's subscription is in place); returns the
        echoed message."""
        deadline, i = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            self.alice.send(BOT, f'{tag}-{i}')
            got = self.alice.wait_messages(1, timeout=1.5, body_prefix=f'{tag}-')
            if got:
                return got[0]
            i += 1
        self.fail(f'no echo of {tag}-* within {timeout}s\nbot output:\n' +
                  '\n'.join(bot.lines[-30:]) + f'\nbridge log:\n{self.bridge.log_tail(30)}')

    def test_echo_bot_answers_with_the_same_body(self):
        bot = self.start_bot()
        first = self.echo(bot, 'hello')
        self.assertTrue(first['from'].startswith(BOT + '/'), first)
        self.assertEqual(first['type'], 'chat')
        # Now that the subscription is proven, every message is echoed, once,
        # in order, with its exact body (non-ASCII included).
        bodies = [f'exact-{n} caf\u00e9 \u2713 <&>' for n in range(5)]
        for b in bodies:
            self.alice.send(BOT, b)
        got = self.alice.wait_messages(5, timeout=15, body_prefix='exact-')
        self.assertEqual([m['body'] for m in got], bodies,
                         'bot output:\n' + '\n'.join(bot.lines[-30:]))
        self.assertTrue(self.bridge.alive())


class PythonClient(EchoMixin, unittest.TestCase):
    def bot_argv(self):
        return [sys.executable, os.path.join(ROOT, 'clients/python/examples/echo_bot.py')]

    def bot_env(self):
        return {}

    @classmethod
    def setUpClass(cls):
        cls.import_xpbridge(cls)
        super().setUpClass()

    @staticmethod
    def import_xpbridge(cls):
        sys.path.insert(0, os.path.join(ROOT, 'clients', 'python'))
        import xpbridge
        cls.xpb = xpbridge

    def client(self):
        c = self.xpb.Bridge(self.bridge.events, self.bridge.requests, timeout=5)
        self.addCleanup(c.close)
        return c

    def test_requests_status_sessions_send(self):
        c = self.client()
        st = c.status()
        self.assertEqual(st.sessions, 1)
        self.assertEqual(st.sessions_online, 1)
        self.assertEqual([s.account for s in c.sessions()], [BOT])
        rid = c.new_request_id()
        r1 = c.send(BOT, to=ALICE, body='direct-1', request_id=rid)
        self.assertTrue(r1.stanza_id)
        # A resend with the same id is answered from the bridge's cache: the
        # same stanza id, and alice gets the message once.
        r2 = c.send(BOT, to=ALICE, body='direct-1', request_id=rid)
        self.assertEqual(r2.stanza_id, r1.stanza_id)
        self.assertEqual(len(self.alice.wait_messages(1, body_prefix='direct-1')), 1)
        self.alice.wait_quiet(1.0)
        self.assertEqual(len(self.alice.messages('direct-1')), 1)

    def test_errors_carry_the_bus_code_and_text(self):
        c = self.client()
        with self.assertRaises(self.xpb.BusError) as cm:
            c.send(f'nobody@{DOMAIN}', to=ALICE, body='x')
        e = cm.exception
        self.assertEqual((e.code, e.name), (self.xpb.bus_pb2.ERR_UNKNOWN_ACCOUNT,
                                            'ERR_UNKNOWN_ACCOUNT'))
        self.assertIn(f'nobody@{DOMAIN}', e.text)
        self.assertIn('ERR_UNKNOWN_ACCOUNT (3)', str(e))
        with self.assertRaises(self.xpb.BusError) as cm:
            c.send(BOT, to='not a jid@', body='x')
        self.assertEqual(cm.exception.name, 'ERR_INVALID_JID')
        # An iq must be kind IQ of type get or set (docs/bus.md, checks).
        with self.assertRaises(self.xpb.BusError) as cm:
            c.iq(BOT, self.xpb.message(ALICE, 'not an iq'))
        self.assertEqual(cm.exception.code, self.xpb.bus_pb2.ERR_INVALID_RECORD, cm.exception)

    def test_timeout_when_no_bridge_listens(self):
        c = self.xpb.Bridge(f'ipc://{env.scratch("nobridge")}/events',
                            f'ipc://{env.scratch("nobridge")}/requests', timeout=0.3, retries=1)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        with self.assertRaises(self.xpb.BusTimeout) as cm:
            c.status()
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        self.assertIn('2 tries', str(cm.exception))

    def test_events_iterator_and_resume_file(self):
        c = self.client()
        resume = os.path.join(env.scratch('resume'), 'seq')
        got = []

        def follow():
            for ev in c.events(kinds=['message'], account=BOT, resume_file=resume, timeout=20):
                if ev.stanza.body and ev.stanza.body[0].text.startswith('iter-'):
                    got.append(ev)
                    if len(got) >= 3:
                        return
        t = threading.Thread(target=follow, daemon=True)
        t.start()
        deadline, i = time.monotonic() + 20, 0
        while t.is_alive() and time.monotonic() < deadline:
            self.alice.send(BOT, f'iter-{i}')
            i += 1
            time.sleep(0.3)
        t.join(5)
        self.assertGreaterEqual(len(got), 3)
        seqs = [ev.seq for ev in got]
        self.assertEqual(seqs, sorted(seqs))
        self.assertTrue(all(ev.account == BOT for ev in got))
        # The file holds the last event the caller finished with (the third
        # was being handled when the loop returned).
        with open(resume) as f:
            self.assertEqual(int(f.read()), got[1].seq)
        self.assertEqual(c.gaps, [])


class PythonRestart(LiveFixture, unittest.TestCase):
    """events() reports a restart of the bridge (seq going back), and goes
    on with the new process's events (the SUB socket redials by itself)."""

    @classmethod
    def setUpClass(cls):
        PythonClient.import_xpbridge(cls)
        super().setUpClass()

    def test_restart_of_the_bridge_is_reported(self):
        c = self.xpb.Bridge(self.bridge.events, self.bridge.requests, timeout=5)
        self.addCleanup(c.close)
        seen, gaps = [], []
        stop = threading.Event()

        def follow():
            for ev in c.events(account=BOT, on_gap=gaps.append, timeout=30):
                if ev.stanza.body:
                    seen.append((ev.seq, ev.stanza.body[0].text))
                if stop.is_set():
                    return
        t = threading.Thread(target=follow, daemon=True)
        t.start()
        self.wait_bodies(seen, 'before-', 30)
        top = max(s for s, _ in seen)
        self.bridge.stop()
        self.bridge.start()
        self.wait_bodies(seen, 'after-', 1)
        stop.set()
        self.alice.send(BOT, 'last')  # wakes the iterator so it returns
        t.join(10)
        after = [s for s, b in seen if b.startswith('after-')]
        self.assertLess(after[0], top, 'the new process numbers from 1')
        kinds = [g.kind for g in gaps]
        self.assertIn('restart', kinds, gaps)
        self.assertNotIn('lost', kinds, gaps)
        self.assertIs(c.gaps[0], gaps[0])

    def wait_bodies(self, seen, prefix, n, timeout=30):
        """alice sends prefix-N (one each 0.2 s) until the iterator saw n."""
        deadline, i = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            if sum(b.startswith(prefix) for _, b in seen) >= n:
                return
            self.alice.send(BOT, f'{prefix}{i}')
            i += 1
            time.sleep(0.2)
        self.fail(f'events() saw {len(seen)} bodies, not {n} starting {prefix}; '
                  f'bridge log:\n{self.bridge.log_tail(20)}')


class PythonReplay(LiveFixture, unittest.TestCase):
    """With a state directory: events(from_seq=...) replays the journal,
    and events(resume_file=...) goes on after the last event the caller
    finished with, replaying what came meanwhile (docs/durability.md)."""

    @classmethod
    def setUpClass(cls):
        PythonClient.import_xpbridge(cls)
        cls.bridge_extra = ('--state-dir', os.path.join(env.scratch('state'), 'db'))
        super().setUpClass()

    def bodies(self, c, from_seq, resume, n):
        got = []
        for ev in c.events(kinds=['message'], account=BOT, from_seq=from_seq, resume_file=resume,
                           timeout=5):
            if ev.stanza.body and ev.stanza.body[0].text.startswith('replay-'):
                got.append(ev.stanza.body[0].text)
            if len(got) == n:
                break
        return got

    def test_replay_then_resume(self):
        c = self.xpb.Bridge(self.bridge.events, self.bridge.requests, timeout=5)
        self.addCleanup(c.close)
        for i in range(3):
            self.alice.send(BOT, f'replay-{i}')
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # nobody listens: the journal has them
            page = c.replay(1, f'message/{BOT}/')
            if page.count >= 3:
                break
            time.sleep(0.2)
        resume = os.path.join(env.scratch('resume'), 'seq')
        self.assertEqual(self.bodies(c, 1, resume, 3), ['replay-0', 'replay-1', 'replay-2'])
        # The loop left while handling replay-2: the file says replay-1 was
        # the last one finished, so replay-2 comes again, then what is new.
        for i in range(3, 5):
            self.alice.send(BOT, f'replay-{i}')
        self.assertEqual(self.bodies(c, None, resume, 3), ['replay-2', 'replay-3', 'replay-4'])
        self.assertEqual(c.gaps, [])
        self.assertEqual(c.replay(10 ** 9).count, 0)  # past the end: an empty page


class NodeClient(EchoMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node_modules = install_node_deps()
        cls.bridge_extra = ('--state-dir', os.path.join(env.scratch('state'), 'db'))
        super().setUpClass()

    def bot_argv(self):
        return ['node', os.path.join(ROOT, 'clients/node/examples/echo_bot.js')]

    def bot_env(self):
        return {'NODE_PATH': self.node_modules}

    def test_requests_errors_and_gaps(self):
        """clients/node/test/live.js: status, sessions, a send resent with the
        same id (one message, same stanza id), BusError codes, a BusTimeout
        and the GapDetector; it prints one JSON object."""
        script = os.path.join(ROOT, 'clients/node/test/live.js')
        r = subprocess.run(['node', script, BOT, ALICE, self.bridge.events, self.bridge.requests,
                            f'ipc://{env.scratch("nobridge")}/requests'],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, NODE_PATH=self.node_modules))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out['status'], {'sessions': 1, 'sessions_online': 1})
        self.assertEqual(out['sessions'], [BOT])
        self.assertTrue(out['stanza_ids'][0])
        self.assertEqual(out['stanza_ids'][0], out['stanza_ids'][1])
        # Replayed from the journal: the account's first events, in order.
        self.assertEqual(len(out['replayed']), 3, out)
        self.assertEqual(out['replayed'], sorted(out['replayed']))
        self.assertEqual(out['replayed'][0], 1)
        self.assertEqual(out['unknown_account'][:2], [3, 'ERR_UNKNOWN_ACCOUNT'])
        self.assertIn(f'nobody@{DOMAIN}', out['unknown_account'][2])
        self.assertEqual(out['not_an_iq'][:2], [7, 'ERR_INVALID_RECORD'])
        self.assertEqual(out['timeout'][:2], ['BusTimeout', 'TIMEOUT'])
        self.assertEqual(out['gaps'], ['lost 4 7 5', 'restart 9 1 0'])
        self.assertEqual(len(self.alice.wait_messages(1, body_prefix='node-direct')), 1)
        self.alice.wait_quiet(1.0)
        self.assertEqual(len(self.alice.messages('node-direct')), 1)


def install_node_deps():
    """npm ci of clients/node/package-lock.json into XPB_NODE_PREFIX (the
    build's clients/node), once per lock file; the node_modules directory.
    SkipTest only when npm cannot install at all (no npm, or the registry is
    unreachable); any other install failure fails the test."""
    prefix = os.environ.get('XPB_NODE_PREFIX') or os.path.join(env.workdir(), 'node')
    if shutil.which('node') is None or shutil.which('npm') is None:
        raise unittest.SkipTest('node client not tested: node or npm is not installed '
                                '(Debian: nodejs, npm)')
    os.makedirs(prefix, exist_ok=True)
    stamp = os.path.join(prefix, 'node_modules', '.xpb-lock')
    with open(os.path.join(ROOT, 'clients/node/package-lock.json'), 'rb') as f:
        lock = f.read()
    try:
        with open(stamp, 'rb') as f:
            if f.read() == lock:
                return os.path.join(prefix, 'node_modules')
    except OSError:
        pass
    for name in ('package.json', 'package-lock.json'):
        shutil.copyfile(os.path.join(ROOT, 'clients/node', name), os.path.join(prefix, name))
    argv = ['npm', 'ci', '--no-audit', '--no-fund', '--prefix', prefix]
    if os.path.isfile('/usr/include/node/common.gypi'):
        argv.append('--nodedir=/usr')  # node-gyp: this node's headers, no download
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        ping = subprocess.run(['npm', 'ping'], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
        if ping.returncode != 0:
            raise unittest.SkipTest('node client not tested: npm cannot reach its registry '
                                    f'(npm ping: {ping.stderr.strip()[-200:]})')
        raise AssertionError('npm ci of clients/node failed:\n' + '\n'.join(tail))
    with open(stamp, 'wb') as f:
        f.write(lock)
    return os.path.join(prefix, 'node_modules')


if __name__ == '__main__':
    # Exit 77 (ctest SKIP_RETURN_CODE) when everything was skipped, so a
    # skip shows in ctest's summary instead of passing silently.
    res = unittest.main(exit=False, verbosity=2).result
    ran = res.testsRun - sum(isinstance(t, unittest.TestCase) for t, _ in res.skipped)
    sys.exit(1 if not res.wasSuccessful() else 77 if res.skipped and ran <= 0 else 0)
