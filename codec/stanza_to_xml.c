/* stub */ typedef int xpb_stub_stanza_to_xml;
