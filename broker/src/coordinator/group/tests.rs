use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn config() -> GroupConfig {
    GroupConfig {
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 60_000,
        initial_rebalance_delay_ms: 0,
    }
}

fn subscription(topics: &[&str]) -> Bytes {
    let mut out = vec![0, 1];
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}

fn join_request(member_id: &str, fresh: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| ((*p).to_owned(), subscription(&["orders"])))
            .collect(),
        require_known_member_id: true,
        new_member_id: fresh.to_owned(),
    }
}

fn static_join(instance: &str, fresh: &str) -> JoinRequest {
    JoinRequest {
        instance_id: Some(instance.to_owned()),
        ..join_request("", fresh, &["range"])
    }
}

fn sync_request(member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        generation,
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| ((*m).to_owned(), Bytes::copy_from_slice(a.as_bytes())))
            .collect(),
    }
}

/// The join replies in `out`, by token.
fn joins(out: &[Output]) -> BTreeMap<Token, JoinResult> {
    out.iter()
        .filter_map(|o| match o {
            Output::Join { to, result } => Some((*to, result.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(out: &[Output]) -> BTreeMap<Token, SyncResult> {
    out.iter()
        .filter_map(|o| match o {
            Output::Sync { to, result } => Some((*to, result.clone())),
            _ => None,
        })
        .collect()
}

/// A dynamic member's two-step join (KIP-394); returns its member id. The second join waits.
fn join_dynamic(group: &mut Group, fresh: &str, to: Token, now: u64) -> Vec<Output> {
    let mut out = Vec::new();
    group.join(
        join_request("", fresh, &["range"]),
        to,
        now,
        0,
        &config(),
        &mut out,
    );
    let replies = joins(&out);
    assert_eq!(replies[&to].error, Some(GroupError::MemberIdRequired));
    assert_eq!(replies[&to].member_id, fresh);
    let mut out = Vec::new();
    group.join(
        join_request(fresh, "unused", &["range"]),
        to,
        now,
        0,
        &config(),
        &mut out,
    );
    out
}

/// Three members joined and synced: a Stable group at generation 1 with member "a" leading.
fn stable_group() -> Group {
    let mut group = Group::new("g".into(), 0);
    let mut out = Vec::new();
    for (member, token) in [("a", 1), ("b", 2), ("c", 3)] {
        let mut request = join_request(member, "unused", &["range"]);
        request.require_known_member_id = false;
        request.member_id = String::new();
        request.new_member_id = member.to_owned();
        group.join(request, token, 0, 0, &config(), &mut out);
    }
    // Before c joined, a and b were enough: the group completed, then c's join rebalanced.
    // Rejoin everyone for one clean generation.
    let generation = group.generation();
    if group.state() == GroupState::PreparingRebalance {
        for (member, token) in [("a", 11), ("b", 12)] {
            group.join(
                join_request(member, "unused", &["range"]),
                token,
                0,
                0,
                &config(),
                &mut out,
            );
        }
    }
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert!(group.generation() >= generation);
    let leader = group.leader().unwrap().to_owned();
    let generation = group.generation();
    let mut out = Vec::new();
    group.sync(
        sync_request(
            &leader,
            generation,
            &[("a", "pa"), ("b", "pb"), ("c", "pc")],
        ),
        20,
        1,
        0,
        &mut out,
    );
    assert_eq!(group.state(), GroupState::Stable);
    group
}

#[test]
fn a_new_member_gets_its_id_first_then_leads_a_group_of_one() {
    let mut group = Group::new("g".into(), 0);
    let out = join_dynamic(&mut group, "m-1", 7, 0);
    let replies = joins(&out);
    let reply = &replies[&7];
    assert_eq!(reply.error, None);
    assert_eq!(reply.generation, 1);
    assert_eq!(reply.leader, "m-1");
    assert_eq!(reply.member_id, "m-1");
    assert_eq!(reply.protocol_name.as_deref(), Some("range"));
    assert_eq!(reply.members.len(), 1);
    assert_eq!(reply.members[0].metadata, subscription(&["orders"]));
    assert_eq!(group.state(), GroupState::CompletingRebalance);

    let mut out = Vec::new();
    group.sync(sync_request("m-1", 1, &[("m-1", "all")]), 8, 1, 5, &mut out);
    assert_eq!(out[0], Output::StoreGroup);
    assert_eq!(syncs(&out)[&8].assignment, Bytes::from_static(b"all"));
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(group.heartbeat("m-1", None, 1, 2), Ok(()));
}

#[test]
fn followers_wait_for_the_leaders_assignment() {
    let mut group = Group::new("g".into(), 0);
    let mut out = Vec::new();
    let mut first = join_request("", "a", &["range"]);
    first.require_known_member_id = false;
    group.join(first, 1, 0, 0, &config(), &mut out);
    // a alone completes generation 1; b joining starts generation 2, which waits for a.
    let mut second = join_request("", "b", &["range"]);
    second.require_known_member_id = false;
    let mut out = Vec::new();
    group.join(second, 2, 1, 0, &config(), &mut out);
    assert!(joins(&out).is_empty(), "b waits for a to rejoin");
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat("a", None, 1, 2),
        Err(GroupError::RebalanceInProgress)
    );
    let mut out = Vec::new();
    group.join(
        join_request("a", "x", &["range"]),
        3,
        2,
        0,
        &config(),
        &mut out,
    );
    let replies = joins(&out);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[&3].generation, 2);
    assert_eq!(replies[&2].generation, 2);
    assert_eq!(replies[&3].leader, "a");
    assert_eq!(replies[&3].members.len(), 2, "the leader sees every member");
    assert!(replies[&2].members.is_empty(), "a follower sees none");

    let mut out = Vec::new();
    group.sync(sync_request("b", 2, &[]), 4, 3, 0, &mut out);
    assert!(syncs(&out).is_empty(), "b waits for the leader");
    group.sync(
        sync_request("a", 2, &[("a", "pa"), ("b", "pb")]),
        5,
        3,
        0,
        &mut out,
    );
    let replies = syncs(&out);
    assert_eq!(replies[&4].assignment, Bytes::from_static(b"pb"));
    assert_eq!(replies[&5].assignment, Bytes::from_static(b"pa"));
}

#[test]
fn a_member_that_stops_heartbeating_is_removed_and_the_rest_rebalance() {
    let mut group = stable_group();
    let generation = group.generation();
    // c last heard from the coordinator when generation 1 completed, at 0.
    let start = 0;
    // a and b heartbeat; c goes silent.
    for now in [4_000, 8_000] {
        assert_eq!(group.heartbeat("a", None, generation, start + now), Ok(()));
        assert_eq!(group.heartbeat("b", None, generation, start + now), Ok(()));
    }
    let deadline = group.next_deadline().unwrap();
    assert_eq!(deadline, start + SESSION as u64, "c's session ends first");
    let mut out = Vec::new();
    group.tick(deadline - 1, 0, &config(), &mut out);
    assert_eq!(
        group.state(),
        GroupState::Stable,
        "not before the session timeout"
    );
    group.tick(deadline, 0, &config(), &mut out);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert!(group.members().all(|m| m.id != "c"));
    assert_eq!(
        group.heartbeat("a", None, generation, deadline + 1),
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(
        group.heartbeat("c", None, generation, deadline + 1),
        Err(GroupError::UnknownMemberId)
    );
    let mut out = Vec::new();
    group.join(
        join_request("a", "x", &["range"]),
        30,
        deadline + 2,
        0,
        &config(),
        &mut out,
    );
    group.join(
        join_request("b", "x", &["range"]),
        31,
        deadline + 2,
        0,
        &config(),
        &mut out,
    );
    let replies = joins(&out);
    assert_eq!(replies[&30].generation, generation + 1);
    assert_eq!(replies[&30].members.len(), 2);
}

#[test]
fn members_that_do_not_rejoin_within_the_rebalance_timeout_are_dropped() {
    let mut group = stable_group();
    let generation = group.generation();
    let mut out = Vec::new();
    // a changes its subscription: everyone must rejoin.
    let mut changed = join_request("a", "x", &["range"]);
    changed.protocols[0].1 = subscription(&["orders", "payments"]);
    group.join(changed, 40, 100, 0, &config(), &mut out);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    group.join(
        join_request("b", "x", &["range"]),
        41,
        200,
        0,
        &config(),
        &mut out,
    );
    // c keeps heartbeating but never rejoins.
    assert_eq!(
        group.heartbeat("c", None, generation, 5_000),
        Err(GroupError::RebalanceInProgress)
    );
    let mut out = Vec::new();
    group.tick(100 + REBALANCE as u64, 0, &config(), &mut out);
    let replies = joins(&out);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[&40].generation, generation + 1);
    assert!(group.members().all(|m| m.id != "c"));
    assert_eq!(group.state(), GroupState::CompletingRebalance);
}

#[test]
fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
    let mut group = Group::new("g".into(), 0);
    let mut out = Vec::new();
    group.join(
        static_join("worker-1", "w1-a"),
        1,
        0,
        0,
        &config(),
        &mut out,
    );
    group.join(
        static_join("worker-2", "w2-a"),
        2,
        0,
        0,
        &config(),
        &mut out,
    );
    // worker-1 alone completed generation 1; worker-2 started generation 2.
    group.join(
        JoinRequest {
            member_id: "w1-a".into(),
            ..static_join("worker-1", "unused")
        },
        3,
        0,
        0,
        &config(),
        &mut out,
    );
    let generation = group.generation();
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    let mut out = Vec::new();
    let leader = group.leader().unwrap().to_owned();
    group.sync(
        sync_request(&leader, generation, &[("w1-a", "p0"), ("w2-a", "p1")]),
        4,
        1,
        0,
        &mut out,
    );
    assert_eq!(group.state(), GroupState::Stable);

    // worker-2 restarts: it joins with no member id and the same instance id.
    let mut out = Vec::new();
    group.join(
        static_join("worker-2", "w2-b"),
        5,
        2_000,
        0,
        &config(),
        &mut out,
    );
    let reply = &joins(&out)[&5];
    assert_eq!(reply.error, None);
    assert_eq!(reply.member_id, "w2-b");
    assert_eq!(reply.generation, generation, "no new generation");
    assert_eq!(group.state(), GroupState::Stable, "no rebalance");
    assert!(out.contains(&Output::StoreGroup));
    let mut out = Vec::new();
    group.sync(
        SyncRequest {
            instance_id: Some("worker-2".into()),
            ..sync_request("w2-b", generation, &[])
        },
        6,
        2_001,
        0,
        &mut out,
    );
    assert_eq!(syncs(&out)[&6].assignment, Bytes::from_static(b"p1"));
    // The old incarnation is fenced.
    assert_eq!(
        group.heartbeat("w2-a", Some("worker-2"), generation, 2_002),
        Err(GroupError::FencedInstanceId)
    );
}

#[test]
fn leaving_members_trigger_a_rebalance_and_the_last_one_empties_the_group() {
    let mut group = stable_group();
    let generation = group.generation();
    let mut out = Vec::new();
    let results = group.leave(
        &[("c".into(), None), ("nobody".into(), None)],
        10,
        0,
        &config(),
        &mut out,
    );
    assert_eq!(results, vec![Ok(()), Err(GroupError::UnknownMemberId)]);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    let results = group.leave(
        &[("a".into(), None), ("b".into(), None)],
        11,
        500,
        &config(),
        &mut out,
    );
    assert_eq!(results, vec![Ok(()), Ok(())]);
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.generation(), generation + 1);
    assert_eq!(group.state_timestamp(), 500);
    assert!(out.contains(&Output::StoreGroup));
}

#[test]
fn the_protocol_all_members_support_wins_by_vote() {
    let mut group = Group::new("g".into(), 0);
    let mut out = Vec::new();
    let mut a = join_request("", "a", &["range", "roundrobin"]);
    a.require_known_member_id = false;
    group.join(a, 1, 0, 0, &config(), &mut out);
    let mut b = join_request("", "b", &["roundrobin", "range"]);
    b.require_known_member_id = false;
    group.join(b, 2, 0, 0, &config(), &mut out);
    let mut c = join_request("", "c", &["roundrobin", "range", "sticky"]);
    c.require_known_member_id = false;
    group.join(c, 3, 0, 0, &config(), &mut out);
    let mut out = Vec::new();
    for (m, t) in [("a", 4), ("b", 5)] {
        let protocols: &[&str] = if m == "a" {
            &["range", "roundrobin"]
        } else {
            &["roundrobin", "range"]
        };
        group.join(
            join_request(m, "x", protocols),
            t,
            0,
            0,
            &config(),
            &mut out,
        );
    }
    let replies = joins(&out);
    assert!(!replies.is_empty());
    for reply in replies.values() {
        assert_eq!(reply.protocol_name.as_deref(), Some("roundrobin"));
    }
    // A member with no protocol in common is refused.
    let mut out = Vec::new();
    let mut d = join_request("", "d", &["sticky"]);
    d.require_known_member_id = false;
    group.join(d, 9, 0, 0, &config(), &mut out);
    assert_eq!(
        joins(&out)[&9].error,
        Some(GroupError::InconsistentGroupProtocol)
    );
}

#[test]
fn session_timeouts_outside_the_bounds_are_refused() {
    let mut group = Group::new("g".into(), 0);
    let mut out = Vec::new();
    let mut short = join_request("", "a", &["range"]);
    short.session_timeout_ms = 1_000;
    group.join(short, 1, 0, 0, &config(), &mut out);
    assert_eq!(
        joins(&out)[&1].error,
        Some(GroupError::InvalidSessionTimeout)
    );
    assert_eq!(group.members().count(), 0);
}

#[test]
fn commits_are_checked_against_the_generation() {
    let mut group = stable_group();
    let generation = group.generation();
    assert_eq!(group.validate_commit("a", None, generation), Ok(()));
    assert_eq!(
        group.validate_commit("a", None, generation - 1),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        group.validate_commit("zz", None, generation),
        Err(GroupError::UnknownMemberId)
    );
    let empty = Group::new("e".into(), 0);
    assert_eq!(
        empty.validate_commit("", None, -1),
        Ok(()),
        "assign() consumers commit"
    );
    assert_eq!(
        empty.validate_commit("x", None, 3),
        Err(GroupError::IllegalGeneration)
    );
    // During CompletingRebalance the assignment is not known yet.
    let mut out = Vec::new();
    group.join(
        join_request("a", "x", &["range", "roundrobin"]),
        50,
        5,
        0,
        &config(),
        &mut out,
    );
    group.join(
        join_request("b", "x", &["range"]),
        51,
        5,
        0,
        &config(),
        &mut out,
    );
    group.join(
        join_request("c", "x", &["range"]),
        52,
        5,
        0,
        &config(),
        &mut out,
    );
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert_eq!(
        group.validate_commit("a", None, group.generation()),
        Err(GroupError::RebalanceInProgress)
    );
}

#[test]
fn a_new_group_waits_for_the_initial_delay_and_takes_everyone_arriving_meanwhile() {
    let config = GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..config()
    };
    let mut group = Group::new("g".into(), 0);
    let mut out = Vec::new();
    for (i, member) in ["a", "b", "c"].into_iter().enumerate() {
        let mut request = join_request("", member, &["range"]);
        request.require_known_member_id = false;
        group.join(
            request,
            i as Token + 1,
            1_000 * i as u64,
            0,
            &config,
            &mut out,
        );
    }
    assert!(joins(&out).is_empty());
    assert_eq!(group.next_deadline(), Some(2_000 + 3_000));
    group.tick(4_999, 0, &config, &mut out);
    assert!(joins(&out).is_empty());
    group.tick(5_000, 0, &config, &mut out);
    let replies = joins(&out);
    assert_eq!(replies.len(), 3);
    assert!(replies.values().all(|r| r.generation == 1));
}

