//! A replica's state as a pure state machine: its role (leader or follower) and leader epoch,
//! what it holds durably, the high watermark, and on a leader the in-sync replicas and how far
//! each has durably got. Events in ([`Event`]), commands out ([`Command`]); no I/O, no clock (time
//! arrives in events), so every rule is tested by feeding events. The partition actor feeds it
//! and carries out its commands.
//!
//! The high watermark a leader publishes is the smallest durable offset over the ISR (itself
//! included): every in-sync replica has every record below it on disk. It only advances while
//! the ISR has at least the topic's `min.insync.replicas` members (KIP-966): a record held by
//! fewer (an `acks=1` write while the ISR has shrunk) is not committed, and no consumer sees it,
//! until enough replicas hold it. A follower's is the
//! leader's high watermark as last heard, but never past what it holds itself. It never goes
//! backwards within a leader epoch.

use std::collections::BTreeMap;

/// What the replica is for its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaRole {
    Leader {
        leader_epoch: i32,
        /// The in-sync replicas, this broker included.
        isr: Vec<i32>,
        /// How far each other replica is durable, as it last reported (absent: not yet).
        followers: BTreeMap<i32, i64>,
    },
    /// `leader` is -1 while the partition has none.
    Follower { leader: i32, leader_epoch: i32 },
}

/// Something that happened to the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The metadata made this broker the leader, with this ISR.
    BecameLeader { leader_epoch: i32, isr: Vec<i32> },
    /// The metadata made another broker (or none: -1) the leader.
    BecameFollower { leader: i32, leader_epoch: i32 },
    /// The metadata changed the ISR of the partition this broker leads.
    IsrChanged { isr: Vec<i32> },
    /// This broker's copy is durable up to `offset` (exclusive).
    LocalDurable { offset: i64 },
    /// Follower `replica` fetched from `fetch_offset` (its log end) with its copy durable up to
    /// `durable`, at `now_ms` (leader only): a fetch at or past what the leader holds means the
    /// follower was caught up then.
    FollowerFetched {
        replica: i32,
        fetch_offset: i64,
        durable: i64,
        now_ms: u64,
    },
    /// The leader's high watermark, as a follower heard it.
    LeaderHighWatermark { offset: i64 },
    /// This leader asked for `replica` to join the ISR: it counts for the high watermark from now
    /// (the larger ISR while the change is in flight) until a committed ISR includes it, a new
    /// leader epoch begins, or it is found lagging.
    JoiningIsr { replica: i32, now_ms: u64 },
    /// The controller refused to add `replica` to the ISR (the partition changed first: it may
    /// no longer be a replica at all): it stops counting until it is found caught up again.
    JoinRefused { replica: i32 },
    /// This broker's copy was cut back to end at `offset` (a follower whose log diverged).
    Truncated { offset: i64 },
    /// The topic's `min.insync.replicas` (1 until told).
    MinInsync { replicas: usize },
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Publish this high watermark to readers and waiting produces.
    PublishHighWatermark(i64),
}

/// One replica of a partition.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    node_id: i32,
    role: ReplicaRole,
    /// What this broker holds durably (exclusive end).
    durable: i64,
    high_watermark: i64,
    /// The leader's high watermark as last heard (follower).
    leader_high_watermark: i64,
    /// When each follower was last caught up with this leader (ms, as events gave the time);
    /// an in-sync follower not seen yet is counted from the first check.
    caught_up_at: BTreeMap<i32, u64>,
    /// Each follower's last fetch: this leader's durable end then, and when.
    last_fetch: BTreeMap<i32, (i64, u64)>,
    /// Followers asked into the ISR, not yet in a committed ISR.
    joining: std::collections::BTreeSet<i32>,
    /// The topic's `min.insync.replicas`: a leader's high watermark stands still while fewer
    /// replicas count.
    min_insync: usize,
}

