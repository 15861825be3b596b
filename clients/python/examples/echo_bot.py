#!/usr/bin/python3
"""Echo bot: answers every chat message to ACCOUNT (an account configured in
the bridge) with the same body.
Usage: echo_bot.py ACCOUNT [EVENTS_URL REQUESTS_URL]"""
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from xpbridge import Bridge, stanza_pb2  # noqa: E402

logging.basicConfig(level=logging.INFO, format='echo_bot: %(message)s')
account, urls = sys.argv[1], sys.argv[2:4]
bridge = Bridge(*urls)
print('echo_bot: ready', flush=True)
for ev in bridge.events(kinds=['message'], account=account):
    st = ev.stanza
    if st.type not in (stanza_pb2.TYPE_UNSPECIFIED, stanza_pb2.TYPE_CHAT,
                       stanza_pb2.TYPE_NORMAL) or not st.body:
        continue  # no echo of errors, room messages or chat states alone
    sent = bridge.send(account, to=getattr(st, 'from'), body=st.body[0].text)
    logging.info('echoed %s to %s as %s', st.id, getattr(st, 'from'), sent.stanza_id)
