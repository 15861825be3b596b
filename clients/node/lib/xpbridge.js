'use strict';
// xpbridge: a Node backend's client of the xpbridge bus (docs/bus.md,
// clients/README.md). SUB and REQ sockets from npm `nanomsg` (nanomsg speaks
// the same SP protocols over ipc:// and tcp:// as the bridge's NNG), records
// from the .proto files loaded at run time by `protobufjs`. Events come as an
// async iterator with gap detection; requests carry request ids and are
// retried with the same id (the bridge answers a resend from its cache).
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const nano = require('nanomsg');

const SETTLE_MS = 500; // events(): the live stream quiet this long, the journal is read once more
const protobuf = require('protobufjs');

const API_VERSION = 1;
const KINDS = ['message', 'presence', 'iq', 'other', 'state', 'delivery'];
// NN_RCVMAXSIZE: an event message is at most batch_bytes (256 KiB) or one
// larger stanza; a response at most a roster. Bigger messages are dropped.
const RECV_MAX = 4 << 20;
const MAX_TOPICS = 4096; // as many as the bridge remembers for prev_seq
const TO_OBJECT = { longs: Number, enums: String, oneofs: true };

function defaultUrl(name) { // xpb_bus_default_url in bridge/bus.c
  const xdg = process.env.XDG_RUNTIME_DIR || '';
  if (xdg.startsWith('/')) return `ipc://${xdg}/xpbridge/${name}`;
  return `ipc:///tmp/xpbridge-${process.geteuid()}/${name}`;
}

const PROTO_FILES = ['xpb/v1/stanza.proto', 'xpb/v1/bus.proto'];

function protoDir() {
  const dirs = [process.env.XPB_PROTO_DIR, path.join(__dirname, '..', '..', '..', 'proto'),
    '/usr/share/xpbridge/proto', '/usr/local/share/xpbridge/proto'];
  for (const d of dirs) {
    if (d && PROTO_FILES.every((f) => fs.existsSync(path.join(d, f)))) return path.resolve(d);
  }
  throw new Error('xpbridge: cannot find proto/xpb/v1/*.proto; set XPB_PROTO_DIR');
}

let types = null;
function loadTypes() {
  if (types) return types;
  const dir = protoDir();
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => (path.isAbsolute(target) ? target : path.join(dir, target));
  root.loadSync('xpb/v1/bus.proto', { keepCase: true }); // field names as in the .proto
  const t = (n) => root.lookupType(`xpb.v1.${n}`);
  types = { root, Request: t('Request'), Response: t('Response'), EventBatch: t('EventBatch'),
    ErrorCode: root.lookupEnum('xpb.v1.ErrorCode') };
  return types;
}

class BusError extends Error {
  // The bridge refused a request: code (ErrorCode number), codeName
  // ('ERR_UNKNOWN_ACCOUNT'), text (the bridge's sentence), requestId.
  constructor(op, code, text, requestId, codeName) {
    const name = codeName || loadTypes().ErrorCode.valuesById[code] || `error code ${code}`;
    super(`${op}: ${name} (${code}): ${text} [request ${requestId}]`);
    Object.assign(this, { name: 'BusError', op, code, codeName: name, text, requestId });
  }
}

class BusTimeout extends BusError {
  // No answer after every try: the request may or may not have run; a
  // retry with the same requestId is safe.
  constructor(op, requestId, tries, ms) {
    super(op, -1, `no answer from the bridge after ${tries} tries of ${ms} ms each ` +
      '(is it running?)', requestId, 'TIMEOUT');
    this.name = 'BusTimeout';
  }
}

// resp when its code is OK, else the BusError it carries. The bridge always
// writes code, so an absent one is an error too; a code newer than this
// client's .proto stays a number.
function checkResponse(op, resp, requestId) {
  if (resp.code === undefined || resp.code === null) {
    throw new BusError(op, -1, resp.error_text || 'response without a code', resp.request_id || requestId);
  }
  const code = typeof resp.code === 'string' ? loadTypes().ErrorCode.values[resp.code] : resp.code;
  if (code !== 0) throw new BusError(op, code, resp.error_text || '', resp.request_id || requestId);
  return resp;
}

function splitEventMessage(buf) { // topic bytes, NUL, EventBatch
  const nul = buf.indexOf(0);
  if (nul < 0) throw new Error('events message without the NUL after its topic');
  const { EventBatch } = loadTypes();
  const batch = EventBatch.toObject(EventBatch.decode(buf.subarray(nul + 1)), TO_OBJECT);
  return { topic: buf.toString('utf8', 0, nul), batch };
}

