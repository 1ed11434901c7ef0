//! The CDRs here are what the rig's Asterisk 22 wrote for real calls (AMI Cdr
//! events, headers as cdr_manager_pbxgate.conf names them).

use super::*;

/// A CDR from `Header=value | Header=value` (the AMI headers).
fn cdr(line: &str) -> AsteriskCdr {
    let mut c = AsteriskCdr::default();
    for part in line.split(" | ") {
        let (k, v) = part.split_once('=').unwrap();
        let v = v.to_owned();
        match k {
            "UniqueID" => c.uniqueid = v,
            "LinkedID" => c.linkedid = v,
            "Sequence" => c.sequence = v,
            "Source" => c.src = v,
            "Destination" => c.dst = v,
            "DestinationContext" => c.dcontext = v,
            "CallerID" => c.clid = v,
            "Channel" => c.channel = v,
            "DestinationChannel" => c.dstchannel = v,
            "LastApplication" => c.lastapp = v,
            "LastData" => c.lastdata = v,
            "StartTime" => c.start = v,
            "AnswerTime" => c.answer = v,
            "EndTime" => c.end = v,
            "Duration" => c.duration = v,
            "BillableSeconds" => c.billsec = v,
            "Disposition" => c.disposition = v,
            "PbxDirection" => c.direction = v,
            "PbxActionType" => c.action_type = v,
            "PbxSrcTrunk" => c.src_trunk = v,
            "PbxDstTrunk" => c.dst_trunk = v,
            "PbxDid" => c.did = v,
            "PbxRecordFiles" => c.recordfiles = v,
            other => panic!("unknown header {other}"),
        }
    }
    c
}

fn billed(call: &Call) -> u64 {
    call.legs
        .iter()
        .map(|l| l.cdr.billsec.parse::<u64>().unwrap())
        .sum()
}

/// Queue 6000 (ringall, member Local/1000@ext-local/n), answered, 6 s: two
/// CDRs of 6 billed seconds each for one conversation.
const QUEUE_ANSWERED: [&str; 2] = [
    r#"UniqueID=1796651509.1 | LinkedID=1796651509.1 | Sequence=1 | Source=1001 | Destination=s | DestinationContext=rig-queue | CallerID="Ext 1001" <1001> | Channel=PJSIP/1001-00000001 | DestinationChannel=Local/1000@ext-local-00000000;1 | LastApplication=Queue | LastData=6000,,,,30 | StartTime=2026-12-07 13:51:49 | AnswerTime=2026-12-07 13:51:50 | EndTime=2026-12-07 13:51:56 | Duration=7 | BillableSeconds=6 | Disposition=ANSWERED | PbxActionType=QUEUE[6000]"#,
    r#"UniqueID=1796651509.3 | LinkedID=1796651509.1 | Sequence=3 | Source=1001 | Destination=1000 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=Local/1000@ext-local-00000000;2 | DestinationChannel=PJSIP/1000-00000002 | LastApplication=Dial | LastData=PJSIP/1000/sip:1000@127.0.0.1:16061,8 | StartTime=2026-12-07 13:51:49 | AnswerTime=2026-12-07 13:51:50 | EndTime=2026-12-07 13:51:56 | Duration=7 | BillableSeconds=6 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796651509-1001-1000.wav@"#,
];

#[test]
fn a_queue_call_is_one_leg_billed_once() {
    for reversed in [false, true] {
        let mut cdrs: Vec<AsteriskCdr> = QUEUE_ANSWERED.iter().map(|l| cdr(l)).collect();
        if reversed {
            cdrs.reverse();
        }
        let call = reduce(cdrs);
        assert_eq!(call.legs.len(), 1, "{call:#?}");
        assert_eq!(billed(&call), 6);
        let leg = &call.legs[0].cdr;
        assert_eq!(leg.channel, "PJSIP/1001-00000001");
        assert_eq!(leg.dstchannel, "PJSIP/1000-00000002", "the agent answered");
        assert_eq!(leg.lastapp, "Queue");
        assert_eq!(leg.action_type, "QUEUE[6000]");
        assert_eq!(leg.dst, "6000", "not the dialplan's s");
        assert_eq!(leg.direction, "Internal", "from the member's leg");
        assert_eq!(leg.recordfiles, "2026-12/auto-1796651509-1001-1000.wav@");
        assert_eq!(call.owner, "1001");
        assert_eq!(
            call.legs[0].key,
            cdr(QUEUE_ANSWERED[0]).dedupe_key(),
            "the caller's CDR is the leg's identity"
        );
    }
}

