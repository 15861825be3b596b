#!/usr/bin/env node
'use strict';
// Echo bot: answers every chat message to ACCOUNT (an account configured in
// the bridge) with the same body.
// Usage: echo_bot.js ACCOUNT [EVENTS_URL REQUESTS_URL]
const { Bridge } = require('../lib/xpbridge');

const [account, eventsUrl, requestsUrl] = process.argv.slice(2);
const bridge = new Bridge(eventsUrl, requestsUrl);

(async () => {
  console.log('echo_bot: ready');
  for await (const ev of bridge.events({ kinds: ['message'], account })) {
    const st = ev.stanza || {};
    const plain = [undefined, 'TYPE_UNSPECIFIED', 'TYPE_CHAT', 'TYPE_NORMAL'].includes(st.type);
    if (!plain || !st.body || !st.body.length) continue; // no echo of errors, rooms, chat states
    const sent = await bridge.send(account, { to: st.from, body: st.body[0].text });
    console.log(`echo_bot: echoed ${st.id} to ${st.from} as ${sent.stanza_id}`);
  }
})().catch((e) => { console.error(`echo_bot: ${e.message}`); process.exit(1); });