function subscriptions(kinds, account) {
  if (!kinds && !account) return [''];
  if (typeof kinds === 'string') kinds = [kinds];
  for (const k of kinds || []) {
    if (!KINDS.includes(k)) throw new Error(`unknown event kind ${k}; kinds are ${KINDS.join(', ')}`);
  }
  return (kinds || KINDS).map((k) => (account ? `${k}/${account}/` : `${k}/`));
}

class Gap {
  // kind 'lost' or 'restart'; see docs/bus.md, "Sequence numbers and gaps".
  constructor(kind, topic, lastSeq, firstSeq, prevSeq) {
    Object.assign(this, { kind, topic, lastSeq, firstSeq, prevSeq });
  }

  toString() {
    const where = this.topic || 'the stream';
    if (this.kind === 'restart') {
      return `the bridge restarted: seq went from ${this.lastSeq} back to ${this.firstSeq} on ${where}`;
    }
    return `lost events on ${where} between seq ${this.lastSeq} and ${this.firstSeq} (the last was ${this.prevSeq})`;
  }
}

class GapDetector {
  // Per topic: prev_seq not 0 and not the last seq seen means lost events;
  // a first seq at or below the last seen means the bridge restarted.
  constructor(maxTopics = MAX_TOPICS) {
    this.maxTopics = maxTopics;
    this.last = new Map(); // topic -> last seq, least recently seen first
    this.maxSeq = 0;
    this.resumeSeq = 0;
    this.everything = false;
  }

  resumeFrom(seq, everything) { Object.assign(this, { resumeSeq: seq, everything }); }

  batch(topic, prevSeq, seqs) {
    if (seqs.length === 0) return [];
    const first = seqs[0];
    const gaps = [];
    if (this.resumeSeq) {
      if (first <= this.resumeSeq) gaps.push(new Gap('restart', '', this.resumeSeq, first, 0));
      else if (this.everything && first > this.resumeSeq + 1) gaps.push(new Gap('lost', '', this.resumeSeq, first, first - 1));
      this.resumeSeq = 0;
    }
    let seen = this.last.get(topic);
    // seq 1 is a process's very first event, and its batch leaves first.
    if ((seen !== undefined && first <= seen) || (first === 1 && this.maxSeq > 0)) {
      gaps.push(new Gap('restart', topic, seen || this.maxSeq, first, prevSeq));
      this.last.clear();
      this.maxSeq = 0;
      seen = undefined;
    }
    if (seen !== undefined && prevSeq && prevSeq !== seen) gaps.push(new Gap('lost', topic, seen, first, prevSeq));
    this.last.delete(topic);
    this.last.set(topic, seqs[seqs.length - 1]);
    if (this.last.size > this.maxTopics) this.last.delete(this.last.keys().next().value);
    this.maxSeq = Math.max(this.maxSeq, seqs[seqs.length - 1]);
    return gaps;
  }
}

function message(to, body, type = 'chat', id = undefined) {
  const st = { kind: 'KIND_MESSAGE', type: stanzaType(type), to, body: [{ text: body }] };
  if (id) st.id = id;
  return st;
}

function stanzaType(t) { return typeof t === 'number' || t.startsWith('TYPE_') ? t : `TYPE_${t.toUpperCase()}`; }

class Bridge {
  // opts: timeout (ms for one answer), retries (further tries of an
  // unanswered or ERR_BUSY request, same id), recvMax.
  constructor(eventsUrl = null, requestsUrl = null, opts = {}) {
    this.eventsUrl = eventsUrl || defaultUrl('events');
    this.requestsUrl = requestsUrl || defaultUrl('requests');
    this.timeout = opts.timeout || 10000;
    this.retries = opts.retries === undefined ? 2 : opts.retries;
    this.recvMax = opts.recvMax || RECV_MAX;
    this.gaps = [];
    this._req = null;
    this._pending = null;
    this._chain = Promise.resolve();
    this._prefix = crypto.randomBytes(6).toString('hex');
    this._n = 0;
    loadTypes();
  }

  newRequestId() { this._n += 1; return `${this._prefix}-${this._n}`; }

  _reqSocket() {
    if (!this._req) {
      const s = nano.socket('req', { rcvmaxsize: this.recvMax });
      s.on('data', (d) => { if (this._pending) this._pending(d); });
      s.on('error', () => {}); // failures show as timeouts
      s.connect(this.requestsUrl);
      this._req = s;
    }
    return this._req;
  }

