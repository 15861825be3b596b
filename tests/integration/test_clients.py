"""Issue 15, item 7: the client libraries in clients/ against a live
xpbridge and Prosody on 127.0.0.1. Each runs its echo-bot example as a
separate process (an account the bridge was started with, no `open`); a
slixmpp person sends a message and must get the same body back. The Python
class also drives the library's requests (status, sessions, send) and its
error mapping against the real bridge. Every process is stopped by PID in
cleanup, pass or fail.

PythonClient needs XPB_PY_GEN (the protoc output, made by the build).
NodeClient needs XPB_NODE_MODULES (node_modules installed from
clients/node/package-lock.json by the build's npm ci); it skips, saying why,
only when that install was impossible (XPB_NODE_SKIP holds the reason)."""
import os
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


class EchoMixin:
    """Subclasses give bot_argv() and bot_env()."""

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
                                cls.srv.ports['c2s'], env.pki().ca)
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
        sys.path.insert(0, os.path.join(ROOT, 'clients', 'python'))
        import xpbridge
        cls.xpb = xpbridge
        super().setUpClass()

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


class NodeClient(EchoMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        skip = os.environ.get('XPB_NODE_SKIP')
        if skip:
            raise unittest.SkipTest(f'node client not tested: {skip}')
        mods = os.environ.get('XPB_NODE_MODULES')
        if not mods or not os.path.isdir(os.path.join(mods, 'nanomsg')):
            raise FileNotFoundError(f'XPB_NODE_MODULES={mods} has no nanomsg: run the build\'s '
                                    'npm ci (target xpb_node_deps)')
        super().setUpClass()

    def bot_argv(self):
        return ['node', os.path.join(ROOT, 'clients/node/examples/echo_bot.js')]

    def bot_env(self):
        return {'NODE_PATH': os.environ['XPB_NODE_MODULES']}


if __name__ == '__main__':
    unittest.main()
