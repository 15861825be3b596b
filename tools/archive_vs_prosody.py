#!/usr/bin/python3
"""Storage of the same messages in xpb-archive and in Prosody's own archive
(mod_mam with storage = "sql", SQLite): docs/benchmarks.md, "The archive".

Starts Prosody 0.12 on 127.0.0.1 (the integration harness, mod_mam on, the
archive store in SQL: needs Debian's lua-dbi-sqlite3), the bridge as bot and
`xpb-archive run` on its events; alice (slixmpp) sends N chat messages to bot.
Once both archives hold all N, everything is stopped and the files measured:
  - Prosody: a copy of prosody.sqlite with only bot's archive rows (mod_mam
    keeps the sender's copy too), VACUUMed;
  - xpb-archive: the database after `xpb-archive vacuum`;
  - the same messages as XML, from `xpb-archive stats --json`.
Usage: tools/archive_vs_prosody.py [--messages N] [--keep]
(build first: cmake --build build/release; run as root, as the integration
tests do)."""
import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))

from xpbtest import env  # noqa: E402
from xpbtest.bridge import Bridge, Person  # noqa: E402
from xpbtest.certs import DOMAIN  # noqa: E402
from xpbtest.servers import Prosody  # noqa: E402

BOT = f'bot@{DOMAIN}'
ALICE = f'alice@{DOMAIN}'
SQL_STORAGE = ('default_storage = "internal"\n'
               'storage = { archive = "sql"; archive2 = "sql"; muc_log = "sql" }\n'
               'sql = { driver = "SQLite3"; database = "prosody.sqlite" }\n')
WORDS = ('the build is green again', 'pull request', 'can you review', 'tomorrow', 'lunch?',
         'déjà vu', 'ok', 'thanks!', 'the server restarted at noon', 'こんにちは', 'γειά σου',
         'let me check the logs', 'sounds good', 'where is the meeting', 'I pushed a fix',
         'the tests pass on my machine', '👍', 'see you', 'which branch', 'bug', 'release',
         'done', 'have you seen the new design doc', 'on my way', 'coffee', 'why not')


class SqlProsody(Prosody):
    """Prosody with its archive stores in SQLite (the rest stays internal)."""

    def _write_config(self):
        super()._write_config()
        with open(self.config_path) as f:
            cfg = f.read()
        with open(self.config_path, 'w') as f:
            f.write(SQL_STORAGE + cfg)


def archive_bin():
    return os.environ.get('XPB_ARCHIVE') or os.path.join(HERE, '..', 'build', 'release', 'tools',
                                                         'xpb-archive')


def body(rng):
    return ' '.join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))


def count(db, sql):
    try:
        c = sqlite3.connect(f'file:{db}?mode=ro', uri=True, timeout=10)
        try:
            return c.execute(sql).fetchone()[0]
        finally:
            c.close()
    except sqlite3.Error:
        return 0


def wait_for(what, fn, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn() >= n:
            return
        time.sleep(0.5)
    raise SystemExit(f'archive_vs_prosody: {what} holds {fn()} of {n} messages after {timeout} s')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--messages', type=int, default=10000)
    ap.add_argument('--keep', action='store_true', help='keep the work directory')
    o = ap.parse_args()
    rng = random.Random(1)
    stack = []
    work = env.scratch('archive-vs-prosody')
    try:
        srv = SqlProsody(env.scratch('prosody-sql'), env.pki(), mam=True)
        srv.start()
        stack.append(srv.stop)
        for user in ('bot', 'alice'):
            srv.register(user, f'{user}-pw')
        b = Bridge(work, BOT, 'bot-pw', '127.0.0.1', srv.ports['c2s'], env.pki().ca)
        stack.append(b.stop)
        b.start()
        db = os.path.join(work, 'archive.db')
        with open(os.path.join(work, 'archiver.log'), 'ab') as err:
            arch = subprocess.Popen([archive_bin(), 'run', '--db', db, '--events', b.events,
                                     '--requests', b.requests],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, start_new_session=True)
        stack.append(lambda: (arch.terminate(), arch.wait(20)))
        alice = Person(ALICE, 'alice-pw', env.pki().ca, srv.ports['c2s'])
        stack.append(alice.stop)
        alice.start()
        t0 = time.monotonic()
        for i in range(o.messages):
            alice.send(BOT, body(rng), mid=str(uuid.uuid4()))
            if i % 500 == 499:
                time.sleep(0.2)  # let the bridge and Prosody keep up
        psql = os.path.join(srv.dir, 'data', 'prosody.sqlite')
        bot_rows = ("SELECT count(*) FROM prosodyarchive WHERE host = 'xpb.test' AND "
                    "user = 'bot' AND store = 'archive'")
        wait_for('xpb-archive', lambda: count(db, 'SELECT count(*) FROM message WHERE kind = 0'),
                 o.messages, 120 + o.messages / 50)
        wait_for("Prosody's archive", lambda: count(psql, bot_rows), o.messages, 120)
        took = time.monotonic() - t0
        while stack:
            stack.pop()()
        # Prosody: bot's archive alone, as a file of its own.
        pcopy = os.path.join(work, 'prosody-bot.sqlite')
        shutil.copy(psql, pcopy)
        for ext in ('-wal', '-shm'):
            if os.path.exists(psql + ext):
                shutil.copy(psql + ext, pcopy + ext)
        c = sqlite3.connect(pcopy)
        whole = c.execute('SELECT count(*) FROM prosodyarchive').fetchone()[0]
        c.execute("DELETE FROM prosodyarchive WHERE NOT (user = 'bot' AND store = 'archive')")
        c.commit()
        c.execute('VACUUM')
        c.execute('PRAGMA wal_checkpoint(TRUNCATE)')
        c.close()
        prosody_bytes = os.path.getsize(pcopy)
        subprocess.run([archive_bin(), 'vacuum', '--db', db], check=True, timeout=600)
        st = json.loads(subprocess.run([archive_bin(), 'stats', '--db', db, '--json'],
                                       check=True, capture_output=True, text=True,
                                       timeout=600).stdout)
        ours, xml = os.path.getsize(db), st['xml_bytes']
        print(f'archive_vs_prosody: {o.messages} messages alice -> bot sent in {took:.1f} s '
              f'(Prosody rows in all: {whole}, both users\' archives)')
        print(f'  the messages as XML (xpb-archive stats) {xml:>12} B = 1.000')
        print(f'  Prosody 0.12 mod_mam, SQLite, bot only  {prosody_bytes:>12} B = '
              f'{prosody_bytes / xml:.3f} of XML')
        print(f'  xpb-archive (after vacuum)              {ours:>12} B = {ours / xml:.3f} of XML'
              f' ({ours / prosody_bytes:.3f} of Prosody\'s)')
    finally:
        while stack:
            try:
                stack.pop()()
            except Exception as e:  # keep stopping the rest
                print(f'cleanup: {e}', file=sys.stderr)
        if o.keep:
            print(f'kept: {work}')
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
