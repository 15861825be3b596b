/* stub */ typedef int xpb_stub_jid;