#[test]
fn a_restored_group_is_stable_with_its_members() {
    let group = stable_group();
    let value = group.to_value();
    let mut restored = Group::restore("g".into(), value.clone(), 100);
    assert_eq!(restored.state(), GroupState::Stable);
    assert_eq!(restored.generation(), group.generation());
    assert_eq!(restored.to_value(), value);
    assert_eq!(
        restored.heartbeat("a", None, group.generation(), 200),
        Ok(())
    );
    let mut out = Vec::new();
    restored.sync(
        sync_request("b", group.generation(), &[]),
        1,
        300,
        0,
        &mut out,
    );
    assert_eq!(syncs(&out)[&1].assignment, Bytes::from_static(b"pb"));
}

#[test]
fn subscriptions_name_their_topics() {
    assert_eq!(
        subscription_topics(&subscription(&["orders", "payments"])),
        vec!["orders".to_owned(), "payments".to_owned()]
    );
    assert!(subscription_topics(&[0, 1, 0]).is_empty());
    assert!(subscription_topics(&[0, 1, 0, 0, 0, 5, 0, 9]).is_empty());
}

#[test]
fn a_repeated_join_or_sync_answers_the_earlier_request() {
    let mut group = stable_group();
    let mut out = Vec::new();
    let mut changed = join_request("a", "x", &["range"]);
    changed.protocols[0].1 = subscription(&["orders", "payments"]);
    group.join(changed.clone(), 60, 10, 0, &config(), &mut out);
    assert!(joins(&out).is_empty(), "waits for b and c");
    let mut out = Vec::new();
    group.join(changed, 61, 20, 0, &config(), &mut out);
    assert_eq!(
        joins(&out)[&60].error,
        Some(GroupError::RebalanceInProgress),
        "the first request is not left waiting"
    );
    let mut out = Vec::new();
    group.join(
        join_request("b", "x", &["range"]),
        62,
        30,
        0,
        &config(),
        &mut out,
    );
    group.join(
        join_request("c", "x", &["range"]),
        63,
        30,
        0,
        &config(),
        &mut out,
    );
    let replies = joins(&out);
    assert_eq!(replies.len(), 3, "61, 62 and 63 complete the generation");
    let generation = group.generation();
    let follower = if group.leader() == Some("b") {
        "c"
    } else {
        "b"
    };
    let mut out = Vec::new();
    group.sync(sync_request(follower, generation, &[]), 70, 40, 0, &mut out);
    group.sync(sync_request(follower, generation, &[]), 71, 41, 0, &mut out);
    assert_eq!(
        syncs(&out)[&70].error,
        Some(GroupError::RebalanceInProgress)
    );
}
