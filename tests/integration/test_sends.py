"""Issue 11, sends that survive a crash: the real xpbridge with a state
directory against Prosody (mod_smacks), alice and carol as slixmpp persons.
An accepted send is in the outbox before it is answered and is sent again
after kill -9 (same id, an origin-id equal to it); a restart within the
resumption timeout resumes the XEP-0198 stream; a full state directory
refuses sends with ERR_STORAGE while received stanzas are still relayed;
`xpbctl send --wait acked|received` (XEP-0184 receipts, from the addressee
only); a message's delivery states arrive in order."""
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

from xpbtest import env, procs
from xpbtest.bridge import Bridge, RichPerson, xpbctl_path, xpbridge_path
from xpbtest.certs import DOMAIN
from xpbtest.servers import Prosody

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BOT = f'bot@{DOMAIN}'
ALICE = f'alice@{DOMAIN}'
CAROL = f'carol@{DOMAIN}'
N_KILL = 1000


def setUpModule():
    for name, path in (('XPBRIDGE', xpbridge_path()), ('XPBCTL', xpbctl_path())):
        if not path or not os.access(path, os.X_OK):
            if os.environ.get(name):
                raise FileNotFoundError(f'{name}={path} is not executable')
            raise unittest.SkipTest(f'{name.lower()} not built (set {name})')
    sys.path.insert(0, os.path.join(ROOT, 'clients', 'python'))


def outcome(ev):
    return (ev.get('delivery') or {}).get('outcome')