impl ReplicaState {
    /// A replica of broker `node_id` holding `durable` records durably, with the high watermark
    /// `high_watermark` (at start-up: what its log recovered), following no one until told.
    pub fn new(node_id: i32, durable: i64, high_watermark: i64) -> Self {
        Self {
            node_id,
            role: ReplicaRole::Follower {
                leader: -1,
                leader_epoch: -1,
            },
            durable,
            high_watermark: high_watermark.min(durable),
            leader_high_watermark: high_watermark,
            caught_up_at: BTreeMap::new(),
            last_fetch: BTreeMap::new(),
            joining: std::collections::BTreeSet::new(),
            min_insync: 1,
        }
    }

    pub fn role(&self) -> &ReplicaRole {
        &self.role
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn leader_epoch(&self) -> i32 {
        match &self.role {
            ReplicaRole::Leader { leader_epoch, .. }
            | ReplicaRole::Follower { leader_epoch, .. } => *leader_epoch,
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, ReplicaRole::Leader { .. })
    }

    /// The in-sync followers of this leader that have not been caught up for more than
    /// `max_lag_ms` as of `now_ms` (Kafka's `replica.lag.time.max.ms`): the ISR should drop them.
    /// Empty on a follower.
    /// A joining follower found lagging stops counting for the high watermark.
    pub fn lagging(&mut self, now_ms: u64, max_lag_ms: u64) -> Vec<i32> {
        let ReplicaRole::Leader { isr, .. } = &self.role else {
            return Vec::new();
        };
        let lagging: Vec<i32> = isr
            .iter()
            .chain(&self.joining)
            .copied()
            .filter(|replica| *replica != self.node_id)
            .filter(|replica| {
                let since = *self.caught_up_at.entry(*replica).or_insert(now_ms);
                now_ms.saturating_sub(since) > max_lag_ms
            })
            .collect();
        self.joining.retain(|replica| !lagging.contains(replica));
        lagging
    }

    /// The members counted for the high watermark: the ISR and the followers joining it.
    fn counted(&self) -> impl Iterator<Item = i32> + '_ {
        let isr = match &self.role {
            ReplicaRole::Leader { isr, .. } => isr.as_slice(),
            ReplicaRole::Follower { .. } => &[],
        };
        isr.iter()
            .copied()
            .chain(self.joining.iter().copied().filter(|r| !isr.contains(r)))
    }

