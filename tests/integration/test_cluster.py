"""Issue 14, many bridges over NATS JetStream: a 3-node nats-server cluster
(Debian's nats-server, 127.0.0.1, free ports, own store dirs, stopped by
PID), Prosody with the accounts, and xpbridge processes on bus.backend =
"nats" that share every account by KV leases.

- losing a bridge: kill -9 one of 3 bridges while people and a backend
  exchange messages; its accounts are online again on the others within
  20 s, no message is lost either way (duplicates are counted and shown),
  and no account came up elsewhere before the dead bridge's claim lapsed;
- partition: the NATS node of one bridge is paused (SIGSTOP); that bridge
  stops renewing and closes its sessions before its claims lapse; the other
  bridge takes them over only after each one was closed;
- losing a NATS node: kill -9 one node during traffic; nothing is lost and
  every account is online again;
- rolling restart: each bridge in turn stops cleanly and starts again during
  traffic; nothing is lost, no account is online twice;
- ClusterCatchup: a takeover that cannot resume catches up from the dead
  bridge's MAM marker in NATS KV (xpb_marks): nothing lost, nothing of the
  dead bridge published again;
- ClusterArchive: xpb-archive run --nats, killed mid-stream, archives every
  message exactly once;
- ClusterShards: the same kill -9 with the accounts leased in shards.

XPB_CLUSTER_LONG=1 runs the issue's full size (150 accounts, 3,000 messages).
"""
import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest

from xpbtest import env, procs
from xpbtest.bridge import RichPerson, xpbctl_path, xpbridge_path
from xpbtest.certs import DOMAIN
from xpbtest.nats import ClusterBridge, NatsCluster, TcpProxy, nats_server_path
from xpbtest.servers import Prosody

LONG = os.environ.get('XPB_CLUSTER_LONG') == '1'
N_ACCOUNTS = 150 if LONG else 24
N_MESSAGES = 1500 if LONG else 120  # each way
N_PEOPLE = 3
TTL_S = 10
TS = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z')


def setUpModule():
    for name, path in (('XPBRIDGE', xpbridge_path()), ('XPBCTL', xpbctl_path())):
        if not path or not os.access(path, os.X_OK):
            if os.environ.get(name):
                raise FileNotFoundError(f'{name}={path} is not executable')
            raise unittest.SkipTest(f'{name.lower()} not built (set {name})')
    if not nats_server_path():
        raise unittest.SkipTest('nats-server is not installed (apt-get install nats-server)')


