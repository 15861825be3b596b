"""Issue 11, the state directory: the real xpbridge with --state-dir against
Prosody, alice (slixmpp) writing to it. Every published event is in the
journal first; `xpbctl tail --resume-file` replays what came after its seq,
then follows live, and a second run gets only what is new; after kill -9 the
bridge reopens the same journal (same id) and its seqs go on; without a state
directory Replay answers ERR_NO_JOURNAL; an unwritable state directory stops
the start with the directory and the reason named."""
import json
import os
import re
import signal
import subprocess
import time
import unittest
import urllib.request

from xpbtest import env, procs
from xpbtest.bridge import Bridge, RichPerson, xpbctl_path, xpbridge_path
from xpbtest.certs import DOMAIN
from xpbtest.servers import Prosody

BOT = f'bot@{DOMAIN}'
ALICE = f'alice@{DOMAIN}'


def setUpModule():
    for name, path in (('XPBRIDGE', xpbridge_path()), ('XPBCTL', xpbctl_path())):
        if not path or not os.access(path, os.X_OK):
            if os.environ.get(name):
                raise FileNotFoundError(f'{name}={path} is not executable')
            raise unittest.SkipTest(f'{name.lower()} not built (set {name})')


def tail_resume(bridge, resume, count, timeout=20, extra=()):
    """`xpbctl tail --json --resume-file F --kind message --count N`: the events."""
    r = subprocess.run([xpbctl_path(), 'tail', '--json', '--events', bridge.events,
                        '--requests', bridge.requests, '--resume-file', resume,
                        '--kind', 'message', '--count', str(count), *extra],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f'tail exited {r.returncode}: {r.stderr}')
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{"seq"')]


def kept_h(bridge):
    """The h of the newest XEP-0198 state the bridge kept (debug log), or None."""
    hs = [m.group(1) for m in (re.search(r'XEP-0198 state kept \(h ([0-9]+)', l)
                               for l in bridge.log_lines()) if m]
    return int(hs[-1]) if hs else None


def bodies(events):
    return [e['stanza']['body'][0]['text'] for e in events]


class Durability(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = []
        cls.addClassCleanup(cls._cleanup)
        cls.srv = Prosody(env.scratch('prosody'), env.pki())
        cls.srv.start()
        cls.stack.append(cls.srv.stop)
        for user in ('bot', 'alice', 'bot2'):
            cls.srv.register(user, f'{user}-pw')
        cls.alice = RichPerson(ALICE, 'alice-pw', env.pki().ca, cls.srv.ports['c2s'])
        cls.stack.append(cls.alice.stop)
        cls.alice.start()

    @classmethod
    def _cleanup(cls):
        while cls.stack:
            try:
                cls.stack.pop()()
            except Exception as e:  # keep stopping the rest
                print(f'cleanup: {e}')

    def new_bridge(self, jid=BOT, pw='bot-pw', state=None, workdir=None, metrics=None):
        extra = ('--state-dir', state) if state else ()
        if metrics:
            extra += ('--metrics', f'127.0.0.1:{metrics}')
        b = Bridge(workdir or env.scratch('bridge'), jid, pw, '127.0.0.1',
                   self.srv.ports['c2s'], env.pki().ca, extra=extra)
        self.addCleanup(b.stop)
        return b

    def test_resume_file_replays_then_follows_and_survives_kill9(self):
        work = env.scratch('bridge')
        state = os.path.join(work, 'state')
        port = procs.free_ports(1)[0]
        b = self.new_bridge(state=state, workdir=work, metrics=port)
        b.start()
        log = '\n'.join(b.log_lines())
        self.assertIn('state: ', log)
        journal_id = log.split(', journal ')[1].split(',')[0]
        self.assertRegex(journal_id, r'^[0-9a-f]{32}$')
        resume = os.path.join(work, 'tail.seq')

        first = [f'durable-{i}' for i in range(5)]
        for t in first:
            self.alice.send(BOT, t)
        # Nobody was subscribed: all five come from the journal, in order.
        got = tail_resume(b, resume, 5)
        self.assertEqual(bodies(got), first)
        seqs = [int(e['seq']) for e in got]
        self.assertEqual(seqs, sorted(seqs))
        with open(resume) as f:
            rid, rseq = f.read().split()
        self.assertEqual(rid, journal_id)
        self.assertEqual(int(rseq), seqs[-1])
        # /metrics shows the journal: what it keeps and the replays served.
        m = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=10).read().decode()
        figures = dict(line.split(' ', 1) for line in m.splitlines()
                       if line.startswith('xpb_journal_'))
        self.assertGreaterEqual(int(figures['xpb_journal_last_seq']), seqs[-1])
        self.assertGreaterEqual(int(figures['xpb_journal_appended_total']), 5)
        self.assertGreaterEqual(int(figures['xpb_journal_replays_total']), 1)
        self.assertEqual(int(figures['xpb_journal_oldest_seq']), 1)
        self.assertEqual(int(figures['xpb_journal_append_errors_total']), 0)

        # A second reader run gets only what is new, exactly once.
        time.sleep(0.5)  # the XEP-0198 h of everything so far is kept
        h0 = kept_h(b)
        self.assertIsNotNone(h0)
        second = [f'durable-{i}' for i in range(5, 8)]
        for t in second:
            self.alice.send(BOT, t)
        got2 = tail_resume(b, resume, 3)
        self.assertEqual(bodies(got2), second)
        self.assertGreater(int(got2[0]['seq']), seqs[-1])
        # The h counting them is kept within XPB_DAEMON_SM_SAVE_MS (10 ms) of
        # their arrival; a kill -9 sooner gets them again from the resumed
        # stream (at least once, docs/durability.md): wait for the save.
        deadline = time.monotonic() + 10
        while (kept_h(b) or 0) < h0 + 3:
            self.assertLess(time.monotonic(), deadline, f'h stays at {kept_h(b)}, not {h0 + 3}')
            time.sleep(0.01)

        # kill -9: the same journal reopens and seqs go on.
        os.killpg(b.proc.pid, signal.SIGKILL)
        b.proc.wait(10)
        b.proc = None
        mark_path = b.log_path
        b2 = self.new_bridge(state=state, workdir=work)
        b2.start()
        log2 = '\n'.join(b2.log_lines())
        self.assertIn(f'journal {journal_id}', log2)
        self.alice.send(BOT, 'durable-after-kill')
        got3 = tail_resume(b2, resume, 1)
        self.assertEqual(bodies(got3), ['durable-after-kill'])
        self.assertGreater(int(got3[0]['seq']), int(got2[-1]['seq']))
        # From seq 1 again (--from-seq wins over the file): everything, once each.
        every = tail_resume(b2, os.path.join(work, 'other.seq'), 9, extra=('--from-seq', '1'))
        self.assertEqual(bodies(every), first + second + ['durable-after-kill'])
        self.assertEqual(len({e['seq'] for e in every}), 9)
        self.assertTrue(os.path.exists(mark_path))

    def test_no_state_dir_means_no_journal(self):
        b = self.new_bridge(jid=f'bot2@{DOMAIN}', pw='bot2-pw')
        b.start()
        self.assertIn('state: memory only', '\n'.join(b.log_lines()))
        r = subprocess.run([xpbctl_path(), 'tail', '--json', '--events', b.events, '--requests',
                            b.requests, '--from-seq', '1', '--count', '1'],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('ERR_NO_JOURNAL', r.stderr)
        self.assertIn('state directory', r.stderr)

    def test_unwritable_state_dir_stops_the_start(self):
        work = env.scratch('bridge')
        state = os.path.join(work, 'ro')
        os.mkdir(state, 0o700)
        mounted = False
        if os.geteuid() == 0:
            r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', state],
                               capture_output=True)
            if r.returncode != 0:
                self.skipTest(f'cannot mount a read-only tmpfs: {r.stderr!r}')
            mounted = True
            self.addCleanup(subprocess.run, ['umount', state])
        else:
            os.chmod(state, 0o500)
        r = subprocess.run([xpbridge_path(), '--jid', BOT, '--password-file', '/dev/null',
                            '--state-dir', state, '--events', f'ipc://{work}/e',
                            '--requests', f'ipc://{work}/r', '--metrics', '0'],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(f'state directory: state directory {state}', r.stderr)
        self.assertTrue('not writable' in r.stderr or 'read-only' in r.stderr, r.stderr)
        self.assertTrue(mounted or os.geteuid() != 0)



if __name__ == '__main__':
    unittest.main()
