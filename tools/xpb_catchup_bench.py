#!/usr/bin/python3
"""Catch-up rate (docs/benchmarks.md, "Catch-up from the archive"): archived
messages the bridge publishes per second after a restart. Prosody with mod_mam
on 127.0.0.1 (the integration harness, tests/integration/xpbtest); a bridge
with a state directory learns its marker, is killed (kill -9), alice sends N
messages, the bridge starts again and pages through the archive. The figure is
N / the run's duration as the bridge logs it ("catch-up ... done: N archived
messages in P pages ... in S s"), median of --runs runs.

    /usr/bin/python3 tools/xpb_catchup_bench.py --xpbridge build/release/bridge/xpbridge \\
        --xpbctl build/release/tools/xpbctl [--messages 2000] [--runs 3] [--page-size 100] \\
        [--server prosody|ejabberd]

The figure includes the server's time to answer each page (with Prosody's
default storage that time grew with the archive in our runs); with
XPB_BENCH_LOG=debug the bridge logs how long recording each page's stanza-ids
took, its own share.
"""
import argparse
import os
import re
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests',
                                'integration'))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--xpbridge', required=True)
    ap.add_argument('--xpbctl', required=True)
    ap.add_argument('--messages', type=int, default=2000)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--page-size', type=int, default=100)
    ap.add_argument('--server', choices=('prosody', 'ejabberd'), default='prosody')
    a = ap.parse_args()
    os.environ['XPBRIDGE'] = os.path.abspath(a.xpbridge)
    os.environ['XPBCTL'] = os.path.abspath(a.xpbctl)
    from xpbtest import env
    from xpbtest.bridge import Bridge, RichPerson
    from xpbtest.certs import DOMAIN
    from xpbtest.servers import Ejabberd, Prosody

    cls = Prosody if a.server == 'prosody' else Ejabberd
    srv = cls(env.scratch(cls.kind), env.pki(), mam=True)
    srv.start()
    alice = None
    bridge = None
    try:
        srv.register('bot', 'bot-pw')
        srv.register('alice', 'alice-pw')
        alice = RichPerson(f'alice@{DOMAIN}', 'alice-pw', env.pki().ca, srv.ports['c2s']).start()
        work = env.scratch('bridge')
        conf = os.path.join(work, 'bench.conf')
        pages = a.messages // min(a.page_size, 50) + 10  # Prosody sends at most 50 a page
        with open(conf, 'w') as f:
            f.write(f'mam = {{ page_size = {a.page_size}; max_pages = {pages}; '
                    f'max_messages = {a.messages + 100}; }};\n')
        extra = ('--state-dir', os.path.join(work, 'state'), '--config', conf,
                 '--log-level', os.environ.get('XPB_BENCH_LOG', 'info'))

        def new_bridge():
            return Bridge(work, f'bot@{DOMAIN}', 'bot-pw', '127.0.0.1', srv.ports['c2s'],
                          env.pki().ca, extra=extra)
        bridge = new_bridge()
        bridge.start()
        bridge.wait_log('first run', 20)
        rates, done_re = [], re.compile(r'done: (\d+) archived messages in (\d+) pages .* in '
                                        r'([0-9.]+) s')
        for run in range(a.runs):
            os.killpg(bridge.proc.pid, signal.SIGKILL)
            bridge.proc.wait(10)
            bridge.proc = None

            async def send_all(c, run=run):
                for i in range(a.messages):
                    c.send_message(mto=f'bot@{DOMAIN}', mbody=f'bench-{run}-{i}', mtype='chat')
                await c.plugin['xep_0199'].ping(jid=DOMAIN, timeout=60)  # all handled
            alice._client.register_plugin('xep_0199')
            alice.run(send_all, 120)
            time.sleep(1.0)
            bridge = new_bridge()
            bridge.start()
            line = bridge.wait_log(f'catch-up bot@{DOMAIN} of bot@{DOMAIN} done', 120)
            m = done_re.search(line)
            n, p, s = int(m.group(1)), int(m.group(2)), float(m.group(3))
            rates.append(n / s if s else float('inf'))
            print(f'run {run + 1}: {n} archived messages in {p} pages in {s:.3f} s: '
                  f'{n / s:,.0f} messages/s', flush=True)
        print(f'catch-up rate: median {statistics.median(rates):,.0f} archived messages/s '
              f'({a.server}, {a.messages} messages, page_size {a.page_size}, {a.runs} runs)')
    finally:
        if bridge:
            bridge.stop()
        if alice:
            alice.stop()
        srv.stop()


if __name__ == '__main__':
    main()