  // Sends Request{[op]: value}; resolves to the Response (plain object),
  // rejects with BusError when refused, BusTimeout when never answered.
  request(op, value, account = null, requestId = null, waitMs = 0) {
    const rid = requestId || this.newRequestId();
    const { Request } = loadTypes();
    const obj = { api_version: API_VERSION, request_id: rid, [op]: value };
    if (account !== null && account !== undefined) obj.account = account;
    const buf = Request.encode(Request.fromObject(obj)).finish();
    const run = () => this._run(op, rid, Buffer.from(buf), Math.max(waitMs, this.timeout));
    const p = this._chain.then(run, run); // one request at a time on a REQ socket
    this._chain = p.catch(() => {});
    return p;
  }

  async _run(op, rid, buf, ms) {
    const { Response } = loadTypes();
    for (let attempt = 0; attempt <= this.retries; attempt += 1) {
      const data = await this._exchange(buf, ms);
      if (data === null) continue;
      const resp = Response.toObject(Response.decode(data), TO_OBJECT);
      if (resp.code !== 'ERR_BUSY' || attempt === this.retries) return checkResponse(op, resp, rid);
      await new Promise((r) => setTimeout(r, 50 * 2 ** attempt)); // not cached: same id again
    }
    throw new BusTimeout(op, rid, this.retries + 1, ms);
  }

  _exchange(buf, ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this._pending = null; resolve(null); }, ms);
      this._pending = (d) => { clearTimeout(timer); this._pending = null; resolve(d); };
      this._reqSocket().send(buf);
    });
  }

  async send(account, stanza, requestId = null) {
    // stanza: a Stanza object, or {to, body, type} for a message
    const st = stanza.kind ? stanza : message(stanza.to, stanza.body, stanza.type || 'chat');
    return (await this.request('send', { stanza: st }, account, requestId)).sent;
  }

  async iq(account, stanza, timeoutMs = 10000, requestId = null) {
    const r = await this.request('iq', { stanza, timeout_ms: timeoutMs }, account, requestId, timeoutMs + 2000);
    return r.iq_result;
  }

  presence(account, p = {}, requestId = null) { // {show, status, priority, unavailable, to, type}
    const v = { ...p };
    if (v.show && !v.show.startsWith('SHOW_')) v.show = `SHOW_${v.show.toUpperCase()}`;
    if (v.type) v.type = stanzaType(v.type);
    return this.request('presence', v, account, requestId);
  }

  join(account, room, nick, opts = {}, requestId = null) { // opts: password, history_maxstanzas
    return this.request('join', { room, nick, ...opts }, account, requestId);
  }

  async roster(account, requestId = null) { return (await this.request('roster', {}, account, requestId)).roster; }

  async status() { return (await this.request('status', {})).status; }

  async sessions() { return ((await this.request('list', {})).sessions || {}).session || []; }

  close() { if (this._req) { this._req.close(); this._req = null; } }

  // One page of the bridge's journal (docs/durability.md): a ReplayPage
  // whose .batch is EventBatch bytes. BusError ERR_REPLAY_GONE /
  // ERR_NO_JOURNAL as the bridge answers.
  async replay(fromSeq, topicPrefix = '', maxEvents = 1000) {
    const r = await this.request('replay', { from_seq: fromSeq, topic_prefix: topicPrefix, max_events: maxEvents });
    return r.replay;
  }

  // Kept events from fromSeq on (below before, when not null) whose topic
  // starts with one of subs, in order, page by page.
  async* replayEvents(fromSeq, subs = [''], before = null) {
    const { EventBatch } = loadTypes();
    const prefix = subs.length === 1 ? subs[0] : '';
    for (;;) {
      const page = await this.replay(fromSeq, prefix);
      const batch = EventBatch.toObject(EventBatch.decode(page.batch || Buffer.alloc(0)), TO_OBJECT);
      for (const ev of batch.event || []) {
        if (before !== null && ev.seq >= before) return;
        if (subs.some((p) => eventTopic(ev).startsWith(p))) yield ev;
      }
      if (!page.count || page.next_seq > page.last_seq) return;
      fromSeq = page.next_seq;
    }
  }

  // Events (plain objects of xpb.v1.Event) of kinds (e.g. ['message'];
  // null: all) for account (bare JID; null: all), in order. Gaps go to
  // onGap(gap) (default: a warning on stderr) and this.gaps. resumeFile
  // keeps the seq of the last event the caller finished with. With a seq in
  // it (or fromSeq), what came after it is first replayed from the bridge's
  // journal, then live events follow; a hole of the live stream is replayed
  // before the event after it (docs/durability.md). A bridge without a state
  // directory answers ERR_NO_JOURNAL: then a restart or loss since that seq
  // is reported only. A first run (no file) starts with live events.
  // timeout: stop after that many ms without an event.
  async* events({ kinds = null, account = null, resumeFile = null, onGap = null, timeout = null,
    fromSeq = null } = {}) {
    const subs = subscriptions(kinds, account);
    const det = new GapDetector();
    let last = resumeFile ? readSeq(resumeFile) : 0;
    if (fromSeq) last = fromSeq - 1;
    const report = onGap || ((g) => process.stderr.write(`xpbridge: events: ${g}\n`));
    const queue = [];
    let wake = null;
    const sock = nano.socket('sub', { chan: subs, rcvmaxsize: this.recvMax });
    sock.on('data', (d) => { queue.push(d); if (wake) wake(); });
    sock.on('error', (e) => process.stderr.write(`xpbridge: events: ${e.message}\n`));
    sock.connect(this.eventsUrl); // first: nothing published meanwhile is missed
    const self = this;
    let journal = Boolean(last || fromSeq);
    async function* replayAfter(before) {
      try {
        for await (const ev of self.replayEvents(last + 1, subs, before)) {
          yield ev;
          last = ev.seq;
          if (resumeFile) writeSeq(resumeFile, ev.seq);
        }
      } catch (e) {
        if (!(e instanceof BusError) || e.codeName !== 'ERR_NO_JOURNAL') throw e;
        process.stderr.write('xpbridge: events: the bridge keeps no journal; missed events cannot be replayed\n');
        journal = false;
      }
    }
    try {
      if (journal) yield* replayAfter(null);
      if (!journal && last) det.resumeFrom(last, subs.length === 1 && subs[0] === '');
      // The bridge's PUB attaches a new subscriber a moment after it dials:
      // what it published meanwhile came neither live nor (if published after
      // the replay was read) from the replay, and a hole shows only at the
      // next event. So once the live stream has been quiet for SETTLE_MS the
      // journal is read once more from the last event delivered (it is
      // written before it is published: it holds everything not received).
      let settled = !journal;
      for (;;) {
        if (queue.length === 0 && !settled) {
          if (!(await waitFor((w) => { wake = w; }, SETTLE_MS))) {
            settled = true;
            yield* replayAfter(null);
            continue;
          }
        } else if (queue.length === 0 && !(await waitFor((w) => { wake = w; }, timeout))) {
          return;
        }
        wake = null;
        if (queue.length === 0) continue;
        let m;
        try { m = splitEventMessage(queue.shift()); } catch (e) {
          process.stderr.write(`xpbridge: events: skipped a message that does not decode: ${e.message}\n`);
          continue;
        }
        const evs = m.batch.event || [];
        if (!journal) {
          for (const g of det.batch(m.topic, m.batch.prev_seq || 0, evs.map((e) => e.seq))) {
            this.gaps.push(g);
            report(g);
          }
        }
        for (let i = 0; i < evs.length; i += 1) {
          const ev = evs[i];
          if (journal) {
            if (ev.seq <= last) continue;
            const hole = subs.length === 1 && subs[0] === '' ? ev.seq > last + 1
              : i === 0 && (m.batch.prev_seq || 0) > last;
            if (hole) yield* replayAfter(ev.seq);
            if (ev.seq <= last) continue;
          }
          yield ev;
          last = ev.seq;
          if (resumeFile) writeSeq(resumeFile, ev.seq);
        }
      }
    } finally {
      sock.close();
    }
  }
}

