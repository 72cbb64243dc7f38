//! One consumer group's membership protocol as a pure state machine: requests and clock ticks go
//! in, replies and "store the group" come out. No tasks, no I/O, no clock of its own: `now` is a
//! monotonic millisecond count the caller passes in, so session and rebalance timeouts are
//! events a test can fire by passing a later `now`.
//!
//! The states are Kafka's: Empty (no members; committed offsets may remain), PreparingRebalance
//! (waiting for members to (re)join), CompletingRebalance (the leader computes the assignment),
//! Stable, and Dead (deleted). Assignment is the clients' job (range, roundrobin,
//! cooperative-sticky run in the group leader); the coordinator picks the protocol every member
//! supports, forwards the members' subscriptions to the leader and the leader's assignment to
//! each member. Cooperative rebalancing needs nothing more from the broker: its members rejoin
//! twice. Static members (KIP-345, `group.instance.id`) keep their assignment across restarts:
//! a known instance rejoining a stable group gets a new member id and its old assignment without
//! a rebalance. New dynamic members first get MEMBER_ID_REQUIRED with their id (KIP-394).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::records::{GroupValue, MemberValue};

/// Group-wide limits from the broker config.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// How long a new group waits for more members before its first rebalance
    /// (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

/// Why a group request is refused; the handlers turn these into Kafka error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("the member's generation is not the group's")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("another member uses this group instance id")]
    FencedInstanceId,
    #[error("the member's protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("the session timeout is outside the broker's bounds")]
    InvalidSessionTimeout,
    #[error("a new member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("the group is being deleted")]
    CoordinatorNotAvailable,
    #[error("another broker coordinates this group")]
    NotCoordinator,
    #[error("the coordinator is loading the group")]
    CoordinatorLoadInProgress,
    #[error("the group still has members")]
    NonEmptyGroup,
    #[error("no such group")]
    GroupIdNotFound,
    #[error("the group's members are subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("malformed request field")]
    InvalidRequest,
}

/// Identifies a waiting request, so its reply can find the connection that sent it.
pub type Token = u64;

#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4 and later: a new dynamic member first gets its id back with
    /// MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// A fresh id, used if this request creates or replaces a member.
    pub new_member_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
    /// A static leader rejoining a stable group: it sees the members but must not reassign.
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(error: GroupError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: GroupError) -> Self {
        Self {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// What the caller must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Join {
        to: Token,
        result: JoinResult,
    },
    Sync {
        to: Token,
        result: SyncResult,
    },
    /// Membership or assignment changed: write the group's metadata record before replying.
    StoreGroup,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
    session_deadline: u64,
}

impl Member {
    /// The subscription metadata for the group's chosen protocol.
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(name, _)| name == p))
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn renew_session(&mut self, now: u64) {
        self.session_deadline = now + self.session_timeout_ms.max(0) as u64;
    }
}

/// A committed offset as the coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to come back.
    pending_members: BTreeMap<String, u64>,
    /// When PreparingRebalance gives up on members that have not rejoined.
    rebalance_deadline: Option<u64>,
    /// A new group's first rebalance waits this long for more members.
    initial_join: Option<InitialJoin>,
    /// Wall-clock milliseconds of the last state change, for offset expiry of empty groups.
    state_timestamp: i64,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

#[derive(Debug, Clone, Copy)]
struct InitialJoin {
    deadline: u64,
    delay: u64,
    cap: u64,
}

