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
