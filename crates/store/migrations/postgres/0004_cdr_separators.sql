-- cdrapi pages join values with U+001F and legs with U+001E; no stored value
-- may hold either (new rows are cleaned at insert). Older rows are cleaned
-- here: U+FFFD replaces them.
UPDATE cdr SET "accountcode" = translate("accountcode", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("accountcode", chr(30)) > 0 OR strpos("accountcode", chr(31)) > 0;
UPDATE cdr SET "src" = translate("src", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("src", chr(30)) > 0 OR strpos("src", chr(31)) > 0;
UPDATE cdr SET "dst" = translate("dst", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("dst", chr(30)) > 0 OR strpos("dst", chr(31)) > 0;
UPDATE cdr SET "dcontext" = translate("dcontext", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("dcontext", chr(30)) > 0 OR strpos("dcontext", chr(31)) > 0;
UPDATE cdr SET "clid" = translate("clid", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("clid", chr(30)) > 0 OR strpos("clid", chr(31)) > 0;
UPDATE cdr SET "channel" = translate("channel", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("channel", chr(30)) > 0 OR strpos("channel", chr(31)) > 0;
UPDATE cdr SET "dstchannel" = translate("dstchannel", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("dstchannel", chr(30)) > 0 OR strpos("dstchannel", chr(31)) > 0;
UPDATE cdr SET "lastapp" = translate("lastapp", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("lastapp", chr(30)) > 0 OR strpos("lastapp", chr(31)) > 0;
UPDATE cdr SET "lastdata" = translate("lastdata", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("lastdata", chr(30)) > 0 OR strpos("lastdata", chr(31)) > 0;
UPDATE cdr SET "start" = translate("start", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("start", chr(30)) > 0 OR strpos("start", chr(31)) > 0;
UPDATE cdr SET "answer" = translate("answer", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("answer", chr(30)) > 0 OR strpos("answer", chr(31)) > 0;
UPDATE cdr SET "end" = translate("end", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("end", chr(30)) > 0 OR strpos("end", chr(31)) > 0;
UPDATE cdr SET "duration" = translate("duration", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("duration", chr(30)) > 0 OR strpos("duration", chr(31)) > 0;
UPDATE cdr SET "billsec" = translate("billsec", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("billsec", chr(30)) > 0 OR strpos("billsec", chr(31)) > 0;
UPDATE cdr SET "disposition" = translate("disposition", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("disposition", chr(30)) > 0 OR strpos("disposition", chr(31)) > 0;
UPDATE cdr SET "amaflags" = translate("amaflags", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("amaflags", chr(30)) > 0 OR strpos("amaflags", chr(31)) > 0;
UPDATE cdr SET "uniqueid" = translate("uniqueid", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("uniqueid", chr(30)) > 0 OR strpos("uniqueid", chr(31)) > 0;
UPDATE cdr SET "userfield" = translate("userfield", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("userfield", chr(30)) > 0 OR strpos("userfield", chr(31)) > 0;
UPDATE cdr SET "channel_ext" = translate("channel_ext", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("channel_ext", chr(30)) > 0 OR strpos("channel_ext", chr(31)) > 0;
UPDATE cdr SET "dstchannel_ext" = translate("dstchannel_ext", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("dstchannel_ext", chr(30)) > 0 OR strpos("dstchannel_ext", chr(31)) > 0;
UPDATE cdr SET "service" = translate("service", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("service", chr(30)) > 0 OR strpos("service", chr(31)) > 0;
UPDATE cdr SET "caller_name" = translate("caller_name", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("caller_name", chr(30)) > 0 OR strpos("caller_name", chr(31)) > 0;
UPDATE cdr SET "recordfiles" = translate("recordfiles", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("recordfiles", chr(30)) > 0 OR strpos("recordfiles", chr(31)) > 0;
UPDATE cdr SET "dstanswer" = translate("dstanswer", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("dstanswer", chr(30)) > 0 OR strpos("dstanswer", chr(31)) > 0;
UPDATE cdr SET "chanext" = translate("chanext", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("chanext", chr(30)) > 0 OR strpos("chanext", chr(31)) > 0;
UPDATE cdr SET "dstchanext" = translate("dstchanext", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("dstchanext", chr(30)) > 0 OR strpos("dstchanext", chr(31)) > 0;
UPDATE cdr SET "session" = translate("session", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("session", chr(30)) > 0 OR strpos("session", chr(31)) > 0;
UPDATE cdr SET "action_owner" = translate("action_owner", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("action_owner", chr(30)) > 0 OR strpos("action_owner", chr(31)) > 0;
UPDATE cdr SET "action_type" = translate("action_type", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("action_type", chr(30)) > 0 OR strpos("action_type", chr(31)) > 0;
UPDATE cdr SET "src_trunk_name" = translate("src_trunk_name", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("src_trunk_name", chr(30)) > 0 OR strpos("src_trunk_name", chr(31)) > 0;
UPDATE cdr SET "dst_trunk_name" = translate("dst_trunk_name", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("dst_trunk_name", chr(30)) > 0 OR strpos("dst_trunk_name", chr(31)) > 0;
UPDATE cdr SET "nat_call" = translate("nat_call", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("nat_call", chr(30)) > 0 OR strpos("nat_call", chr(31)) > 0;
UPDATE cdr SET "nat_call_peer" = translate("nat_call_peer", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("nat_call_peer", chr(30)) > 0 OR strpos("nat_call_peer", chr(31)) > 0;
UPDATE cdr SET "video_call" = translate("video_call", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("video_call", chr(30)) > 0 OR strpos("video_call", chr(31)) > 0;
UPDATE cdr SET "gdms_unique_code" = translate("gdms_unique_code", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("gdms_unique_code", chr(30)) > 0 OR strpos("gdms_unique_code", chr(31)) > 0;
UPDATE cdr SET "gds_call" = translate("gds_call", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("gds_call", chr(30)) > 0 OR strpos("gds_call", chr(31)) > 0;
UPDATE cdr SET "gsc_call" = translate("gsc_call", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("gsc_call", chr(30)) > 0 OR strpos("gsc_call", chr(31)) > 0;
UPDATE cdr SET "wave_src_seqid" = translate("wave_src_seqid", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("wave_src_seqid", chr(30)) > 0 OR strpos("wave_src_seqid", chr(31)) > 0;
UPDATE cdr SET "wave_dst_seqid" = translate("wave_dst_seqid", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("wave_dst_seqid", chr(30)) > 0 OR strpos("wave_dst_seqid", chr(31)) > 0;
UPDATE cdr SET "device_info" = translate("device_info", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("device_info", chr(30)) > 0 OR strpos("device_info", chr(31)) > 0;
UPDATE cdr SET "device_info_peer" = translate("device_info_peer", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("device_info_peer", chr(30)) > 0 OR strpos("device_info_peer", chr(31)) > 0;
UPDATE cdr SET "recordfiles_desc" = translate("recordfiles_desc", chr(30) || chr(31), chr(65533) || chr(65533))
    WHERE strpos("recordfiles_desc", chr(30)) > 0 OR strpos("recordfiles_desc", chr(31)) > 0;