impl Group {
    pub fn new(id: String, wall_ms: i64) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            rebalance_deadline: None,
            initial_join: None,
            state_timestamp: wall_ms,
            offsets: BTreeMap::new(),
        }
    }

    /// A group as its last metadata record left it: Stable with its members (who must heartbeat
    /// within their session timeouts) or Empty.
    pub fn restore(id: String, value: GroupValue, now: u64) -> Self {
        let mut group = Self::new(id, value.state_timestamp);
        group.generation = value.generation;
        group.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        group.protocol = value.protocol;
        group.leader = value.leader;
        for m in value.members {
            let mut member = Member {
                id: m.member_id.clone(),
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(group.protocol.clone().unwrap_or_default(), m.subscription)],
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline: 0,
            };
            member.renew_session(now);
            group.members.insert(m.member_id, member);
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }

    /// The metadata record describing the group now.
    pub fn to_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn state_timestamp(&self) -> i64 {
        self.state_timestamp
    }

    /// No members and no committed offsets: nothing left to keep.
    pub fn is_forgettable(&self) -> bool {
        self.state == GroupState::Empty && self.offsets.is_empty()
    }

    /// The earliest moment a tick can change something.
    pub fn next_deadline(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|m| m.session_deadline);
        let pending = self.pending_members.values().copied();
        let rebalance = match self.initial_join {
            Some(initial) => Some(initial.deadline),
            None => self.rebalance_deadline,
        };
        sessions.chain(pending).chain(rebalance).min()
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        to: Token,
        now: u64,
        wall_ms: i64,
        config: &GroupConfig,
        out: &mut Vec<Output>,
    ) {
        let reply = |out: &mut Vec<Output>, error, member_id: &str| {
            out.push(Output::Join {
                to,
                result: JoinResult::error(error, member_id),
            });
        };
        if self.state == GroupState::Dead {
            return reply(out, GroupError::CoordinatorNotAvailable, &req.member_id);
        }
        if req.session_timeout_ms < config.min_session_timeout_ms
            || req.session_timeout_ms > config.max_session_timeout_ms
        {
            return reply(out, GroupError::InvalidSessionTimeout, &req.member_id);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() || !self.accepts(&req) {
            return reply(out, GroupError::InconsistentGroupProtocol, &req.member_id);
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, to, now, wall_ms, config, out);
        } else {
            self.join_known_member(req, to, now, wall_ms, config, out);
        }
    }

    /// Whether a member with these protocols can be in the group.
    fn accepts(&self, req: &JoinRequest) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        let others_support = |name: &str| {
            self.members
                .values()
                .filter(|m| m.id != req.member_id)
                .all(|m| m.protocols.iter().any(|(p, _)| p == name))
        };
        req.protocols.iter().any(|(name, _)| others_support(name))
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        to: Token,
        now: u64,
        wall_ms: i64,
        config: &GroupConfig,
        out: &mut Vec<Output>,
    ) {
        if let Some(instance_id) = req.instance_id.clone() {
            if let Some(old_id) = self.static_member(&instance_id) {
                return self.replace_static_member(old_id, req, to, now, wall_ms, config, out);
            }
        } else if req.require_known_member_id {
            self.pending_members.insert(
                req.new_member_id.clone(),
                now + req.session_timeout_ms as u64,
            );
            out.push(Output::Join {
                to,
                result: JoinResult::error(GroupError::MemberIdRequired, &req.new_member_id),
            });
            return;
        }
        let member_id = req.new_member_id.clone();
        self.add_member(member_id, req, to, now);
        self.prepare_rebalance(now, wall_ms, config, out);
        self.try_complete_join(now, wall_ms, out);
    }

    fn join_known_member(
        &mut self,
        req: JoinRequest,
        to: Token,
        now: u64,
        wall_ms: i64,
        config: &GroupConfig,
        out: &mut Vec<Output>,
    ) {
        if self.pending_members.remove(&req.member_id).is_some() {
            let member_id = req.member_id.clone();
            self.add_member(member_id, req, to, now);
            self.prepare_rebalance(now, wall_ms, config, out);
            self.try_complete_join(now, wall_ms, out);
            return;
        }
        if let Err(error) = self.check_member(&req.member_id, req.instance_id.as_deref()) {
            out.push(Output::Join {
                to,
                result: JoinResult::error(error, &req.member_id),
            });
            return;
        }
        let protocols_changed = self
            .members
            .get(&req.member_id)
            .is_some_and(|m| m.protocols != req.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&req, to, now, out);
                self.try_complete_join(now, wall_ms, out);
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if !protocols_changed && self.leader.as_deref() != Some(&req.member_id) =>
            {
                // The member lost our last response (or rejoins for nothing new): tell it again.
                if let Some(member) = self.members.get_mut(&req.member_id) {
                    member.renew_session(now);
                }
                out.push(Output::Join {
                    to,
                    result: self.join_result(&req.member_id, false),
                });
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&req, to, now, out);
                self.prepare_rebalance(now, wall_ms, config, out);
                self.try_complete_join(now, wall_ms, out);
            }
            GroupState::Empty | GroupState::Dead => out.push(Output::Join {
                to,
                result: JoinResult::error(GroupError::UnknownMemberId, &req.member_id),
            }),
        }
    }

    /// A known `group.instance.id` rejoining without its member id (it restarted): it takes a
    /// new member id; the old one is fenced. In a stable group with unchanged protocols it gets
    /// its assignment back without a rebalance.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        old_id: String,
        req: JoinRequest,
        to: Token,
        now: u64,
        wall_ms: i64,
        config: &GroupConfig,
        out: &mut Vec<Output>,
    ) {
        let Some(mut member) = self.members.remove(&old_id) else {
            return;
        };
        if let Some(waiting) = member.awaiting_join.take() {
            out.push(Output::Join {
                to: waiting,
                result: JoinResult::error(GroupError::FencedInstanceId, &old_id),
            });
        }
        if let Some(waiting) = member.awaiting_sync.take() {
            out.push(Output::Sync {
                to: waiting,
                result: SyncResult::error(GroupError::FencedInstanceId),
            });
        }
        let new_id = req.new_member_id.clone();
        let protocols_changed = member.protocols != req.protocols;
        member.id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.renew_session(now);
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        match self.state {
            GroupState::Stable if !protocols_changed => {
                out.push(Output::StoreGroup);
                out.push(Output::Join {
                    to,
                    result: self.join_result(&new_id, was_leader),
                });
            }
            _ => {
                self.update_member(&req.clone_with_id(&new_id), to, now, out);
                self.prepare_rebalance(now, wall_ms, config, out);
                self.try_complete_join(now, wall_ms, out);
            }
        }
    }

    fn static_member(&self, instance_id: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.id.clone())
    }

    /// The member exists, and a static member's instance id still belongs to this member id.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(owner) = instance_id.and_then(|id| self.static_member(id))
            && owner != member_id
        {
            return Err(GroupError::FencedInstanceId);
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    fn add_member(&mut self, member_id: String, req: JoinRequest, to: Token, now: u64) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let mut member = Member {
            id: member_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(to),
            awaiting_sync: None,
            session_deadline: 0,
        };
        member.renew_session(now);
        self.members.insert(member_id, member);
        if let Some(initial) = &mut self.initial_join {
            // More members arriving: wait a little longer for the rest, within the cap.
            initial.deadline = (now + initial.delay).min(initial.cap);
        }
    }

    fn update_member(&mut self, req: &JoinRequest, to: Token, now: u64, out: &mut Vec<Output>) {
        if let Some(member) = self.members.get_mut(&req.member_id) {
            member.protocols = req.protocols.clone();
            member.session_timeout_ms = req.session_timeout_ms;
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
            // A member rejoining while its earlier JoinGroup still waits (a client retry on a
            // new connection): the earlier request is answered, so nothing waits forever.
            if let Some(earlier) = member.awaiting_join.replace(to)
                && earlier != to
            {
                out.push(Output::Join {
                    to: earlier,
                    result: JoinResult::error(GroupError::RebalanceInProgress, &req.member_id),
                });
            }
            member.renew_session(now);
        }
    }

    fn prepare_rebalance(
        &mut self,
        now: u64,
        wall_ms: i64,
        config: &GroupConfig,
        out: &mut Vec<Output>,
    ) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiting) = member.awaiting_sync.take() {
                    out.push(Output::Sync {
                        to: waiting,
                        result: SyncResult::error(GroupError::RebalanceInProgress),
                    });
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0);
        if self.state == GroupState::Empty && config.initial_rebalance_delay_ms > 0 {
            let delay = config.initial_rebalance_delay_ms.min(timeout);
            self.initial_join = Some(InitialJoin {
                deadline: now + delay,
                delay,
                cap: now + timeout,
            });
        }
        self.rebalance_deadline = Some(now + timeout);
        self.set_state(GroupState::PreparingRebalance, wall_ms);
    }

    /// Completes the join phase once every member has rejoined (and no new member is still
    /// fetching its id), or, from `tick`, when the rebalance timeout has passed.
    fn try_complete_join(&mut self, now: u64, wall_ms: i64, out: &mut Vec<Output>) {
        if self.state != GroupState::PreparingRebalance || self.initial_join.is_some() {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some())
            && self.pending_members.is_empty();
        if all_joined {
            self.complete_join(now, wall_ms, out);
        }
    }

    fn complete_join(&mut self, now: u64, wall_ms: i64, out: &mut Vec<Output>) {
        // Members that did not rejoin in time leave the group.
        self.members.retain(|_, m| m.awaiting_join.is_some());
        self.pending_members.clear();
        self.rebalance_deadline = None;
        self.initial_join = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, wall_ms);
            out.push(Output::StoreGroup);
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, wall_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result(&id, leader);
            if let Some(member) = self.members.get_mut(&id) {
                member.renew_session(now);
                if let Some(to) = member.awaiting_join.take() {
                    out.push(Output::Join { to, result });
                }
            }
        }
    }

    /// The protocol every member supports that most members prefer.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == name))
            })
            .collect();
        let votes = |candidate: &str| {
            self.members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(p, _)| p.as_str())
                        .find(|p| candidates.contains(p))
                        == Some(candidate)
                })
                .count()
        };
        // Ties go to the earlier candidate in the first member's order.
        let mut best: Option<(&str, usize)> = None;
        for candidate in &candidates {
            let count = votes(candidate);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((candidate, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    fn join_result(&self, member_id: &str, leader_view: bool) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let members = if leader_view && is_leader {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(self.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            skip_assignment: leader_view && is_leader && self.state == GroupState::Stable,
            members,
        }
    }

    pub fn sync(
        &mut self,
        req: SyncRequest,
        to: Token,
        now: u64,
        wall_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let refuse = |out: &mut Vec<Output>, error| {
            out.push(Output::Sync {
                to,
                result: SyncResult::error(error),
            });
        };
        if let Err(error) = self.check_member(&req.member_id, req.instance_id.as_deref()) {
            return refuse(out, error);
        }
        if req.generation != self.generation {
            return refuse(out, GroupError::IllegalGeneration);
        }
        let protocol_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != self.protocol.as_ref());
        if protocol_mismatch {
            return refuse(out, GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => refuse(out, GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => refuse(out, GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(&req.member_id) {
                    if let Some(earlier) = member.awaiting_sync.replace(to)
                        && earlier != to
                    {
                        out.push(Output::Sync {
                            to: earlier,
                            result: SyncResult::error(GroupError::RebalanceInProgress),
                        });
                    }
                    member.renew_session(now);
                }
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    let assignments: BTreeMap<String, Bytes> =
                        req.assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment =
                            assignments.get(&member.id).cloned().unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, wall_ms);
                    out.push(Output::StoreGroup);
                    let protocol_type = self.protocol_type.clone();
                    let protocol_name = self.protocol.clone();
                    for member in self.members.values_mut() {
                        if let Some(waiting) = member.awaiting_sync.take() {
                            member.renew_session(now);
                            out.push(Output::Sync {
                                to: waiting,
                                result: SyncResult {
                                    error: None,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: member.assignment.clone(),
                                },
                            });
                        }
                    }
                }
            }
            GroupState::Stable => {
                let Some(member) = self.members.get_mut(&req.member_id) else {
                    return refuse(out, GroupError::UnknownMemberId);
                };
                member.renew_session(now);
                out.push(Output::Sync {
                    to,
                    result: SyncResult {
                        error: None,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol.clone(),
                        assignment: member.assignment.clone(),
                    },
                });
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: u64,
    ) -> Result<(), GroupError> {
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return Err(GroupError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.renew_session(now);
        }
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Removes members (by member id, or by instance id for static members); one result each.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: u64,
        wall_ms: i64,
        config: &GroupConfig,
        out: &mut Vec<Output>,
    ) -> Vec<Result<(), GroupError>> {
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for (member_id, instance_id) in leaving {
            let target = match instance_id {
                Some(instance) => match self.static_member(instance) {
                    Some(owner) if member_id.is_empty() || *member_id == owner => Ok(owner),
                    Some(_) => Err(GroupError::FencedInstanceId),
                    None => Err(GroupError::UnknownMemberId),
                },
                None if self.pending_members.remove(member_id).is_some() => {
                    results.push(Ok(()));
                    continue;
                }
                None if self.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(GroupError::UnknownMemberId),
            };
            match target {
                Ok(id) => {
                    self.remove_member(&id, out);
                    removed = true;
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        if removed {
            self.after_removal(now, wall_ms, config, out);
        } else if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now, wall_ms, out);
        }
        results
    }

    fn remove_member(&mut self, member_id: &str, out: &mut Vec<Output>) {
        if let Some(member) = self.members.remove(member_id) {
            if let Some(to) = member.awaiting_join {
                out.push(Output::Join {
                    to,
                    result: JoinResult::error(GroupError::UnknownMemberId, member_id),
                });
            }
            if let Some(to) = member.awaiting_sync {
                out.push(Output::Sync {
                    to,
                    result: SyncResult::error(GroupError::UnknownMemberId),
                });
            }
        }
    }

    fn after_removal(
        &mut self,
        now: u64,
        wall_ms: i64,
        config: &GroupConfig,
        out: &mut Vec<Output>,
    ) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, wall_ms, config, out);
                self.try_complete_join(now, wall_ms, out);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, wall_ms, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Fires every timeout that is due at `now`.
    pub fn tick(&mut self, now: u64, wall_ms: i64, config: &GroupConfig, out: &mut Vec<Output>) {
        self.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .filter(|m| m.session_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id, out);
        }
        if self
            .initial_join
            .is_some_and(|initial| initial.deadline <= now)
        {
            self.initial_join = None;
        }
        if !expired.is_empty() {
            self.after_removal(now, wall_ms, config, out);
        }
        if self.state == GroupState::PreparingRebalance {
            if self.rebalance_deadline.is_some_and(|d| d <= now) {
                self.complete_join(now, wall_ms, out);
            } else {
                self.try_complete_join(now, wall_ms, out);
            }
        }
    }

    /// Whether an offset commit from this member (generation -1: a consumer outside the group
    /// protocol, e.g. with `assign()`) may be written.
    pub fn validate_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.state == GroupState::Empty {
            return Err(GroupError::IllegalGeneration);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Marks an empty group deleted; its caller writes the tombstones.
    pub fn delete(&mut self, wall_ms: i64) -> Result<(), GroupError> {
        match self.state {
            GroupState::Dead => Err(GroupError::GroupIdNotFound),
            GroupState::Empty => {
                self.offsets.clear();
                self.set_state(GroupState::Dead, wall_ms);
                Ok(())
            }
            _ => Err(GroupError::NonEmptyGroup),
        }
    }

    /// Topics named in the members' consumer-protocol subscriptions.
    pub fn subscribed_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .members
            .values()
            .flat_map(|m| subscription_topics(&m.metadata(self.protocol.as_deref())))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    fn set_state(&mut self, state: GroupState, wall_ms: i64) {
        self.state = state;
        self.state_timestamp = wall_ms;
    }
}

impl JoinRequest {
    fn clone_with_id(&self, member_id: &str) -> Self {
        Self {
            member_id: member_id.to_owned(),
            ..self.clone()
        }
    }
}

/// The topic names of a consumer-protocol subscription (version, topics, user data, ...); an
/// unreadable one names none.
pub fn subscription_topics(metadata: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let Some(rest) = metadata.get(2..) else {
        return topics;
    };
    let Some(count) = rest.get(..4) else {
        return topics;
    };
    let count = i32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let mut rest = &rest[4..];
    for _ in 0..count.max(0) {
        let Some(len) = rest.get(..2) else {
            break;
        };
        let len = i16::from_be_bytes([len[0], len[1]]).max(0) as usize;
        let Some(name) = rest.get(2..2 + len) else {
            break;
        };
        topics.push(String::from_utf8_lossy(name).into_owned());
        rest = &rest[2 + len..];
    }
    topics
}

#[cfg(test)]
mod tests;
