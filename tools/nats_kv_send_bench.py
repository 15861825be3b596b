#!/usr/bin/python3
"""Sends per second of one bridge whose state is in NATS KV (docs/scaling.md,
"XEP-0198 state and sends in NATS KV", Limits): Prosody, a nats-server
cluster (1 or 3 nodes) and one xpbridge on 127.0.0.1 (the integration
harness, tests/integration/xpbtest). Each run is one `xpbctl send --batch`
of N messages over NATS: the answer comes once every item's xpb_outbox key
is stored, so the time is N KV puts on the bridge's state worker plus the
sends. Prints each run and the median of the runs.

    /usr/bin/python3 tools/nats_kv_send_bench.py [--stanzas 1000] [--runs 3] [--nodes 1]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))

from xpbtest import env  # noqa: E402
from xpbtest.bridge import xpbctl_path  # noqa: E402
from xpbtest.certs import DOMAIN  # noqa: E402
from xpbtest.nats import ClusterBridge, NatsCluster  # noqa: E402
from xpbtest.servers import Prosody  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--stanzas', type=int, default=1000)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--nodes', type=int, default=1)
    a = ap.parse_args()
    srv = Prosody(env.scratch('prosody'), env.pki())
    srv.start()
    nats = bridge = None
    try:
        users = srv.register_many(1, prefix='kb', password='pw')
        srv.register('peer', 'pw')
        account = f'{users[0][0]}@{DOMAIN}'
        nats = NatsCluster(env.scratch('nats'), n=a.nodes).start()
        bridge = ClusterBridge(env.scratch('kb'), 'kb', nats.urls, [(account, 'pw')],
                               srv.ports['c2s'], env.pki().ca, stream_management=True,
                               extra_nats=f'replicas = {a.nodes};').start()
        deadline = time.monotonic() + 60
        while account not in bridge.online():
            if time.monotonic() > deadline:
                raise SystemExit('nats_kv_send_bench: the account did not come online')
            time.sleep(0.2)
        rates = []
        for r in range(a.runs):
            path = os.path.join(env.workdir(), f'batch{r}.xml')
            with open(path, 'w') as f:
                for k in range(a.stanzas):
                    f.write(f"<message to='peer@{DOMAIN}' type='chat'><body>r{r}-{k}</body>"
                            f"</message>\n")
            t0 = time.monotonic()
            p = subprocess.run([xpbctl_path(), 'send', '--nats', ','.join(nats.urls),
                                '--timeout', '600000', '--account', account, '--batch', path],
                               capture_output=True, text=True, timeout=900)
            dt = time.monotonic() - t0
            if p.returncode != 0:
                raise SystemExit(f'nats_kv_send_bench: xpbctl send --batch: {p.stderr.strip()}')
            rates.append(a.stanzas / dt)
            print(f'run {r + 1}: {a.stanzas} sends kept in KV and sent in {dt:.2f} s: '
                  f'{a.stanzas / dt:,.0f}/s', flush=True)
        print(f'sends per second with the state in NATS KV ({a.nodes} node(s), R={a.nodes}): '
              f'median {statistics.median(rates):,.0f} over {a.runs} runs of {a.stanzas}')
    finally:
        if bridge:
            bridge.stop()
        if nats:
            nats.stop()
        srv.stop()


if __name__ == '__main__':
    main()
