#!/usr/bin/python3
"""The person of the live demo (tools/demo.sh): an XMPP client made with
slixmpp that logs in, then does what the demo script writes on its standard
input, one command a line, and prints what she receives, one line each:
    say JID TEXT        send a chat message
    subscribe JID       ask for JID's presence (RFC 6121 §3.1)
    quit                log out and exit
When online she writes her full JID to --ready-file."""
import argparse
import asyncio
import logging
import sys
import threading

import slixmpp


def out(text):
    print(text, flush=True)


class Alice(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.register_plugin('xep_0030')  # answers disco#info
        self.register_plugin('xep_0092')  # answers software version
        self.register_plugin('xep_0199')  # answers pings
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)
        self.add_event_handler('presence', self.on_presence)
        self.add_event_handler('failed_auth', lambda _e: self.fail('authentication failed'))
        self.add_event_handler('connection_failed', lambda e: self.fail(f'cannot connect: {e}'))

    def fail(self, why):
        out(f'error: {why}')
        self.loop.stop()

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        with open(self.args.ready_file, 'w') as f:
            f.write(str(self.boundjid) + '\n')
        out(f'online as {self.boundjid}')

    def on_message(self, msg):
        if msg['type'] in ('chat', 'normal', 'headline') and msg['body']:
            thread = f" (thread {msg['thread']})" if msg['thread'] else ''
            out(f"received a {msg['type']} message from {msg['from']}{thread}: {msg['body']}")

    def on_presence(self, pres):
        who, ptype = pres['from'], pres['type']
        if who.bare == self.boundjid.bare:
            return  # her own presence, reflected by the server
        if ptype == 'subscribed':
            out(f'{who} accepted: she now sees its presence')
        elif ptype in ('available', 'away', 'chat', 'dnd', 'xa'):
            show = pres['show'] or 'available'
            status = f" \u2014 \u201c{pres['status']}\u201d" if pres['status'] else ''
            out(f'sees {who} as {show}{status}')
        elif ptype == 'unavailable' and who.resource:  # not the answer to a probe
            out(f'sees {who} go offline')

    def command(self, line):
        verb, _, rest = line.strip().partition(' ')
        if verb == 'say':
            to, _, text = rest.partition(' ')
            self.send_message(mto=to, mbody=text, mtype='chat')
            out(f'sends to {to}: {text}')
        elif verb == 'subscribe':
            self.send_presence(pto=rest, ptype='subscribe')
            out(f'asks to see the presence of {rest}')
        elif verb == 'quit':
            self.disconnect(wait=1.0)
            self.loop.call_later(1.5, self.loop.stop)
        elif verb:
            out(f'(unknown command {verb!r})')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--jid', required=True)
    ap.add_argument('--password', required=True)
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5222)
    ap.add_argument('--ca-file', required=True)
    ap.add_argument('--ready-file', required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    xmpp = Alice(args)
    xmpp.loop = loop
    xmpp.ca_certs = args.ca_file
    xmpp.roster.auto_authorize = True  # approve whoever asks for her presence

    def read_stdin():  # commands arrive while the loop runs
        for line in sys.stdin:
            loop.call_soon_threadsafe(xmpp.command, line)
        loop.call_soon_threadsafe(xmpp.command, 'quit')
    threading.Thread(target=read_stdin, daemon=True).start()

    xmpp.connect(address=(args.host, args.port), force_starttls=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