class Sends(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import xpbridge
        cls.xpb = xpbridge
        cls.stack = []
        cls.addClassCleanup(cls._cleanup)
        cls.srv = Prosody(env.scratch('prosody'), env.pki(),
                          debug=bool(os.environ.get('XPB_DEBUG_SERVER')))
        cls.srv.start()
        cls.stack.append(cls.srv.stop)
        for user in ('bot', 'alice', 'carol'):
            cls.srv.register(user, f'{user}-pw')
        cls.alice = RichPerson(ALICE, 'alice-pw', env.pki().ca, cls.srv.ports['c2s'])
        cls.stack.append(cls.alice.stop)
        cls.alice.start()
        cls.alice._call(lambda: cls.alice._client.register_plugin('xep_0184'))  # auto-acks

    @classmethod
    def _cleanup(cls):
        while cls.stack:
            try:
                cls.stack.pop()()
            except Exception as e:  # keep stopping the rest
                print(f'cleanup: {e}')

    def new_bridge(self, state, workdir):
        b = Bridge(workdir, BOT, 'bot-pw', '127.0.0.1', self.srv.ports['c2s'], env.pki().ca,
                   extra=('--state-dir', state, '--metrics',
                          f'127.0.0.1:{procs.free_ports(1)[0]}'))
        b.metrics_addr = b.argv[b.argv.index('--metrics', b.argv.index('--state-dir')) + 1]
        self.addCleanup(b.stop)
        return b

    def metrics(self, b):
        text = urllib.request.urlopen(f'http://{b.metrics_addr}/metrics', timeout=10).read()
        return {k: int(v) for k, v in (line.split(' ', 1) for line in text.decode().splitlines()
                                       if line.startswith(('xpb_sends', 'xpb_outbox',
                                                           'xpb_storage', 'xpb_receipts')))}

    def client(self, b):
        c = self.xpb.Bridge(b.events, b.requests, timeout=10)
        self.addCleanup(c.close)
        return c

    def kill9(self, b):
        os.killpg(b.proc.pid, signal.SIGKILL)
        b.proc.wait(10)
        b.proc = None

    def test_kill9_with_sends_in_flight_loses_none(self):
        work = env.scratch('bridge')
        state = os.path.join(work, 'state')
        b = self.new_bridge(state, work)
        b.start()
        c = self.client(b)
        accepted, lock, stop = [], threading.Lock(), threading.Event()

        def sender(k):  # four senders, so that many are unacknowledged at the kill
            cl = self.xpb.Bridge(b.events, b.requests, timeout=10, retries=0)
            try:
                i = k
                while not stop.is_set():
                    body = f'kill-{i}'
                    try:
                        r = cl.send(BOT, to=ALICE, body=body)
                    except Exception:  # the bridge was killed under us
                        return
                    with lock:  # answered OK: accepted (even past N_KILL, until the kill)
                        accepted.append((body, r.stanza_id))
                        if len(accepted) == N_KILL // 2:
                            # The server stops reading: the second half stays unacknowledged.
                            os.kill(self.srv.proc.pid, signal.SIGSTOP)
                        if len(accepted) >= N_KILL:
                            stop.set()
                    i += 4
            finally:
                cl.close()
        self.addCleanup(lambda: os.kill(self.srv.proc.pid, signal.SIGCONT))
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        stop.wait(120)
        self.kill9(b)  # right after the 1,000th OK answer
        os.kill(self.srv.proc.pid, signal.SIGCONT)
        for t in threads:
            t.join(20)
        self.assertGreaterEqual(len(accepted), N_KILL)
        ids = dict(accepted)

        b2 = self.new_bridge(state, work)
        b2.start(online_timeout=None)
        try:
            self._all_arrive_after_restart(b2, ids, accepted)
        except AssertionError:  # say why: what the second bridge and the server did
            print(f'\nsecond bridge, last 60 log lines:\n'
                  f'{chr(10).join(b2.log_lines(b2._log_mark)[-60:])}\n'
                  f'Prosody, last 30 log lines:\n{self.srv.log_tail(30)}', file=sys.stderr)
            raise

    def test_resent_request_after_kill9_is_not_sent_twice(self):
        """A client whose send was accepted right before kill -9 (no answer
        reached it) resends the same request id to the restarted bridge: it
        gets the kept stanza's id, and alice gets the message under that id
        only (the bridge sends the kept one again; no copy with a new id)."""
        work = env.scratch('bridge-rid')
        state = os.path.join(work, 'state')
        b = self.new_bridge(state, work)
        b.start()
        c = self.client(b)
        os.kill(self.srv.proc.pid, signal.SIGSTOP)  # nothing is acknowledged
        self.addCleanup(lambda: os.kill(self.srv.proc.pid, signal.SIGCONT))
        try:
            first = c.send(BOT, to=ALICE, body='rid-once', request_id='rid-after-kill9')
            self.kill9(b)
        finally:
            os.kill(self.srv.proc.pid, signal.SIGCONT)
        b2 = self.new_bridge(state, work)
        b2.start(online_timeout=None)
        c2 = self.client(b2)
        again = c2.send(BOT, to=ALICE, body='rid-once', request_id='rid-after-kill9')
        self.assertEqual(again.stanza_id, first.stanza_id)
        text = urllib.request.urlopen(f'http://{b2.metrics_addr}/metrics', timeout=10).read()
        restored = re.search(rb'^xpb_bus_dedupe_restored_total (\d+)$', text, re.M)
        self.assertIsNotNone(restored, 'xpb_bus_dedupe_restored_total is not in /metrics')
        self.assertGreaterEqual(int(restored.group(1)), 1)
        size = re.search(rb'^xpb_bus_dedupe_size (\d+)$', text, re.M)
        self.assertIsNotNone(size, 'xpb_bus_dedupe_size is not in /metrics')
        self.assertGreaterEqual(int(size.group(1)), 1)  # the restored answer at least
        self.wait_up(b2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.alice.messages('rid-once'):
            time.sleep(0.2)
        time.sleep(2)  # any later copy
        got = self.alice.messages('rid-once')
        self.assertTrue(got, 'the kept send never arrived')
        self.assertEqual({m['id'] for m in got}, {first.stanza_id}, got)

    def _all_arrive_after_restart(self, b2, ids, accepted):
        self.wait_up(b2)
        c = self.client(b2)
        kept = re.search(r'(\d+) unacknowledged sends kept', '\n'.join(b2.log_lines()))
        in_flight = int(kept.group(1)) if kept else 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            got = self.alice.messages('kill-')
            if not set(ids) - {m['body'] for m in got}:
                break
            time.sleep(0.2)
        bodies = collections.Counter(m['body'] for m in got)
        missing = sorted(set(ids) - set(bodies))
        self.assertEqual(missing, [], f'{len(missing)} accepted sends never arrived')
        dups = sum(n - 1 for n in bodies.values())
        for m in got:  # a duplicate is the same stanza: the same id
            if m['body'] in ids:
                self.assertEqual(m['id'], ids[m['body']], m)
        print(f'\nkill -9 after {len(accepted)} accepted sends: {in_flight} were in the outbox '
              f'(unacknowledged) and sent again; alice got {len(got)} messages, {dups} '
              f'duplicates (same id)', file=sys.stderr)
        # Half of them at least were sent while the server did not read: the
        # outbox had them, and the restart sent them again.
        self.assertGreaterEqual(in_flight, N_KILL // 2 - 10)
        m = self.metrics(b2)
        self.assertEqual(m['xpb_sends_resent_total'], in_flight)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self._outbox_empty(c, b2):
            time.sleep(0.5)
        self.assertTrue(self._outbox_empty(c, b2))
        self.assertEqual(self.metrics(b2)['xpb_outbox_sends'], 0)

    def wait_up(self, b, timeout=30):
        """Online again: resumed (XEP-0198) or bound afresh."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in b.log_lines(b._log_mark):
                if f'session {BOT} resumed as ' in line or f'session {BOT} online as ' in line:
                    return line
            time.sleep(0.1)
        self.fail(f'bridge not online again within {timeout}s:\n{b.log_tail()}')

    def _outbox_empty(self, c, b):
        st = [s for s in c.sessions() if s.account == BOT]
        return bool(st) and st[0].unacked == 0 and st[0].queued == 0

    def test_quick_restart_resumes_the_stream(self):
        work = env.scratch('bridge')
        state = os.path.join(work, 'state')
        b = self.new_bridge(state, work)
        jid1 = b.start()
        c = self.client(b)
        c.send(BOT, to=ALICE, body='before-restart')
        self.alice.wait_messages(1, body_prefix='before-restart')
        time.sleep(1)  # an ack round, so the h the server knows is kept
        self.kill9(b)  # no </stream>: the server keeps the session for resumption
        b2 = self.new_bridge(state, work)
        b2.start(online_timeout=None)
        line = b2.wait_log(f'session {BOT} resumed as ', 30)
        self.assertIn(jid1, line)
        c2 = self.client(b2)
        c2.send(BOT, to=ALICE, body='after-resume')
        self.assertTrue(self.alice.wait_messages(1, body_prefix='after-resume'))

    def test_second_bridge_on_the_same_dir_refused(self):
        work = env.scratch('bridge')
        state = os.path.join(work, 'state')
        b = self.new_bridge(state, work)
        b.start()
        r = subprocess.run(b.argv, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(f'state directory {state} is in use by another xpbridge (pid {b.proc.pid},',
                      r.stderr)
        self.assertTrue(b.alive())

    def test_full_state_dir_refuses_sends_but_relays(self):
        if os.geteuid() != 0:
            self.skipTest('needs root to mount a small tmpfs')
        work = env.scratch('bridge')
        state = os.path.join(work, 'small')
        os.mkdir(state, 0o700)
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', state],
                           capture_output=True)
        if r.returncode != 0:
            self.skipTest(f'cannot mount a tmpfs: {r.stderr!r}')
        self.addCleanup(subprocess.run, ['umount', '-l', state])
        b = self.new_bridge(state, work)
        b.start()
        c = self.client(b)
        c.send(BOT, to=ALICE, body='room-left')
        filler = os.path.join(state, 'filler')
        subprocess.run(['dd', 'if=/dev/zero', f'of={filler}', 'bs=4k'], capture_output=True)
        refused = None
        for i in range(200):
            try:
                c.send(BOT, to=ALICE, body=f'full-{i}-' + 'x' * 2000)
            except self.xpb.BusError as e:
                refused = e
                break
        self.assertIsNotNone(refused, 'no send was refused on a full state directory')
        self.assertEqual(refused.name, 'ERR_STORAGE')
        self.assertIn(state, refused.text)
        self.assertIn('state directory full', refused.text)
        self.assertGreaterEqual(self.metrics(b)['xpb_storage_refusals_total'], 1)
        # Inbound stanzas still reach a subscriber.
        t = b.tail('--kind', 'message', '--account', BOT)
        self.addCleanup(lambda: t.proc.kill())
        t.sync(lambda i: self.alice.send(BOT, f'still-relayed-{i}'),
               lambda i: lambda e: ((e.get('stanza') or {}).get('body') or [{}])[0].get('text')
               == f'still-relayed-{i}')
        # Room again: sends are accepted again.
        os.unlink(filler)
        c.send(BOT, to=ALICE, body='after-room')
        self.assertTrue(self.alice.wait_messages(1, body_prefix='after-room'))

    def ctl(self, b, *args, timeout=60):
        return subprocess.run([xpbctl_path(), *args, '--events', b.events, '--requests',
                               b.requests], capture_output=True, text=True, timeout=timeout)

    def test_wait_received_acked_and_states_in_order(self):
        work = env.scratch('bridge')
        b = self.new_bridge(os.path.join(work, 'state'), work)
        b.start()
        t = b.tail('--kind', 'delivery')
        self.addCleanup(lambda: t.proc.kill())
        r = self.ctl(b, 'send', '--account', BOT, '--to', ALICE, '--wait', 'received',
                     '--timeout', '30000', '--id', 'wait-rcv-1', 'receipt please')
        self.assertEqual(r.returncode, 0, r)
        self.assertIn('wait-rcv-1 received', r.stdout)
        r = self.ctl(b, 'send', '--account', BOT, '--to', ALICE, '--wait', 'acked',
                     '--timeout', '30000', '--id', 'wait-ack-1', 'acked please')
        self.assertEqual(r.returncode, 0, r)
        self.assertIn('wait-ack-1 acked', r.stdout)
        # One delivery state per step, in order, for the message with a receipt.
        evs = t.wait(lambda e: (e.get('delivery') or {}).get('stanza_id') == 'wait-rcv-1', n=4,
                     timeout=20)
        self.assertEqual([outcome(e) for e in evs], ['OUTCOME_QUEUED', 'OUTCOME_SENT',
                                                     'OUTCOME_ACKED', 'OUTCOME_RECEIVED'])
        acked = evs[2]['delivery']
        self.assertTrue(acked['stanza']['from'].startswith(BOT + '/'), acked)
        self.assertEqual(acked['stanza'].get('origin_id'), 'wait-rcv-1')
        self.assertTrue(acked['stanza'].get('receipt_request'))
        # A receipt from someone else than the addressee does not count.
        carol = RichPerson(CAROL, 'carol-pw', env.pki().ca, self.srv.ports['c2s'])
        self.addCleanup(carol.stop)
        carol.start()
        r = self.ctl(b, 'send', '--account', BOT, '--to', CAROL, '--receipt', '--id',
                     'spoof-1', 'no receipt from carol')
        self.assertEqual(r.returncode, 0, r)
        carol.wait_messages(1, body_prefix='no receipt')
        self.alice.send_raw(f"<message to='{BOT}'><received xmlns='urn:xmpp:receipts' "
                            "id='spoof-1'/></message>")
        b.wait_log('receipt for spoof-1 from', 15)
        time.sleep(0.5)
        self.assertEqual(t.find(lambda e: (e.get('delivery') or {}).get('stanza_id') == 'spoof-1'
                                and outcome(e) == 'OUTCOME_RECEIVED'), [])
        # --wait received times out without a receipt: exit 3 and a clear message.
        r = self.ctl(b, 'send', '--account', BOT, '--to', CAROL, '--wait', 'received',
                     '--timeout', '3000', 'carol sends no receipts')
        self.assertEqual(r.returncode, 3, r)
        self.assertIn('did not reach the delivery state received', r.stderr)


if __name__ == '__main__':
    unittest.main()