// The topic an event is published on: "<kind>/<account>/".
function eventTopic(ev) {
  let kind = 'other';
  if (ev.body === 'stanza') {
    kind = { KIND_MESSAGE: 'message', KIND_PRESENCE: 'presence', KIND_IQ: 'iq' }[ev.stanza.kind] || 'other';
  } else if (ev.body === 'state' || ev.body === 'delivery') {
    kind = ev.body;
  }
  return `${kind}/${ev.account}/`;
}

// Resolves true when wake is called, false after ms (null: never).
function waitFor(setWake, ms) {
  return new Promise((resolve) => {
    const timer = ms === null ? null : setTimeout(() => resolve(false), ms);
    setWake(() => { if (timer) clearTimeout(timer); resolve(true); });
  });
}

function readSeq(file) {
  let text;
  try { text = fs.readFileSync(file, 'utf8').trim(); } catch (e) {
    if (e.code === 'ENOENT') return 0;
    throw e;
  }
  if (!/^\d*$/.test(text)) throw new Error(`resumeFile ${file} does not hold a seq number`);
  return Number(text || 0);
}

function writeSeq(file, seq) { // atomically: the old number or the new one
  fs.writeFileSync(`${file}.tmp`, `${seq}\n`);
  fs.renameSync(`${file}.tmp`, file);
}

module.exports = {
  API_VERSION, KINDS, Bridge, BusError, BusTimeout, Gap, GapDetector, checkResponse, defaultUrl,
  eventTopic, loadTypes, message, splitEventMessage, subscriptions,
};
