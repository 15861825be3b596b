/* stub */ typedef int xpb_stub_record_check;