    /// Takes one event; returns what to do.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::BecameLeader { leader_epoch, isr } => {
                let followers = match &self.role {
                    // The same epoch (an ISR change): what followers reported still holds.
                    ReplicaRole::Leader {
                        followers,
                        leader_epoch: current,
                        ..
                    } if *current == leader_epoch => followers.clone(),
                    // A new epoch: followers may have been cut back meanwhile (under another
                    // leader this broker never heard of); only new reports count.
                    _ => {
                        self.caught_up_at.clear();
                        self.last_fetch.clear();
                        self.joining.clear();
                        BTreeMap::new()
                    }
                };
                self.joining.retain(|replica| !isr.contains(replica));
                self.role = ReplicaRole::Leader {
                    leader_epoch,
                    isr,
                    followers,
                };
            }
            Event::BecameFollower {
                leader,
                leader_epoch,
            } => {
                self.role = ReplicaRole::Follower {
                    leader,
                    leader_epoch,
                };
                self.joining.clear();
                // A new leader's high watermark is learnt from it; until then, keep ours.
                self.leader_high_watermark = self.high_watermark;
            }
            Event::IsrChanged { isr: new_isr } => {
                if let ReplicaRole::Leader { isr, .. } = &mut self.role {
                    self.joining.retain(|replica| !new_isr.contains(replica));
                    *isr = new_isr;
                }
            }
            Event::JoiningIsr { replica, now_ms } => {
                if self.is_leader() {
                    self.joining.insert(replica);
                    self.caught_up_at.insert(replica, now_ms);
                }
            }
            Event::JoinRefused { replica } => {
                self.joining.remove(&replica);
            }
            Event::LocalDurable { offset } => self.durable = self.durable.max(offset),
            Event::FollowerFetched {
                replica,
                fetch_offset,
                durable,
                now_ms,
            } => {
                if let ReplicaRole::Leader { followers, .. } = &mut self.role {
                    let known = followers.entry(replica).or_insert(durable);
                    *known = (*known).max(durable);
                    // Kafka's rule: caught up now if it fetched from this leader's end, or as of
                    // its previous fetch if it has reached where this leader's end was then.
                    if fetch_offset >= self.durable {
                        self.caught_up_at.insert(replica, now_ms);
                    } else if let Some((end_then, at)) = self.last_fetch.get(&replica).copied()
                        && fetch_offset >= end_then
                    {
                        let known = self.caught_up_at.entry(replica).or_insert(at);
                        *known = (*known).max(at);
                    }
                    self.last_fetch.insert(replica, (self.durable, now_ms));
                }
            }
            Event::LeaderHighWatermark { offset } => {
                self.leader_high_watermark = self.leader_high_watermark.max(offset);
            }
            Event::MinInsync { replicas } => self.min_insync = replicas.max(1),
            Event::Truncated { offset } => {
                self.durable = self.durable.min(offset);
                // Never above what the replica holds; a correct leader never has it cut below
                // its high watermark, so this changes nothing unless something went wrong.
                if self.high_watermark > offset {
                    self.high_watermark = offset;
                    return vec![Command::PublishHighWatermark(offset)];
                }
            }
        }
        self.advance()
    }

    /// Moves the high watermark to what the role allows, never backwards.
    fn advance(&mut self) -> Vec<Command> {
        let target = match &self.role {
            // KIP-966: too few in sync to commit anything.
            ReplicaRole::Leader { .. } if self.counted().count() < self.min_insync => {
                return Vec::new();
            }
            ReplicaRole::Leader { followers, .. } => self
                .counted()
                .map(|replica| {
                    if replica == self.node_id {
                        self.durable
                    } else {
                        // An in-sync follower that has not reported holds nothing yet.
                        followers.get(&replica).copied().unwrap_or(0)
                    }
                })
                .min()
                .unwrap_or(self.durable),
            ReplicaRole::Follower { .. } => self.leader_high_watermark.min(self.durable),
        };
        if target > self.high_watermark {
            self.high_watermark = target;
            vec![Command::PublishHighWatermark(target)]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(offset: i64) -> Vec<Command> {
        vec![Command::PublishHighWatermark(offset)]
    }

    /// Follower `replica` fetched at `offset` with everything before it durable.
    fn reported(replica: i32, offset: i64) -> Event {
        Event::FollowerFetched {
            replica,
            fetch_offset: offset,
            durable: offset,
            now_ms: 0,
        }
    }

    #[test]
    fn a_follower_that_has_not_caught_up_for_the_lag_limit_is_lagging() {
        let mut state = ReplicaState::new(1, 0, 0);
        state.handle(Event::BecameLeader {
            leader_epoch: 0,
            isr: vec![1, 2, 3],
        });
        state.handle(Event::LocalDurable { offset: 10 });
        // Counted from the first check.
        assert!(state.lagging(1_000, 500).is_empty());
        // 2 fetches at the log end; 3 fetches but stays behind.
        for now_ms in [1_200, 1_400] {
            for (replica, fetch_offset) in [(2, 10), (3, 4)] {
                state.handle(Event::FollowerFetched {
                    replica,
                    fetch_offset,
                    durable: fetch_offset,
                    now_ms,
                });
            }
        }
        assert!(state.lagging(1_500, 500).is_empty());
        assert_eq!(state.lagging(1_501, 500), [3]);
        assert_eq!(state.high_watermark(), 4, "3 is still in the ISR");
        // A replica outside the ISR is never lagging; a follower never reports any.
        state.handle(Event::IsrChanged { isr: vec![1, 2] });
        assert_eq!(state.lagging(1_600, 500), Vec::<i32>::new());
        assert_eq!(state.lagging(5_000, 500), [2]);
        state.handle(Event::BecameFollower {
            leader: 2,
            leader_epoch: 1,
        });
        assert!(state.lagging(99_000, 500).is_empty());
    }

    /// Re-elected in a later epoch (another leader may have led in between and cut the
    /// followers back), a leader counts only what followers report from then on.
    #[test]
    fn a_new_epoch_forgets_what_followers_reported_before() {
        let mut state = ReplicaState::new(1, 0, 0);
        state.handle(Event::BecameLeader {
            leader_epoch: 3,
            isr: vec![1, 2],
        });
        state.handle(reported(2, 100));
        assert_eq!(
            state.handle(Event::LocalDurable { offset: 100 }),
            publish(100)
        );
        state.handle(Event::BecameLeader {
            leader_epoch: 5,
            isr: vec![1, 2],
        });
        assert!(state.handle(Event::LocalDurable { offset: 120 }).is_empty());
        assert_eq!(state.handle(reported(2, 110)), publish(110));
        // The same epoch with another ISR keeps the reports.
        state.handle(Event::BecameLeader {
            leader_epoch: 5,
            isr: vec![1, 2, 3],
        });
        state.handle(reported(3, 120));
        assert_eq!(state.high_watermark(), 110);
    }

    /// A follower asked into the ISR counts for the high watermark at once, stays counted until
    /// a committed ISR holds it, and stops counting once found lagging.
    #[test]
    fn a_joining_follower_counts_until_committed_or_lagging() {
        let mut state = ReplicaState::new(1, 0, 0);
        state.handle(Event::BecameLeader {
            leader_epoch: 0,
            isr: vec![1],
        });
        state.handle(Event::LocalDurable { offset: 50 });
        state.handle(reported(2, 50));
        state.handle(Event::JoiningIsr {
            replica: 2,
            now_ms: 1_000,
        });
        assert!(
            state.handle(Event::LocalDurable { offset: 60 }).is_empty(),
            "waits for 2"
        );
        // A refresh of the committed ISR without it keeps it counted.
        state.handle(Event::IsrChanged { isr: vec![1] });
        assert!(state.handle(Event::LocalDurable { offset: 61 }).is_empty());
        // It stops fetching: found lagging, it no longer holds the high watermark back.
        assert_eq!(state.lagging(1_400, 500), Vec::<i32>::new());
        assert_eq!(state.lagging(1_600, 500), [2]);
        assert_eq!(
            state.handle(Event::LocalDurable { offset: 62 }),
            publish(62)
        );
    }

    /// Kafka's rule under load: a follower that never reaches the leader's moving end is caught
    /// up as of its previous fetch when it has reached where the end was then.
    #[test]
    fn a_follower_keeping_up_under_load_is_not_lagging() {
        let mut state = ReplicaState::new(1, 0, 0);
        state.handle(Event::BecameLeader {
            leader_epoch: 0,
            isr: vec![1, 2],
        });
        assert!(state.lagging(1_000, 500).is_empty(), "counted from here");
        let mut end = 0;
        for step in 0..20u64 {
            end += 10;
            state.handle(Event::LocalDurable { offset: end });
            // Always 5 behind the end of now, but past the end of its previous fetch.
            state.handle(Event::FollowerFetched {
                replica: 2,
                fetch_offset: end - 5,
                durable: end - 5,
                now_ms: 1_000 + step * 100,
            });
        }
        assert!(state.lagging(3_000, 500).is_empty());
        assert_eq!(state.lagging(3_500, 500), [2]);
    }

    #[test]
    fn a_follower_follows_the_leaders_high_watermark_up_to_what_it_holds() {
        let mut state = ReplicaState::new(2, 0, 0);
        state.handle(Event::BecameFollower {
            leader: 1,
            leader_epoch: 3,
        });
        assert!(
            state
                .handle(Event::LeaderHighWatermark { offset: 8 })
                .is_empty()
        );
        assert_eq!(state.handle(Event::LocalDurable { offset: 5 }), publish(5));
        assert_eq!(state.handle(Event::LocalDurable { offset: 10 }), publish(8));
        // Cut back above the high watermark: nothing to publish, and what it holds is less.
        assert!(state.handle(Event::Truncated { offset: 9 }).is_empty());
        assert_eq!(state.high_watermark(), 8);
        assert_eq!(
            state.handle(Event::LeaderHighWatermark { offset: 12 }),
            publish(9)
        );
        assert_eq!(
            state.handle(Event::LocalDurable { offset: 12 }),
            publish(12)
        );
    }

    #[test]
    fn a_sole_leader_publishes_what_it_holds_durably() {
        let mut state = ReplicaState::new(1, 5, 5);
        assert!(!state.is_leader());
        let became = state.handle(Event::BecameLeader {
            leader_epoch: 0,
            isr: vec![1],
        });
        assert!(became.is_empty(), "nothing new to publish");
        assert_eq!(state.handle(Event::LocalDurable { offset: 9 }), publish(9));
        assert!(
            state.handle(Event::LocalDurable { offset: 7 }).is_empty(),
            "never backwards"
        );
        assert_eq!(state.high_watermark(), 9);
        assert_eq!(state.leader_epoch(), 0);
    }

    #[test]
    fn a_leader_waits_for_every_in_sync_replica() {
        let mut state = ReplicaState::new(1, 0, 0);
        state.handle(Event::BecameLeader {
            leader_epoch: 3,
            isr: vec![1, 2, 3],
        });
        assert!(state.handle(Event::LocalDurable { offset: 10 }).is_empty());
        assert!(state.handle(reported(2, 10)).is_empty());
        assert_eq!(state.handle(reported(3, 4)), publish(4));
        // A stale report changes nothing; a replica outside the ISR does not hold it back.
        assert!(state.handle(reported(3, 2)).is_empty());
        assert_eq!(
            state.handle(Event::IsrChanged { isr: vec![1, 2] }),
            publish(10)
        );
        assert_eq!(state.high_watermark(), 10);
    }

    #[test]
    fn a_leader_commits_nothing_while_fewer_than_min_insync_replicas_are_in_sync() {
        let mut state = ReplicaState::new(1, 0, 0);
        state.handle(Event::MinInsync { replicas: 2 });
        state.handle(Event::BecameLeader {
            leader_epoch: 0,
            isr: vec![1, 2],
        });
        state.handle(Event::LocalDurable { offset: 5 });
        assert_eq!(state.handle(reported(2, 5)), publish(5));
        // Alone in the ISR: what only the leader holds is not committed.
        assert!(state.handle(Event::IsrChanged { isr: vec![1] }).is_empty());
        assert!(state.handle(Event::LocalDurable { offset: 9 }).is_empty());
        assert_eq!(state.high_watermark(), 5);
        // Back to two in sync, and the follower has it: committed.
        assert!(
            state
                .handle(Event::IsrChanged { isr: vec![1, 2] })
                .is_empty()
        );
        assert_eq!(state.handle(reported(2, 9)), publish(9));
        // With min.insync.replicas lowered to 1, the leader alone commits again.
        state.handle(Event::IsrChanged { isr: vec![1] });
        state.handle(Event::LocalDurable { offset: 12 });
        assert_eq!(state.handle(Event::MinInsync { replicas: 1 }), publish(12));
    }

    #[test]
    fn a_follower_trails_the_leader_and_its_own_log() {
        let mut state = ReplicaState::new(2, 3, 3);
        state.handle(Event::BecameFollower {
            leader: 1,
            leader_epoch: 4,
        });
        assert_eq!(
            state.role(),
            &ReplicaRole::Follower {
                leader: 1,
                leader_epoch: 4
            }
        );
        assert!(
            state
                .handle(Event::LeaderHighWatermark { offset: 8 })
                .is_empty(),
            "holds 3"
        );
        assert_eq!(state.handle(Event::LocalDurable { offset: 6 }), publish(6));
        assert_eq!(state.handle(Event::LocalDurable { offset: 12 }), publish(8));
        assert!(state.handle(reported(3, 20)).is_empty());
    }

    #[test]
    fn roles_change_both_ways() {
        let mut state = ReplicaState::new(1, 5, 5);
        state.handle(Event::BecameLeader {
            leader_epoch: 1,
            isr: vec![1, 2],
        });
        state.handle(reported(2, 5));
        state.handle(Event::BecameFollower {
            leader: 2,
            leader_epoch: 2,
        });
        assert!(!state.is_leader());
        assert!(
            state.handle(Event::LocalDurable { offset: 9 }).is_empty(),
            "leader's hw: 5"
        );
        state.handle(Event::BecameLeader {
            leader_epoch: 3,
            isr: vec![1],
        });
        assert_eq!(state.high_watermark(), 9);
        assert_eq!(state.leader_epoch(), 3);
    }
}
