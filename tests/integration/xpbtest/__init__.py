"""Integration test harness for xpbridge: real XMPP servers on 127.0.0.1,
slixmpp "persons", and a wrapper for the xpb_session_driver program."""
