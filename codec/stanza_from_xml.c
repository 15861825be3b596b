/* stub */ typedef int xpb_stub_stanza_from_xml;
