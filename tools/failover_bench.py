#!/usr/bin/python3
"""Failover time of bridges sharing accounts through NATS (docs/benchmarks.md,
"Failover"): Prosody, a 3-node nats-server cluster and 3 xpbridge processes
on 127.0.0.1 (the integration harness, tests/integration/xpbtest), N accounts
shared by leases (ttl 10 s). K times: kill -9 the bridge that owns the most
accounts, time until every account is online on the others, start it again
and wait until the accounts are spread over three again. Prints each kill
and p50 / p99 / max.

    /usr/bin/python3 tools/failover_bench.py [--kills 10] [--accounts 30] [--ttl 10]
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))

from xpbtest import env  # noqa: E402
from xpbtest.certs import DOMAIN  # noqa: E402
from xpbtest.nats import ClusterBridge, NatsCluster  # noqa: E402
from xpbtest.servers import Prosody  # noqa: E402


def all_online(bridges, want):
    sets = [b.online() for b in bridges if b.alive()]
    return set().union(*sets) == want and sum(len(s) for s in sets) == len(want)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--kills', type=int, default=10)
    ap.add_argument('--accounts', type=int, default=30)
    ap.add_argument('--ttl', type=int, default=10)
    a = ap.parse_args()
    srv = Prosody(env.scratch('prosody'), env.pki())
    srv.start()
    nats = None
    bridges = []
    try:
        users = srv.register_many(a.accounts, prefix='fb', password='pw')
        accounts = [(f'{u}@{DOMAIN}', p) for u, p in users]
        want = {j for j, _ in accounts}
        nats = NatsCluster(env.scratch('nats'), n=3).start()

        def new_bridge(i):
            b = ClusterBridge(env.scratch(f'fb{i}'), f'fb{i}-{time.time_ns()}', nats.urls,
                              accounts, srv.ports['c2s'], env.pki().ca, ttl_s=a.ttl,
                              stream_management=False, extra_nats='replicas = 3;')
            return b.start()

        bridges = [new_bridge(i) for i in range(3)]
        times = []
        for k in range(a.kills):
            deadline = time.monotonic() + 120
            while not (all_online(bridges, want) and
                       max(len(b.online()) for b in bridges) - min(len(b.online()) for b in bridges)
                       <= 1):
                if time.monotonic() > deadline:
                    raise SystemExit('failover_bench: accounts did not settle within 120 s')
                time.sleep(0.2)
            victim = max(range(3), key=lambda i: len(bridges[i].online()))
            moved = len(bridges[victim].online())
            t0 = time.monotonic()
            bridges[victim].kill()
            while not all_online([b for b in bridges if b.alive()], want):
                if time.monotonic() - t0 > 120:
                    raise SystemExit('failover_bench: accounts not back within 120 s')
                time.sleep(0.05)
            dt = time.monotonic() - t0
            times.append(dt)
            print(f'kill {k + 1}: {moved} accounts back in {dt:.2f} s', flush=True)
            bridges[victim].stop()
            bridges[victim] = new_bridge(victim)
        print(f'failover over {len(times)} kills ({a.accounts} accounts, 3 bridges, ttl {a.ttl} s): '
              f'p50 {statistics.median(times):.2f} s, p99 {pct(times, 99):.2f} s, '
              f'max {max(times):.2f} s')
    finally:
        for b in bridges:
            b.stop()
        if nats:
            nats.stop()
        srv.stop()


if __name__ == '__main__':
    main()