/// Queue 6100 (leastrecent; 1097 fails, then 1001 answers): CDRs in the order
/// Asterisk sent them (27, 31, 25, 32).
#[test]
fn queue_attempts_are_legs_in_the_order_they_were_made() {
    let cdrs = [
        r#"UniqueID=1796651616.32 | LinkedID=1796651616.30 | Sequence=27 | Source=1001 | Destination=1097 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=Local/1097@ext-local-00000002;2 | DestinationChannel=PJSIP/1097-00000015 | LastApplication=Dial | LastData=PJSIP/1097/sip:1097@127.0.0.1:16061,8 | StartTime=2026-12-07 13:53:36 | EndTime=2026-12-07 13:53:36 | Duration=0 | BillableSeconds=0 | Disposition=FAILED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796651616-1001-1097.wav@"#,
        r#"UniqueID=1796651616.36 | LinkedID=1796651616.30 | Sequence=31 | Source=1001 | Destination=1001 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=Local/1001@ext-local-00000003;2 | DestinationChannel=PJSIP/1001-00000017 | LastApplication=Dial | LastData=PJSIP/1001/sip:1001@127.0.0.1:16061,8 | StartTime=2026-12-07 13:53:36 | AnswerTime=2026-12-07 13:53:37 | EndTime=2026-12-07 13:53:43 | Duration=7 | BillableSeconds=6 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796651616-1001-1001.wav@"#,
        r#"UniqueID=1796651616.30 | LinkedID=1796651616.30 | Sequence=25 | Source=1001 | Destination=6100 | DestinationContext=from-internal | CallerID="Ext 1001" <1001> | Channel=PJSIP/1001-00000014 | DestinationChannel=Local/1097@ext-local-00000002;1 | LastApplication=Queue | LastData=6100,,,,30 | StartTime=2026-12-07 13:53:36 | EndTime=2026-12-07 13:53:36 | Duration=0 | BillableSeconds=0 | Disposition=FAILED"#,
        r#"UniqueID=1796651616.30 | LinkedID=1796651616.30 | Sequence=32 | Source=1001 | Destination=6100 | DestinationContext=from-internal | CallerID="Ext 1001" <1001> | Channel=PJSIP/1001-00000014 | DestinationChannel=Local/1001@ext-local-00000003;1 | LastApplication=Queue | LastData=6100,,,,30 | StartTime=2026-12-07 13:53:36 | AnswerTime=2026-12-07 13:53:37 | EndTime=2026-12-07 13:53:43 | Duration=7 | BillableSeconds=6 | Disposition=ANSWERED"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 2, "{call:#?}");
    assert_eq!(billed(&call), 6);
    let (a, b) = (&call.legs[0].cdr, &call.legs[1].cdr);
    assert_eq!(
        (
            a.sequence.as_str(),
            a.disposition.as_str(),
            a.dstchannel.as_str()
        ),
        ("25", "FAILED", "PJSIP/1097-00000015")
    );
    assert_eq!(
        (
            b.sequence.as_str(),
            b.disposition.as_str(),
            b.dstchannel.as_str()
        ),
        ("32", "ANSWERED", "PJSIP/1001-00000017")
    );
    for l in [a, b] {
        assert_eq!(l.action_type, "QUEUE[6100]", "from the application");
        assert_eq!(l.direction, "Internal");
        assert_eq!(l.dst, "6100");
    }
    assert_eq!(b.recordfiles, "2026-12/auto-1796651616-1001-1001.wav@");
}

/// pbxgate's dialExtension (click-to-call 1001 → 1000): a Local pair
/// originated; ;2 rings the caller, ;1 then dials the callee. Two ANSWERED
/// CDRs, one of them "1000 → 1001", for one conversation.
#[test]
fn click_to_call_is_one_call_from_the_caller() {
    let cdrs = [
        r#"UniqueID=1796651532.9 | LinkedID=1796651532.8 | Sequence=7 | Source=1000 | Destination=1001 | DestinationContext=ext-local | CallerID="Ext 1000" <1000> | Channel=Local/1001@from-internal-00000001;2 | DestinationChannel=PJSIP/1001-00000004 | LastApplication=Dial | LastData=PJSIP/1001/sip:1001@127.0.0.1:16061,8 | StartTime=2026-12-07 13:52:12 | AnswerTime=2026-12-07 13:52:13 | EndTime=2026-12-07 13:52:19 | Duration=7 | BillableSeconds=5 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796651532-1000-1001.wav@"#,
        r#"UniqueID=1796651532.8 | LinkedID=1796651532.8 | Sequence=6 | Source=1001 | Destination=1000 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=Local/1001@from-internal-00000001;1 | DestinationChannel=PJSIP/1000-00000006 | LastApplication=Dial | LastData=PJSIP/1000/sip:1000@127.0.0.1:16061,8 | StartTime=2026-12-07 13:52:12 | AnswerTime=2026-12-07 13:52:13 | EndTime=2026-12-07 13:52:19 | Duration=7 | BillableSeconds=5 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796651533-1001-1000.wav@"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 1, "{call:#?}");
    let leg = &call.legs[0].cdr;
    assert_eq!((leg.src.as_str(), leg.dst.as_str()), ("1001", "1000"));
    assert_eq!(leg.channel, "PJSIP/1001-00000004", "the caller's phone");
    assert_eq!(leg.dstchannel, "PJSIP/1000-00000006");
    assert_eq!(leg.billsec, "5");
    assert_eq!(
        leg.recordfiles,
        "2026-12/auto-1796651533-1001-1000.wav@2026-12/auto-1796651532-1000-1001.wav@"
    );
    assert_eq!(call.owner, "1001");
}

/// A Dial that is not answered, then VoiceMail on the same channel: the
/// voicemail CDR starts with the Dial's variables.
#[test]
fn voicemail_after_no_answer_is_its_own_kind_of_leg() {
    let cdrs = [
        r#"UniqueID=1796660000.1 | LinkedID=1796660000.1 | Sequence=40 | Source=1001 | Destination=1099 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=PJSIP/1001-00000030 | DestinationChannel=PJSIP/1099-00000031 | LastApplication=Dial | LastData=PJSIP/1099,8 | StartTime=2026-12-07 14:00:00 | EndTime=2026-12-07 14:00:08 | Duration=8 | BillableSeconds=0 | Disposition=NO ANSWER | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796660000-1001-1099.wav@"#,
        r#"UniqueID=1796660000.1 | LinkedID=1796660000.1 | Sequence=42 | Source=1001 | Destination=1099 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=PJSIP/1001-00000030 | LastApplication=VoiceMail | LastData=1099@default,u | StartTime=2026-12-07 14:00:08 | AnswerTime=2026-12-07 14:00:08 | EndTime=2026-12-07 14:00:20 | Duration=12 | BillableSeconds=12 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796660000-1001-1099.wav@"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 2);
    let (dial, vm) = (&call.legs[0].cdr, &call.legs[1].cdr);
    assert_eq!(dial.action_type, "DIAL");
    assert_eq!(dial.recordfiles, "2026-12/auto-1796660000-1001-1099.wav@");
    assert_eq!(vm.action_type, "VM");
    assert_eq!(vm.recordfiles, "", "the Dial's file is not the voicemail's");
    assert_eq!(billed(&call), 12);
}

/// Hangup() after an unanswered Dial: Asterisk writes a second CDR of the
/// caller that reached nobody.
#[test]
fn an_application_after_an_unanswered_dial_is_not_a_leg() {
    let cdrs = [
        r#"UniqueID=1796660100.5 | LinkedID=1796660100.5 | Sequence=50 | Source=1001 | Destination=1099 | DestinationContext=ext-local-hangup | Channel=PJSIP/1001-00000040 | DestinationChannel=PJSIP/1099-00000041 | LastApplication=Dial | LastData=PJSIP/1099,8 | StartTime=2026-12-07 14:01:40 | EndTime=2026-12-07 14:01:48 | Duration=8 | BillableSeconds=0 | Disposition=NO ANSWER | PbxDirection=Internal | PbxActionType=DIAL"#,
        r#"UniqueID=1796660100.5 | LinkedID=1796660100.5 | Sequence=52 | Source=1001 | Destination=1099 | DestinationContext=ext-local-hangup | Channel=PJSIP/1001-00000040 | LastApplication=Hangup | StartTime=2026-12-07 14:01:48 | EndTime=2026-12-07 14:01:48 | Duration=0 | BillableSeconds=0 | Disposition=NO ANSWER | PbxDirection=Internal | PbxActionType=DIAL"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 1, "{call:#?}");
    assert_eq!(call.legs[0].cdr.lastapp, "Dial");
}

/// A blind transfer by the caller: the transferee's leg has its own src, but
/// is the same call.
#[test]
fn a_transferred_call_keeps_its_first_caller_as_owner() {
    let cdrs = [
        r#"UniqueID=1796651560.18 | LinkedID=1796651560.17 | Sequence=15 | Source=1000 | Destination=1099 | DestinationContext=from-internal | Channel=PJSIP/1000-0000000a | DestinationChannel=PJSIP/1099-0000000c | LastApplication=Dial | LastData=PJSIP/1099,8 | StartTime=2026-12-07 13:52:44 | AnswerTime=2026-12-07 13:52:45 | EndTime=2026-12-07 13:52:50 | Duration=6 | BillableSeconds=5 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL"#,
        r#"UniqueID=1796651560.17 | LinkedID=1796651560.17 | Sequence=13 | Source=1001 | Destination=1000 | DestinationContext=ext-local | Channel=PJSIP/1001-00000009 | DestinationChannel=PJSIP/1000-0000000a | LastApplication=Dial | LastData=PJSIP/1000,8 | StartTime=2026-12-07 13:52:40 | AnswerTime=2026-12-07 13:52:41 | EndTime=2026-12-07 13:52:44 | Duration=4 | BillableSeconds=3 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796651560-1001-1000.wav@"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 2);
    assert_eq!(call.owner, "1001");
    assert_eq!(call.legs[0].cdr.src, "1001");
    assert_eq!(call.legs[1].cdr.src, "1000");
    assert_eq!(billed(&call), 8);
}

#[test]
fn a_leg_without_tags_takes_the_calls_direction_and_its_applications_type() {
    let mut a = cdr(QUEUE_ANSWERED[0]);
    a.action_type.clear();
    let call = reduce(vec![a]);
    let leg = &call.legs[0].cdr;
    assert_eq!(leg.action_type, "QUEUE[6000]");
    assert_eq!(leg.direction, "Internal", "no trunk: internal");
    let mut inbound = cdr(QUEUE_ANSWERED[0]);
    inbound.src_trunk = "trunk".into();
    assert_eq!(reduce(vec![inbound]).legs[0].cdr.direction, "Inbound");
}

#[test]
fn nothing_in_nothing_out_and_helpers_are_left_out() {
    assert!(reduce(vec![]).legs.is_empty());
    let mut helper = cdr(QUEUE_ANSWERED[1]);
    helper.channel = "Local/1000@ext-local-00000009;1".into();
    helper.lastapp = "Wait".into();
    let call = reduce(vec![helper]);
    assert!(call.legs.is_empty());
    assert_eq!(call.owner, "");
    // A dialling half with nothing to merge into stands for itself.
    let alone = reduce(vec![cdr(QUEUE_ANSWERED[1])]);
    assert_eq!(alone.legs.len(), 1);
}

/// An attended transfer by feature code (*2): 1001 calls 1000 (6 s), puts
/// it on hold, consults 1001's other phone through a Local channel (6 s),
/// hangs up: 1000 and that phone talk on (2 s). Asterisk's four CDRs bill
/// 21 s; the call had 14.
#[test]
fn an_attended_transfer_bills_each_conversation_once() {
    let cdrs = [
        r#"UniqueID=1796654059.1 | LinkedID=1796654059.1 | Sequence=1 | Source=1001 | Destination=1000 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=PJSIP/1001-00000001 | DestinationChannel=PJSIP/1000-00000002 | LastApplication=Dial | LastData=PJSIP/1000/sip:1000@127.0.0.1:16061,8,tTkK | StartTime=2026-12-07 14:34:19 | AnswerTime=2026-12-07 14:34:20 | EndTime=2026-12-07 14:34:26 | Duration=7 | BillableSeconds=6 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654059-1001-1000.wav@"#,
        r#"UniqueID=1796654059.1 | LinkedID=1796654059.1 | Sequence=6 | Source=1001 | Destination=1000 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=PJSIP/1001-00000001 | DestinationChannel=Local/1001@ext-local-00000000;1 | LastApplication=Dial | LastData=PJSIP/1000/sip:1000@127.0.0.1:16061,8,tTkK | StartTime=2026-12-07 14:34:26 | AnswerTime=2026-12-07 14:34:26 | EndTime=2026-12-07 14:34:33 | Duration=6 | BillableSeconds=6 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654059-1001-1000.wav@"#,
        r#"UniqueID=1796654066.4 | LinkedID=1796654059.1 | Sequence=9 | Source=1001 | Destination=1001 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=Local/1001@ext-local-00000000;1 | DestinationChannel=PJSIP/1000-00000002 | StartTime=2026-12-07 14:34:33 | AnswerTime=2026-12-07 14:34:33 | EndTime=2026-12-07 14:34:35 | Duration=2 | BillableSeconds=2 | Disposition=ANSWERED"#,
        r#"UniqueID=1796654066.5 | LinkedID=1796654059.1 | Sequence=5 | Source=1000 | Destination=1001 | DestinationContext=ext-local | CallerID="Ext 1000" <1000> | Channel=Local/1001@ext-local-00000000;2 | DestinationChannel=PJSIP/1001-00000004 | LastApplication=Dial | LastData=PJSIP/1001/sip:1001@127.0.0.1:16061,8,tTkK | StartTime=2026-12-07 14:34:26 | AnswerTime=2026-12-07 14:34:27 | EndTime=2026-12-07 14:34:35 | Duration=8 | BillableSeconds=7 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654066-1001-1001.wav@"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 3, "{call:#?}");
    assert_eq!(billed(&call), 6 + 6 + 2);
    let (talk, consult, after) = (&call.legs[0].cdr, &call.legs[1].cdr, &call.legs[2].cdr);
    assert_eq!((talk.src.as_str(), talk.dst.as_str()), ("1001", "1000"));
    assert_eq!(
        (
            consult.src.as_str(),
            consult.dst.as_str(),
            consult.dstchannel.as_str()
        ),
        ("1001", "1001", "PJSIP/1001-00000004"),
        "the consultation reached 1001's phone"
    );
    assert_eq!(consult.answer, "2026-12-07 14:34:27", "from the answer");
    assert_eq!(
        consult.recordfiles,
        "2026-12/auto-1796654066-1001-1001.wav@"
    );
    assert_eq!(after.action_type, "TRANSFER");
    assert_eq!(after.channel, "PJSIP/1001-00000004");
    assert_eq!((after.src.as_str(), after.dst.as_str()), ("1001", "1000"));
    assert_eq!(call.owner, "1001");
}

/// 1001 calls 1000, which is parked (#72) and retrieved from space 701 by
/// another phone.
#[test]
fn a_parked_call_and_its_retrieval() {
    let cdrs = [
        r#"UniqueID=1796654117.21 | LinkedID=1796654117.21 | Sequence=18 | Source=1001 | Destination=1000 | DestinationContext=ext-local | Channel=PJSIP/1001-0000000d | DestinationChannel=PJSIP/1000-0000000e | LastApplication=Dial | LastData=PJSIP/1000,8,tTkK | StartTime=2026-12-07 14:35:17 | AnswerTime=2026-12-07 14:35:18 | EndTime=2026-12-07 14:35:21 | Duration=4 | BillableSeconds=3 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL"#,
        r#"UniqueID=1796654124.25 | LinkedID=1796654117.21 | Sequence=23 | Source=1000 | Destination=701 | DestinationContext=from-internal | Channel=PJSIP/1000-00000011 | LastApplication=ParkedCall | LastData=default,701 | StartTime=2026-12-07 14:35:24 | AnswerTime=2026-12-07 14:35:24 | EndTime=2026-12-07 14:35:24 | Duration=0 | BillableSeconds=0 | Disposition=ANSWERED"#,
        r#"UniqueID=1796654117.22 | LinkedID=1796654117.21 | Sequence=21 | Source=1000 | DestinationContext=from-internal | Channel=PJSIP/1000-0000000e | LastApplication=Park | LastData=default:701 | StartTime=2026-12-07 14:35:21 | AnswerTime=2026-12-07 14:35:21 | EndTime=2026-12-07 14:35:24 | Duration=2 | BillableSeconds=2 | Disposition=ANSWERED"#,
        r#"UniqueID=1796654117.22 | LinkedID=1796654117.21 | Sequence=24 | Source=1000 | DestinationContext=from-internal | Channel=PJSIP/1000-0000000e | DestinationChannel=PJSIP/1000-00000011 | LastApplication=Park | LastData=default:701 | StartTime=2026-12-07 14:35:24 | AnswerTime=2026-12-07 14:35:24 | EndTime=2026-12-07 14:35:28 | Duration=3 | BillableSeconds=3 | Disposition=ANSWERED"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    let types: Vec<&str> = call
        .legs
        .iter()
        .map(|l| l.cdr.action_type.as_str())
        .collect();
    assert_eq!(types, ["DIAL", "PARK", "PARKEDCALL"], "{call:#?}");
    assert_eq!(call.legs[2].cdr.dst, "701");
    assert_eq!(billed(&call), 8);
    assert_eq!(call.owner, "1001");
}

/// 1001 calls 1099, which rings; 1000 picks the call up (*8).
#[test]
fn a_picked_up_call() {
    let cdrs = [
        r#"UniqueID=1796654146.32 | LinkedID=1796654146.31 | Sequence=27 | Source=1099 | Destination=*8 | DestinationContext=from-internal | Channel=PJSIP/1099-00000014 | LastApplication=AppDial | LastData=(Outgoing Line) | StartTime=2026-12-07 14:35:46 | EndTime=2026-12-07 14:35:49 | Duration=3 | BillableSeconds=0 | Disposition=NO ANSWER"#,
        r#"UniqueID=1796654146.31 | LinkedID=1796654146.31 | Sequence=26 | Source=1001 | Destination=1099 | DestinationContext=ext-local | Channel=PJSIP/1001-00000013 | DestinationChannel=PJSIP/1099-00000014 | LastApplication=Dial | LastData=PJSIP/1099,8,tTkK | StartTime=2026-12-07 14:35:46 | AnswerTime=2026-12-07 14:35:49 | EndTime=2026-12-07 14:35:49 | Duration=3 | BillableSeconds=0 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654146-1001-1099.wav@"#,
        r#"UniqueID=1796654146.31 | LinkedID=1796654146.31 | Sequence=31 | Source=1001 | Destination=1099 | DestinationContext=ext-local | Channel=PJSIP/1001-00000013 | DestinationChannel=PJSIP/1000-00000017 | LastApplication=Dial | LastData=PJSIP/1099,8,tTkK | StartTime=2026-12-07 14:35:49 | AnswerTime=2026-12-07 14:35:49 | EndTime=2026-12-07 14:35:54 | Duration=4 | BillableSeconds=4 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654146-1001-1099.wav@"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 2, "{call:#?}");
    let (rang, picked) = (&call.legs[0].cdr, &call.legs[1].cdr);
    assert_eq!(rang.disposition, "NO ANSWER");
    assert_eq!(rang.answer, "");
    assert_eq!(picked.action_type, "PICKUP");
    assert_eq!(picked.dstchannel, "PJSIP/1000-00000017");
    assert_eq!(rang.recordfiles, "");
    assert_eq!(
        picked.recordfiles, "2026-12/auto-1796654146-1001-1099.wav@",
        "the caller's recording goes on through the pickup"
    );
    assert_eq!(billed(&call), 4);
}

/// FollowMe 6500: 1099 (no answer), then 1000 answers; through Local
/// channels like a queue.
#[test]
fn follow_me_steps_are_legs() {
    let cdrs = [
        r#"UniqueID=1796654336.104 | LinkedID=1796654336.102 | Sequence=78 | Source=1001 | Destination=1099 | DestinationContext=ext-local | Channel=Local/1099@ext-local-00000007;2 | DestinationChannel=PJSIP/1099-0000003c | LastApplication=Dial | LastData=PJSIP/1099,8,tTkK | StartTime=2026-12-07 14:38:56 | EndTime=2026-12-07 14:39:00 | Duration=4 | BillableSeconds=0 | Disposition=NO ANSWER | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654336-1001-1099.wav@"#,
        r#"UniqueID=1796654336.102 | LinkedID=1796654336.102 | Sequence=76 | Source=1001 | Destination=6500 | DestinationContext=from-internal | Channel=PJSIP/1001-0000003b | DestinationChannel=Local/1099@ext-local-00000007;1 | LastApplication=FollowMe | LastData=6500,dN | StartTime=2026-12-07 14:38:56 | EndTime=2026-12-07 14:38:56 | Duration=0 | BillableSeconds=0 | Disposition=FAILED | PbxDirection=Internal | PbxActionType=FOLLOWME"#,
        r#"UniqueID=1796654336.102 | LinkedID=1796654336.102 | Sequence=83 | Source=1001 | Destination=6500 | DestinationContext=from-internal | Channel=PJSIP/1001-0000003b | DestinationChannel=Local/1000@ext-local-00000008;1 | LastApplication=FollowMe | LastData=6500,dN | StartTime=2026-12-07 14:39:00 | AnswerTime=2026-12-07 14:39:01 | EndTime=2026-12-07 14:39:06 | Duration=6 | BillableSeconds=5 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=FOLLOWME"#,
        r#"UniqueID=1796654340.108 | LinkedID=1796654336.102 | Sequence=82 | Source=1001 | Destination=1000 | DestinationContext=ext-local | Channel=Local/1000@ext-local-00000008;2 | DestinationChannel=PJSIP/1000-0000003e | LastApplication=Dial | LastData=PJSIP/1000,8,tTkK | StartTime=2026-12-07 14:39:00 | AnswerTime=2026-12-07 14:39:01 | EndTime=2026-12-07 14:39:06 | Duration=6 | BillableSeconds=5 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654340-1001-1000.wav@"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 2, "{call:#?}");
    let (first, second) = (&call.legs[0].cdr, &call.legs[1].cdr);
    assert_eq!(
        (
            first.disposition.as_str(),
            first.duration.as_str(),
            first.dstchannel.as_str()
        ),
        ("NO ANSWER", "4", "PJSIP/1099-0000003c"),
        "how the step ended, not the FollowMe's FAILED"
    );
    assert_eq!(second.dstchannel, "PJSIP/1000-0000003e");
    for l in [first, second] {
        assert_eq!(l.action_type, "FOLLOWME");
        assert_eq!(l.dst, "6500");
    }
    assert_eq!(billed(&call), 5);
}

/// pbxgate's dialQueue (click-to-call to queue 6000): the originated pair's
/// ;1 half runs the queue, whose member is itself a Local pair.
#[test]
fn click_to_call_to_a_queue_keeps_its_queue_leg() {
    let cdrs = [
        r#"UniqueID=1796654960.522 | LinkedID=1796654960.522 | Sequence=415 | Source=1001 | Destination=s | DestinationContext=rig-queue | CallerID="Ext 1001" <1001> | Channel=Local/1001@from-internal-00000025;1 | DestinationChannel=Local/1000@ext-local-00000026;1 | LastApplication=Queue | LastData=6000,,,,30 | StartTime=2026-12-07 14:49:20 | AnswerTime=2026-12-07 14:49:21 | EndTime=2026-12-07 14:49:28 | Duration=8 | BillableSeconds=6 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=QUEUE[6000]"#,
        r#"UniqueID=1796654960.523 | LinkedID=1796654960.522 | Sequence=416 | Source=1000 | Destination=1001 | DestinationContext=ext-local | CallerID="Ext 1000" <1000> | Channel=Local/1001@from-internal-00000025;2 | DestinationChannel=PJSIP/1001-0000012e | LastApplication=Dial | LastData=PJSIP/1001/sip:1001@127.0.0.1:16061,8,tTkK | StartTime=2026-12-07 14:49:20 | AnswerTime=2026-12-07 14:49:21 | EndTime=2026-12-07 14:49:28 | Duration=8 | BillableSeconds=6 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654960-6000-1001.wav@"#,
        r#"UniqueID=1796654961.527 | LinkedID=1796654960.522 | Sequence=420 | Source=1001 | Destination=1000 | DestinationContext=ext-local | CallerID="Ext 1001" <1001> | Channel=Local/1000@ext-local-00000026;2 | DestinationChannel=PJSIP/1000-00000130 | LastApplication=Dial | LastData=PJSIP/1000/sip:1000@127.0.0.1:16061,8,tTkK | StartTime=2026-12-07 14:49:21 | AnswerTime=2026-12-07 14:49:22 | EndTime=2026-12-07 14:49:28 | Duration=6 | BillableSeconds=5 | Disposition=ANSWERED | PbxDirection=Internal | PbxActionType=DIAL | PbxRecordFiles=2026-12/auto-1796654961-1001-1000.wav@"#,
    ];
    let call = reduce(cdrs.iter().map(|l| cdr(l)).collect());
    assert_eq!(call.legs.len(), 1, "{call:#?}");
    let leg = &call.legs[0].cdr;
    assert_eq!(leg.channel, "PJSIP/1001-0000012e", "the caller's phone");
    assert_eq!(leg.dstchannel, "PJSIP/1000-00000130", "the agent");
    assert_eq!((leg.src.as_str(), leg.dst.as_str()), ("1001", "6000"));
    assert_eq!(leg.action_type, "QUEUE[6000]");
    assert_eq!(leg.billsec, "6", "from the agent's answer");
    assert_eq!(call.owner, "1001");
}

/// A call generator for the property test: chains of flows on one caller,
/// written as Asterisk writes their CDRs (Local pairs for queue members,
/// a channel's later CDRs inheriting its variables, empty followers), with
/// what a billing system must get out of them.
struct Chain {
    rng: u64,
    seq: u64,
    chan: u64,
    t: i64,
    cdrs: Vec<AsteriskCdr>,
    /// Seconds that were billed (bridged, or answered by the PBX itself).
    billed: u64,
    /// Legs the entry must have.
    legs: usize,
}

impl Chain {
    fn next(&mut self, n: u64) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.rng >> 33) % n
    }

    fn time(&self, t: i64) -> String {
        let base = jiff::civil::date(2026, 12, 7).at(10, 0, 0, 0);
        let dt = base
            .checked_add(jiff::SignedDuration::from_secs(t))
            .unwrap();
        dt.strftime("%Y-%m-%d %H:%M:%S").to_string()
    }

    fn channel(&mut self, who: &str) -> String {
        self.chan += 1;
        format!("PJSIP/{who}-{:08x}", self.chan)
    }

    /// One CDR of party A `a` (uniqueid `uid`, caller `src`) that ran `app`
    /// towards `dstchannel`: rang `ring` s, then `talk` s if answered.
    #[allow(clippy::too_many_arguments)]
    fn cdr(
        &mut self,
        src: &str,
        a: &str,
        uid: &str,
        dstchannel: &str,
        app: &str,
        data: &str,
        ring: i64,
        talk: Option<i64>,
        inherited: &AsteriskCdr,
    ) -> AsteriskCdr {
        self.seq += 1 + self.next(3);
        let start = self.t;
        let end = start + ring + talk.unwrap_or(0);
        let mut c = inherited.clone();
        c.uniqueid = uid.into();
        c.linkedid = "1796700000.1".into();
        c.sequence = self.seq.to_string();
        c.src = src.into();
        c.clid = format!("\"\" <{src}>");
        c.channel = a.into();
        c.dstchannel = dstchannel.into();
        c.lastapp = app.into();
        c.lastdata = data.into();
        c.start = self.time(start);
        c.answer = talk.map(|_| self.time(start + ring)).unwrap_or_default();
        c.end = self.time(end);
        c.duration = (end - start).to_string();
        c.billsec = talk.unwrap_or(0).to_string();
        c.disposition = if talk.is_some() {
            "ANSWERED"
        } else if dstchannel.is_empty() {
            "FAILED"
        } else {
            "NO ANSWER"
        }
        .into();
        c
    }

    /// Party A leaves a voicemail (a leg of its own, answered by the PBX).
    fn voicemail(&mut self, src: &str, a: &str, uid: &str, vars: &AsteriskCdr) {
        let secs = 1 + self.next(30) as i64;
        let c = self.cdr(
            src,
            a,
            uid,
            "",
            "VoiceMail",
            "1000@default,u",
            0,
            Some(secs),
            vars,
        );
        self.cdrs.push(c);
        self.billed += secs as u64;
        self.legs += 1;
    }

    fn generate(seed: u64) -> Chain {
        let mut ch = Chain {
            rng: seed,
            seq: 0,
            chan: 0,
            t: 0,
            cdrs: Vec::new(),
            billed: 0,
            legs: 0,
        };
        let mut src = "1001".to_string();
        let mut a = ch.channel("1001");
        let mut uid = "1796700000.1".to_string();
        // The variables on party A's channel, as its next CDR will inherit them.
        let mut vars = AsteriskCdr {
            direction: "Internal".into(),
            ..Default::default()
        };
        let steps = 1 + ch.next(5);
        for _ in 0..steps {
            match ch.next(5) {
                // IVR menu, left with pbxgate-ivr-exit (a fresh CDR after it).
                0 => {
                    let menu = 1 + ch.next(10) as i64;
                    let mut v = vars.clone();
                    v.action_type = "IVR[7000]".into();
                    let c = ch.cdr(&src, &a, &uid, "", "ForkCDR", "erv", 0, Some(menu), &v);
                    ch.cdrs.push(c);
                    ch.t += menu;
                    ch.billed += menu as u64;
                    ch.legs += 1;
                    vars.action_type.clear();
                    vars.recordfiles.clear();
                }
                // A queue: members rung through Local pairs, maybe one answers.
                1 => {
                    let members = 1 + ch.next(3);
                    let answered_by = ch.next(members + 1);
                    let mut v = vars.clone();
                    v.action_type = "QUEUE[6000]".into();
                    for m in 0..members {
                        let ext = format!("20{m:02}");
                        let base = format!("Local/{ext}@ext-local-{:08x}", ch.chan + 100);
                        let phone = ch.channel(&ext);
                        let talk = (m == answered_by).then(|| 1 + ch.next(60) as i64);
                        let ring = 1 + ch.next(5) as i64;
                        let parent = ch.cdr(
                            &src,
                            &a,
                            &uid,
                            &format!("{base};1"),
                            "Queue",
                            "6000,,,,30",
                            ring,
                            talk,
                            &v,
                        );
                        let child_vars = AsteriskCdr {
                            direction: "Internal".into(),
                            action_type: "DIAL".into(),
                            recordfiles: talk
                                .map(|_| format!("2026-12/auto-{}-{src}-{ext}.wav@", ch.t))
                                .unwrap_or_default(),
                            ..Default::default()
                        };
                        let child = ch.cdr(
                            &src,
                            &format!("{base};2"),
                            &format!("1796700000.{}", 1000 + ch.chan),
                            &phone,
                            "Dial",
                            &format!("PJSIP/{ext},30"),
                            ring,
                            talk,
                            &child_vars,
                        );
                        ch.cdrs.push(parent);
                        ch.cdrs.push(child);
                        ch.legs += 1;
                        if let Some(talk) = talk {
                            ch.billed += talk as u64;
                            ch.t += ring + talk;
                        }
                    }
                    if answered_by < members {
                        return ch;
                    }
                    ch.t += 5;
                }
                // A Dial: answered (the call may then be transferred), or not
                // (followed by voicemail, a Hangup() follower, or more).
                2 | 3 => {
                    let ext = format!("10{:02}", 10 + ch.next(80));
                    let b = ch.channel(&ext);
                    let ring = 1 + ch.next(8) as i64;
                    let talk = (ch.next(2) == 0).then(|| 1 + ch.next(120) as i64);
                    let mut v = vars.clone();
                    if v.action_type.is_empty() {
                        v.action_type = "DIAL".into();
                    }
                    v.recordfiles
                        .push_str(&format!("2026-12/auto-{}-{src}-{ext}.wav@", ch.t));
                    let c = ch.cdr(
                        &src,
                        &a,
                        &uid,
                        &b,
                        "Dial",
                        &format!("PJSIP/{ext},30"),
                        ring,
                        talk,
                        &v,
                    );
                    ch.cdrs.push(c);
                    ch.legs += 1;
                    vars = v;
                    ch.t += ring;
                    match talk {
                        Some(talk) => {
                            ch.billed += talk as u64;
                            ch.t += talk;
                            if ch.next(2) == 0 {
                                return ch;
                            }
                            // Blind transfer by the caller: the callee's
                            // channel is party A from now on.
                            src = ext;
                            a = b;
                            uid = format!("1796700000.{}", 2000 + ch.chan);
                            vars = AsteriskCdr {
                                direction: "Internal".into(),
                                ..Default::default()
                            };
                        }
                        None if ch.next(2) == 0 => {
                            ch.voicemail(&src, &a, &uid, &vars);
                            return ch;
                        }
                        None => {
                            let c = ch.cdr(&src, &a, &uid, "", "Hangup", "", 0, None, &vars);
                            ch.cdrs.push(c);
                            return ch;
                        }
                    }
                }
                // Voicemail straight away.
                _ => {
                    ch.voicemail(&src, &a, &uid, &vars);
                    return ch;
                }
            }
        }
        ch
    }
}

/// Random chains of flows (IVR → queue → transfer → voicemail …), their CDRs
/// in random arrival order: exactly one entry per call, every billed second
/// once, no two legs billing the same moment, each leg typed and directed.
#[test]
fn chained_flows_keep_the_billing_invariants() {
    for seed in 0..3000u64 {
        let mut ch = Chain::generate(seed.wrapping_mul(0x9e3779b97f4a7c15) | 1);
        // Asterisk sends CDRs as channels hang up: any order.
        let mut arrival = ch.cdrs.clone();
        for i in (1..arrival.len()).rev() {
            let j = ch.next(i as u64 + 1) as usize;
            arrival.swap(i, j);
        }
        let call = reduce(arrival);
        let ctx = || {
            format!(
                "seed {seed}:\n{}",
                call.legs
                    .iter()
                    .map(|l| format!(
                        "  {} {} {}->{} {} {} billsec={} rec={}",
                        l.cdr.sequence,
                        l.cdr.action_type,
                        l.cdr.src,
                        l.cdr.dst,
                        l.cdr.lastapp,
                        l.cdr.disposition,
                        l.cdr.billsec,
                        l.cdr.recordfiles
                    ))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        };
        assert_eq!(call.owner, "1001", "{}", ctx());
        assert_eq!(call.legs.len(), ch.legs, "{}", ctx());
        assert_eq!(billed(&call), ch.billed, "{}", ctx());
        let seqs: Vec<u64> = call
            .legs
            .iter()
            .map(|l| l.cdr.sequence.parse().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{}", ctx());
        let mut spans: Vec<(i64, i64)> = call
            .legs
            .iter()
            .filter(|l| l.cdr.billsec != "0")
            .map(|l| {
                let end = secs(&l.cdr.end).unwrap();
                (end - l.cdr.billsec.parse::<i64>().unwrap(), end)
            })
            .collect();
        spans.sort();
        assert!(
            spans.windows(2).all(|w| w[0].1 <= w[1].0),
            "overlap {spans:?}\n{}",
            ctx()
        );
        let mut files = Vec::new();
        for l in &call.legs {
            assert!(!l.cdr.action_type.is_empty(), "{}", ctx());
            assert_eq!(l.cdr.direction, "Internal", "{}", ctx());
            assert!(!l.cdr.channel.starts_with("Local/"), "{}", ctx());
            if l.cdr.lastapp == "VoiceMail" {
                assert_eq!(l.cdr.action_type, "VM", "{}", ctx());
            }
            for f in l.cdr.recordfiles.split('@').filter(|f| !f.is_empty()) {
                assert!(!files.contains(&f), "{f} on two legs\n{}", ctx());
                files.push(f);
            }
        }
    }
}