def log_time(line):
    m = TS.match(line)
    return time.mktime(time.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S')) if m else None


def events_of(bridge, text):
    """{account: [epoch seconds]} of the bridge's log lines 'session A ...text'
    or 'leases: A ...text'."""
    out = {}
    for line in bridge.log_lines():
        if text not in line:
            continue
        m = re.search(r'(?:session|leases:) (\S+?@\S+?)[: ]', line)
        if m:
            out.setdefault(m.group(1), []).append(log_time(line))
    return out


class EventCounter:
    """`xpbctl tail --nats --durable NAME --kind message --json` on a reader
    thread: every message event's (account, body), duplicates counted."""

    def __init__(self, urls, durable):
        self.seen, self.dups, self.lock = {}, 0, threading.Lock()
        argv = [xpbctl_path(), 'tail', '--nats', ','.join(urls), '--durable', durable,
                '--kind', 'message', '--json']
        self.proc = procs.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
                key = (ev['account'], ev['stanza']['body'][0]['text'])
            except (ValueError, KeyError, IndexError):
                continue
            with self.lock:
                self.dups += key in self.seen
                self.seen[key] = self.seen.get(key, 0) + 1

    def bodies(self):
        with self.lock:
            return {b for _, b in self.seen}

    def wait_for(self, bodies, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if bodies <= self.bodies():
                return set()
            time.sleep(0.2)
        return bodies - self.bodies()

    def stop(self):
        procs.kill_group(self.proc, term_timeout=2)
        self.proc.stdout.close()
        self.proc.stderr.close()


class ClusterBase(unittest.TestCase):
    """Prosody with the accounts and the people; a fresh NATS cluster per test."""
    PROSODY_KW = {}

    @classmethod
    def setUpClass(cls):
        cls.stack = []
        cls.addClassCleanup(cls._cleanup)
        cls.srv = Prosody(env.scratch('prosody'), env.pki(), **cls.PROSODY_KW)
        cls.srv.start()
        cls.stack.append(cls.srv.stop)
        users = cls.srv.register_many(N_ACCOUNTS, prefix='acct', password='pw')
        cls.accounts = [(f'{u}@{DOMAIN}', p) for u, p in users]
        cls.people = []
        for i in range(N_PEOPLE):
            cls.srv.register(f'person{i}', 'person-pw')
            p = RichPerson(f'person{i}@{DOMAIN}', 'person-pw', env.pki().ca,
                           cls.srv.ports['c2s'])
            cls.stack.append(p.stop)
            p.start()
            cls.people.append(p)

    @classmethod
    def _cleanup(cls):
        while cls.stack:
            try:
                cls.stack.pop()()
            except Exception as e:  # keep stopping the rest
                print(f'cleanup: {e}')

    def setUp(self):
        self.nats = NatsCluster(env.scratch('nats'), n=3).start()
        self.addCleanup(self.nats.stop)

    # XEP-0198 on: each account's stream state and unacknowledged sends are
    # kept in NATS KV, so the bridge that takes a killed bridge's account
    # over resumes its hibernating stream (docs/scaling.md).
    SM = True

    def bridge(self, name, urls=None, extra=''):
        b = ClusterBridge(env.scratch(name), name, urls or self.nats.urls, self.accounts,
                          self.srv.ports['c2s'], env.pki().ca, ttl_s=TTL_S,
                          stream_management=self.SM, extra_nats='replicas = 3; ' + extra)
        self.addCleanup(b.stop)
        return b.start()

    def wait_all_online(self, bridges, timeout, what):
        deadline = time.monotonic() + timeout
        want = {j for j, _ in self.accounts}
        while time.monotonic() < deadline:
            sets = [b.online() for b in bridges]
            union = set().union(*sets)
            if union == want and sum(len(s) for s in sets) == len(want):
                return time.monotonic()
            time.sleep(0.2)
        got = [len(b.online()) for b in bridges]
        self.fail(f'{what}: not all {len(want)} accounts online within {timeout}s '
                  f'(per bridge {got})')

    # -- traffic ---------------------------------------------------------------
    def inbound(self, tag, n, pause):
        """People write to the accounts: n messages 'TAG-in-K'."""
        bodies = set()
        for k in range(n):
            acc = self.accounts[k % len(self.accounts)][0]
            body = f'{tag}-in-{k}'
            self.people[k % N_PEOPLE].send(acc, body)
            bodies.add(body)
            time.sleep(pause)
        return bodies

    def outbound(self, tag, n, errors, accounts=None):
        """The backend writes to the people through xpbctl send --nats: n
        messages 'TAG-out-K', each retried with the same request id until a
        bridge that owns the account answers OK (NATS says "no responders"
        while nobody owns it)."""
        accounts = accounts or [j for j, _ in self.accounts]
        for k in range(n):
            acc = accounts[k % len(accounts)]
            to = self.people[k % N_PEOPLE].jid_bare
            argv = [xpbctl_path(), 'send', '--nats', ','.join(self.nats.urls), '--timeout',
                    '3000', '--request-id', f'{tag}-{k}', '--account', acc, '--to', to,
                    f'{tag}-out-{k}']
            deadline = time.monotonic() + 60
            while True:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
                if r.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    errors.append(f'{tag}-out-{k}: {r.stderr.strip()}')
                    break
                time.sleep(0.3)

    def received_out(self, tag):
        got, dups = set(), 0
        for p in self.people:
            for m in p.messages(f'{tag}-out-'):
                dups += m['body'] in got
                got.add(m['body'])
        return got, dups

    def check_nothing_lost(self, tag, counter, inb, n_out, errors):
        self.assertEqual(errors, [], 'sends that never got an OK')
        missing = counter.wait_for(inb, 60)
        self.assertEqual(missing, set(), f'inbound messages never published ({len(missing)})')
        want_out = {f'{tag}-out-{k}' for k in range(n_out)}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not want_out <= self.received_out(tag)[0]:
            time.sleep(0.3)
        got, dups = self.received_out(tag)
        self.assertEqual(want_out - got, set(), 'outbound messages never delivered')
        print(f'\n{tag}: {len(inb)} in, {n_out} out; duplicates: {counter.dups} events, '
              f'{dups} delivered messages')

    def wait_balanced(self, bridges, timeout):
        """Until the shares differ by one at most (bridges that start one
        after the other shed accounts to the later ones for a few rounds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = [len(b.online()) for b in bridges]
            if sum(n) == len(self.accounts) and max(n) - min(n) <= 1:
                return
            time.sleep(0.2)
        self.fail(f'accounts not spread evenly within {timeout}s: {n}')

    def assert_never_twice(self, bridges):
        """From the logs: an account's session on one bridge was removed
        before (second resolution: not after) another bridge claimed it."""
        for b in bridges:
            for acc, claims in events_of(b, ' claimed by ').items():
                for other in bridges:
                    if other is b:
                        continue
                    removed = events_of(other, ': removed').get(acc, [])
                    got = events_of(other, ' claimed by ').get(acc, [])
                    # each claim on b after a claim on other needs a removal in between
                    for c in claims:
                        before = [g for g in got if g <= c]
                        if before:
                            self.assertTrue(any(max(before) <= r <= c for r in removed),
                                            f'{acc}: claimed by {b.id} while {other.id} held it')


class Cluster(ClusterBase):
    def test_losing_a_bridge(self):
        bridges = [self.bridge(f'b{i}') for i in range(3)]
        self.wait_all_online(bridges, 60, 'start')
        self.wait_balanced(bridges, 60)
        counter = EventCounter(self.nats.urls, 'lose-bridge')
        self.addCleanup(counter.stop)
        errors, inb = [], set()
        out = threading.Thread(target=self.outbound, args=('kb', N_MESSAGES, errors))
        inn = threading.Thread(target=lambda: inb.update(self.inbound('kb', N_MESSAGES, 0.05)))
        out.start()
        inn.start()
        time.sleep(2)
        victim = bridges[0]
        moved = victim.online()
        self.assertTrue(moved, 'the victim owned no account')
        # Sends accepted but not acknowledged when the bridge dies: with the
        # XMPP server paused, the victim answers OK once NATS KV keeps a send
        # (xpb_outbox) but gets no XEP-0198 ack; the new owner must resend.
        pending = sorted(moved)[:4]
        os.kill(self.srv.proc.pid, signal.SIGSTOP)
        try:
            self.outbound('kbp', len(pending), errors, accounts=pending)
            kill_t, kill_wall = time.monotonic(), time.time()
            victim.kill()
        finally:
            os.kill(self.srv.proc.pid, signal.SIGCONT)
        back = self.wait_all_online(bridges[1:], 20, 'after kill -9 of a bridge')
        print(f'\nfailover: {len(moved)} accounts back in {back - kill_t:.1f}s')
        # No account online twice: every moved account was claimed on a
        # survivor only after the victim's claim could have lapsed (claims
        # from before the kill, when the shares settled, do not count).
        for b in bridges[1:]:
            for acc, times in events_of(b, ' claimed by ').items():
                if acc in moved:
                    for t in times:
                        if t >= int(kill_wall):
                            self.assertGreaterEqual(t, int(kill_wall) + 2,
                                                    f'{acc} taken over too early on {b.id}')
        self.assert_never_twice(bridges[1:])
        out.join(300)
        inn.join(300)
        self.check_nothing_lost('kb', counter, inb, N_MESSAGES, errors)
        self.check_nothing_lost('kbp', counter, set(), len(pending), errors)
        # The new owners resumed the dead bridge's streams (state from NATS
        # KV xpb_sm) and read its unacknowledged sends (xpb_outbox).
        resumed, kept = set(), 0
        for b in bridges[1:]:
            for line in b.log_lines():
                m = re.search(r'session (\S+) resumed as ', line)
                if m and m.group(1) in moved:
                    resumed.add(m.group(1))
                m = re.search(r'session (\S+): from NATS KV: .*, (\d+) unacknowledged', line)
                if m and m.group(1) in moved:
                    kept += int(m.group(2))
        self.assertEqual(moved - resumed, set(), 'streams not resumed by the new owner')
        self.assertGreaterEqual(kept, len(pending), 'unacknowledged sends not read from KV')
        print(f'{len(resumed)} streams resumed, {kept} unacknowledged sends resent')

    def test_partition_closes_sessions_before_the_ttl(self):
        proxy = TcpProxy(self.nats.client[0])
        self.addCleanup(proxy.stop)
        lonely = self.bridge('p0', urls=[proxy.url], extra='only_listed_servers = true;')
        other = self.bridge('p1', urls=self.nats.urls[1:])
        self.wait_all_online([lonely, other], 60, 'start')
        cut = lonely.online()
        self.assertTrue(cut, 'the bridge to cut off owned no account')
        proxy.pause()
        try:
            deadline = time.monotonic() + TTL_S
            while lonely.online() and time.monotonic() < deadline:
                time.sleep(0.2)
            self.assertEqual(lonely.online(), set(), 'sessions still open at the ttl')
            self.wait_all_online([lonely, other], TTL_S + 20, 'after the partition')
            closed = events_of(lonely, ': removed')
            claimed = events_of(other, ' claimed by ')
            for acc in cut:
                self.assertIn(acc, closed, f'{acc} never closed on the cut-off bridge')
                # second resolution: the close (<= 8/10 of the ttl) must come
                # before the new owner's claim (>= the ttl)
                self.assertLess(max(closed[acc]), max(claimed[acc]),
                                f'{acc} claimed by p1 before p0 closed it')
            deadline_closes = [ln for ln in lonely.log_lines() if 'not renewed in time' in ln]
            self.assertGreaterEqual(len(deadline_closes), len(cut))
        finally:
            proxy.resume()

    def test_losing_a_nats_node(self):
        """Node 0 dies. When it led the KV bucket, renewals stall for the Raft
        election (4-9 s in nats-server 2.9) and the bridges may close and claim
        sessions again (never two at once); either way nothing is lost and
        every account is back online."""
        bridges = [self.bridge(f'n{i}') for i in range(2)]
        self.wait_all_online(bridges, 60, 'start')
        counter = EventCounter(self.nats.urls[1:], 'lose-node')
        self.addCleanup(counter.stop)
        errors, inb = [], set()
        out = threading.Thread(target=self.outbound, args=('kn', N_MESSAGES // 2, errors))
        inn = threading.Thread(target=lambda: inb.update(self.inbound('kn', N_MESSAGES, 0.05)))
        out.start()
        inn.start()
        time.sleep(1)
        self.nats.kill(0)
        out.join(300)
        inn.join(300)
        self.wait_all_online(bridges, 40, 'after losing a NATS node')
        for b in bridges:
            self.assertTrue(b.alive())
        self.check_nothing_lost('kn', counter, inb, N_MESSAGES // 2, errors)
        self.assert_never_twice(bridges)

    def test_rolling_restart(self):
        """Every bridge in turn stops cleanly (releasing its claims at once)
        and starts again under a new id, during traffic both ways."""
        bridges = [self.bridge(f'r{i}') for i in range(3)]
        everyone = list(bridges)
        self.wait_all_online(bridges, 60, 'start')
        counter = EventCounter(self.nats.urls, 'rolling')
        self.addCleanup(counter.stop)
        errors, inb = [], set()
        out = threading.Thread(target=self.outbound, args=('rr', N_MESSAGES, errors))
        inn = threading.Thread(target=lambda: inb.update(self.inbound('rr', N_MESSAGES, 0.05)))
        out.start()
        inn.start()
        for i in range(3):
            t0 = time.monotonic()
            self.assertEqual(bridges[i].stop(), 0, f'r{i} did not stop cleanly')
            bridges[i] = self.bridge(f'r{i}-again')
            everyone.append(bridges[i])
            back = self.wait_all_online(bridges, 30, f'after restarting r{i}')
            print(f'\nr{i} restarted: all accounts online after {back - t0:.1f}s')
        out.join(300)
        inn.join(300)
        self.check_nothing_lost('rr', counter, inb, N_MESSAGES, errors)
        self.assert_never_twice(everyone)



class ClusterCatchup(ClusterBase):
    """Markers and de-duplication across bridges (docs/scaling.md, "Markers
    and de-duplication in NATS KV"): Prosody with MAM (XEP-0313) keeps a
    broken stream resumable for 2 s only, so the bridge that takes a killed
    bridge's accounts over (after the 10 s ttl) cannot resume and binds
    afresh. People write to those accounts before the kill and all through
    the takeover; what reached the archive while no session was bound (the
    hibernating stream drops archived messages, XEP-0198 6 / mod_smacks) is
    only in the archive. The new owner reads the dead bridge's markers and
    seen stanza-ids from KV bucket xpb_marks, asks the archive for what
    came after them, and publishes every message once: nothing lost, none of
    the dead bridge's messages published again, duplicates counted."""
    PROSODY_KW = {'mam': True, 'resume_timeout': 2}

    def send_to(self, tag, accounts, n, pause, start=0):
        bodies = set()
        for k in range(start, start + n):
            body = f'{tag}-in-{k}'
            self.people[k % N_PEOPLE].send(accounts[k % len(accounts)], body)
            bodies.add(body)
            time.sleep(pause)
        return bodies

    def test_takeover_without_resumption_catches_up(self):
        bridges = [self.bridge(f'c{i}') for i in range(2)]
        self.wait_all_online(bridges, 60, 'start')
        self.wait_balanced(bridges, 60)
        victim, heir = bridges
        moved = sorted(victim.online())
        self.assertTrue(moved, 'the victim owned no account')
        counter = EventCounter(self.nats.urls, 'catchup')
        self.addCleanup(counter.stop)
        # Before the kill: published by the victim, its markers and seen ids
        # reach xpb_marks once JetStream acknowledged them (within a second).
        before = self.send_to('cb', moved, 3 * len(moved), 0.02)
        self.assertEqual(counter.wait_for(before, 60), set(), 'messages before the kill')
        time.sleep(2)
        mark = heir.log_mark()
        kill_t, kill_wall = time.monotonic(), time.time()
        victim.kill()
        during = set()
        writer = threading.Thread(target=lambda: during.update(
            self.send_to('cd', moved, 4 * len(moved), 0.15)))
        writer.start()
        back = self.wait_all_online([heir], 40, 'after kill -9 of a bridge')
        writer.join(120)
        after = self.send_to('ca', moved, len(moved), 0.02)
        missing = counter.wait_for(before | during | after, 60)
        self.assertEqual(missing, set(), f'messages never published ({len(missing)})')
        lines = heir.log_lines(mark)
        fresh = {acc for acc in moved
                 if any(f'session {acc} online as ' in ln for ln in lines)}
        caught = {acc for acc in moved if any(
            f'catch-up {acc} of {acc}: asking for what came after' in ln for ln in lines)}
        first = {acc for acc in moved if any(
            f'catch-up {acc} of {acc}: first run' in ln for ln in lines)}
        from_kv = {acc for acc in moved if any(
            f'session {acc}: from NATS KV: archive {acc} marker' in ln for ln in lines)}
        self.assertEqual(set(moved) - fresh, set(), 'accounts resumed: the test needs fresh binds')
        self.assertEqual(set(moved) - from_kv, set(), 'marks not read from xpb_marks')
        self.assertEqual(first, set(), 'catch-up started over without the dead owner\'s marker')
        self.assertEqual(set(moved) - caught, set(), 'no catch-up after the marker')
        with counter.lock:
            again = sorted(b for (_, b), n in counter.seen.items()
                           if n > 1 and b in before)
            dups = counter.dups
        self.assertEqual(again, [], 'the dead bridge\'s messages published again')
        archived = sum(int(m.group(1)) for ln in lines
                       for m in [re.search(r'done: (\d+) archived messages', ln)] if m)
        dropped = sum(int(m.group(1)) for ln in lines
                      for m in [re.search(r'\((\d+) duplicates dropped', ln)] if m)
        print(f'\ncatch-up: {len(moved)} accounts bound afresh {back - kill_t:.1f}s after the '
              f'kill; {len(during)} messages during the takeover, {archived} fetched from the '
              f'archive, {dropped} archive duplicates dropped; duplicate events: {dups}')
        for acc, times in events_of(heir, ' claimed by ').items():
            if acc in moved:  # only once the victim's claim could have lapsed
                for t in (t for t in times if t >= int(kill_wall)):
                    self.assertGreaterEqual(t, int(kill_wall) + 2, f'{acc} taken over too early')


class ClusterShards(ClusterBase):
    """nats.shards: the accounts are grouped into 6 lease keys (shard-0 ..
    shard-5, by a hash of the JID); a bridge that claims a shard runs all its
    accounts. kill -9 of one of two bridges: every account is online again on
    the other within 20 s, claimed shard by shard, and no message people
    sent meanwhile is lost."""

    def test_losing_a_bridge_with_shards(self):
        bridges = [self.bridge(f's{i}', extra='shards = 6;') for i in range(2)]
        self.wait_all_online(bridges, 60, 'start')
        self.wait_balanced_shards(bridges, 60)
        counter = EventCounter(self.nats.urls, 'shards')
        self.addCleanup(counter.stop)
        victim, heir = bridges
        moved = victim.online()
        self.assertTrue(moved, 'the victim owned no account')
        inb = set()
        writer = threading.Thread(target=lambda: inb.update(self.inbound('sh', 72, 0.1)))
        writer.start()
        time.sleep(1)
        kill_t = time.monotonic()
        victim.kill()
        back = self.wait_all_online([heir], 20, 'after kill -9 of a bridge')
        writer.join(120)
        self.assertEqual(counter.wait_for(inb, 60), set(), 'inbound messages never published')
        claims = [ln for ln in heir.log_lines() if re.search(r'leases: shard-\d+ claimed by', ln)]
        self.assertGreaterEqual(len(claims), 6, 'the heir did not claim every shard')
        print(f'\nshards: {len(moved)} accounts back in {back - kill_t:.1f}s; '
              f'duplicates: {counter.dups} events')

    def wait_balanced_shards(self, bridges, timeout):
        """Until both bridges run accounts (shards, not accounts, are spread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(b.online() for b in bridges):
                return
            time.sleep(0.2)
        self.fail(f'shards not spread within {timeout}s')


def archive_path():
    p = os.environ.get('XPB_ARCHIVE')
    if p:
        return p
    here = os.path.dirname(os.path.abspath(__file__))
    for d in ('release', 'asan', 'debug'):
        c = os.path.join(here, '..', '..', 'build', d, 'tools', 'xpb-archive')
        if os.access(c, os.X_OK):
            return c
    return None


def archived(db):
    """{body: rows} of the received messages in the archive database. The
    body lives only in the deflated record (schema 3), so it is read through
    `xpb-archive sql` (docs/archive.md, "Reading it with SQL")."""
    out = {}
    if not os.path.exists(db):
        return out
    r = subprocess.run([archive_path(), 'sql', '--db', db, '--json',
                        'SELECT body FROM message WHERE kind = 0'],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:  # not created yet, or busy: nothing to count yet
        return out
    for line in r.stdout.splitlines():
        body = json.loads(line).get('body')
        out[body] = out.get(body, 0) + 1
    return out


class ClusterArchive(ClusterBase):
    """`xpb-archive run --nats URL --durable NAME` archives what every bridge
    publishes: killed with SIGKILL while people write to the accounts of two
    bridges, started again, it ends with every message exactly once (a
    stream message is acknowledged only after its transaction committed, and
    one that was not is delivered again)."""

    def archiver(self, db, log):
        if not archive_path():
            self.skipTest('xpb-archive not built (set XPB_ARCHIVE)')
        with open(log, 'ab') as err:
            p = procs.spawn([archive_path(), 'run', '--db', db, '--nats', ','.join(self.nats.urls),
                             '--durable', 'archive-test'], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
        self.addCleanup(procs.kill_group, p, 2)
        return p

    def test_archive_over_nats_through_a_kill(self):
        bridges = [self.bridge(f'a{i}') for i in range(2)]
        self.wait_all_online(bridges, 60, 'start')
        work = env.scratch('archive-nats')
        db, log = os.path.join(work, 'archive.db'), os.path.join(work, 'archive.log')
        arch = self.archiver(db, log)
        accounts = [j for j, _ in self.accounts]
        n = 3 * len(accounts)
        sent = set()
        writer = threading.Thread(target=lambda: sent.update(self.send_all(accounts, n)))
        writer.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(archived(db).values()) < n // 3:
            time.sleep(0.01)
        os.killpg(arch.pid, signal.SIGKILL)  # mid-stream: some of it not yet acknowledged
        arch.wait(10)
        had = sum(archived(db).values())
        arch = self.archiver(db, log)
        writer.join(120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sent <= set(archived(db)):
            time.sleep(0.3)
        arch.send_signal(signal.SIGTERM)
        self.assertEqual(arch.wait(15), 0, 'xpb-archive did not stop cleanly')
        got = archived(db)
        self.assertEqual(sent - set(got), set(), 'messages not archived')
        twice = {b: k for b, k in got.items() if k > 1}
        self.assertEqual(twice, {}, 'messages archived twice')
        self.assertEqual(set(got) - sent, set(), 'messages nobody sent')
        print(f'\narchive over NATS: {n} messages, {had} stored before the kill -9, all '
              f'{len(got)} once after it')

    def send_all(self, accounts, n):
        bodies = set()
        for k in range(n):
            body = f'ar-in-{k}'
            self.people[k % N_PEOPLE].send(accounts[k % len(accounts)], body)
            bodies.add(body)
            time.sleep(0.03)
        return bodies


if __name__ == '__main__':
    unittest.main()
