'use strict';
// Run by tests/integration/test_clients.py against a live bridge: requests,
// the same request id resent, error mapping, a timeout, and the gap
// detector. Prints one JSON object; the Python test checks it.
// Usage: live.js ACCOUNT PEER EVENTS_URL REQUESTS_URL DEAD_REQUESTS_URL
const { Bridge, BusError, GapDetector, message } = require('../lib/xpbridge');

const [account, peer, eventsUrl, requestsUrl, deadUrl] = process.argv.slice(2);

async function failure(p) {
  try { await p; } catch (e) { return [e.code, e.codeName, e.text, e instanceof BusError ? e.name : 'other']; }
  return null;
}

(async () => {
  const b = new Bridge(eventsUrl, requestsUrl, { timeout: 5000 });
  const out = {};
  const st = await b.status();
  out.status = { sessions: st.sessions, sessions_online: st.sessions_online };
  out.sessions = (await b.sessions()).map((s) => s.account);
  const rid = b.newRequestId();
  out.stanza_ids = [];
  for (let i = 0; i < 2; i += 1) {
    out.stanza_ids.push((await b.send(account, { to: peer, body: 'node-direct-1' }, rid)).stanza_id);
  }
  out.unknown_account = await failure(b.send(`nobody@${account.split('@')[1]}`, { to: peer, body: 'x' }));
  out.not_an_iq = await failure(b.iq(account, message(peer, 'not an iq')));
  // The journal (the bridge runs with a state directory): from seq 1, the
  // account's events come back in order, starting with its first.
  const replayed = [];
  for await (const ev of b.events({ account, fromSeq: 1, timeout: 1500 })) {
    replayed.push(Number(ev.seq));
    if (replayed.length >= 3) break;
  }
  out.replayed = replayed;
  b.close();
  const dead = new Bridge(eventsUrl, deadUrl, { timeout: 300, retries: 1 });
  const t = await failure(dead.status());
  out.timeout = t && [t[3], t[1]];
  dead.close();
  const det = new GapDetector();
  const gaps = [['message/a@x/', 0, [3, 4]], ['message/b@x/', 0, [6]], ['message/a@x/', 5, [7, 9]],
    ['message/b@x/', 6, [10, 12]], ['message/a@x/', 0, [1]]].flatMap(([topic, prev, seqs]) => det.batch(topic, prev, seqs));
  out.gaps = gaps.map((g) => `${g.kind} ${g.lastSeq} ${g.firstSeq} ${g.prevSeq}`);
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(`live.js: ${e.stack}`); process.exit(1); });
