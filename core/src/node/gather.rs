//! Questions put to every other peer of the peerset, and their answers gathered into one
//! reply: statuses of some CIDs, connections, repository garbage collections, status
//! summaries. A peer that fails to answer, or answers another question, is recorded with
//! why, so that every asked peer has its line in the reply.

use std::collections::{BTreeSet, HashMap};

use cid::Cid;
use libp2p_identity::PeerId;

use crate::codec::peer_request::{Connections, PeerRequest, PeerResponse, StatusSummary};
use crate::repo_gc::RepoGc;
use crate::tracker::{PeerIdentity, PinInfo};

/// What a peer's answer of the wrong kind is recorded as.
const OTHER_ANSWER: &str = "the peer answered another question";

/// Names one gathering, for its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatheringId(pub u64);

/// Names one request sent to a peer, for its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A question for every other peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    /// Each peer's statuses of these CIDs, after it recovered those in error if `recover`.
    Statuses {
        cids: Vec<Cid>,
        recover: bool,
    },
    Connections,
    RepoGc,
    Summaries,
}

impl Question {
    /// The request each peer is sent.
    pub fn request(&self) -> PeerRequest {
        match self {
            Question::Statuses { cids, recover } => PeerRequest::Statuses {
                cids: cids.clone(),
                recover: *recover,
            },
            Question::Connections => PeerRequest::Connections,
            Question::RepoGc => PeerRequest::RepoGc,
            Question::Summaries => PeerRequest::Summary,
        }
    }
}

/// One peer's count of its statuses, or why it gave none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSummary {
    pub peer: PeerId,
    pub peername: String,
    pub summary: Result<StatusSummary, String>,
}

/// The gathered answers, one entry (or, for statuses, one per CID) per peer asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gathered {
    /// The peers' views of the CIDs asked; a peer that did not answer has a
    /// `cluster_error` view of each.
    Statuses(Vec<PinInfo>),
    Connections(Vec<(PeerId, Result<Connections, String>)>),
    RepoGc(Vec<RepoGc>),
    /// Sorted by peer name, then peer id.
    Summaries(Vec<PeerSummary>),
}

impl Gathered {
    fn empty(question: &Question) -> Self {
        match question {
            Question::Statuses { .. } => Gathered::Statuses(Vec::new()),
            Question::Connections => Gathered::Connections(Vec::new()),
            Question::RepoGc => Gathered::RepoGc(Vec::new()),
            Question::Summaries => Gathered::Summaries(Vec::new()),
        }
    }

    /// Adds the answer of `who` (or why it gave none). `now` stamps the views of a peer
    /// that did not answer, which carry what is known of it (its name and IPFS daemon).
    fn add(
        &mut self,
        question: &Question,
        who: PeerIdentity,
        answer: Result<PeerResponse, String>,
        now: i64,
    ) {
        let peer = who.peer;
        let answer = match answer {
            Ok(PeerResponse::Error(error)) | Err(error) => Err(error),
            Ok(response) => Ok(response),
        };
        match (self, answer) {
            (Gathered::Statuses(infos), Ok(PeerResponse::Statuses(theirs))) => {
                let Question::Statuses { cids, .. } = question else {
                    return;
                };
                let asked: BTreeSet<&Cid> = cids.iter().collect();
                infos.extend(
                    theirs
                        .into_iter()
                        .filter(|info| info.peer == peer && asked.contains(&info.cid)),
                );
            }
            (Gathered::Statuses(infos), other) => {
                let Question::Statuses { cids, .. } = question else {
                    return;
                };
                let error = other.err().unwrap_or_else(|| OTHER_ANSWER.into());
                infos.extend(
                    cids.iter()
                        .map(|cid| PinInfo::unanswered(*cid, &who, error.clone(), now)),
                );
            }
            (Gathered::Connections(links), answer) => links.push((
                peer,
                match answer {
                    Ok(PeerResponse::Connections(theirs)) => Ok(theirs),
                    Ok(_) => Err(OTHER_ANSWER.into()),
                    Err(error) => Err(error),
                },
            )),
            (Gathered::RepoGc(results), answer) => results.push(match answer {
                Ok(PeerResponse::RepoGc(mut theirs)) => {
                    theirs.peer = peer;
                    theirs
                }
                Ok(_) => RepoGc::failed(peer, who.peer_name, OTHER_ANSWER.into()),
                Err(error) => RepoGc::failed(peer, who.peer_name, error),
            }),
            (Gathered::Summaries(summaries), answer) => summaries.push(PeerSummary {
                peer,
                peername: who.peer_name,
                summary: match answer {
                    Ok(PeerResponse::Summary(summary)) => Ok(summary),
                    Ok(_) => Err(OTHER_ANSWER.into()),
                    Err(error) => Err(error),
                },
            }),
        }
    }

    fn finish(mut self) -> Self {
        if let Gathered::Summaries(summaries) = &mut self {
            summaries.sort_by(|a, b| {
                a.peername
                    .cmp(&b.peername)
                    .then(a.peer.to_bytes().cmp(&b.peer.to_bytes()))
            });
        }
        self
    }
}

struct Gathering {
    question: Question,
    awaiting: usize,
    gathered: Gathered,
}

/// The gatherings under way.
#[derive(Default)]
pub struct Gatherings {
    requests: HashMap<RequestId, (GatheringId, PeerId)>,
    gatherings: HashMap<GatheringId, Gathering>,
    next_gathering: u64,
    next_request: u64,
}

impl Gatherings {
    /// Starts gathering `question`'s answers from `peers`, starting from `local` (this
    /// peer's own part, if it has one). Returns the gathering, the requests to send, and
    /// the reply at once when there is no peer to ask.
    pub fn start(
        &mut self,
        question: Question,
        peers: &[PeerId],
        local: Option<Gathered>,
    ) -> (
        GatheringId,
        Vec<(RequestId, PeerId, PeerRequest)>,
        Option<Gathered>,
    ) {
        let id = GatheringId(self.next_gathering);
        self.next_gathering += 1;
        let gathered = local.unwrap_or_else(|| Gathered::empty(&question));
        if peers.is_empty() {
            return (id, Vec::new(), Some(gathered.finish()));
        }
        let request = question.request();
        let sends = peers
            .iter()
            .map(|peer| {
                let request_id = self.next_request_id();
                self.requests.insert(request_id, (id, *peer));
                (request_id, *peer, request.clone())
            })
            .collect();
        self.gatherings.insert(
            id,
            Gathering {
                question,
                awaiting: peers.len(),
                gathered,
            },
        );
        (id, sends, None)
    }

    /// Takes the answer to `request` (or why none came); returns the gathering's reply
    /// once every peer asked has answered. `identity` gives what is known of a peer.
    pub fn answer(
        &mut self,
        request: RequestId,
        answer: Result<PeerResponse, String>,
        identity: impl Fn(&PeerId) -> PeerIdentity,
        now: i64,
    ) -> Option<(GatheringId, Gathered)> {
        let (id, peer) = self.requests.remove(&request)?;
        let gathering = self.gatherings.get_mut(&id)?;
        gathering
            .gathered
            .add(&gathering.question, identity(&peer), answer, now);
        gathering.awaiting -= 1;
        if gathering.awaiting > 0 {
            return None;
        }
        let done = self.gatherings.remove(&id).expect("present");
        Some((id, done.gathered.finish()))
    }

    /// A request id no gathering uses, for a request of the node's own.
    pub fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::peer;
    use crate::tracker::TrackerStatus;

    #[test]
    fn with_no_peer_to_ask_the_reply_is_the_local_part_at_once() {
        let mut g = Gatherings::default();
        let own = Gathered::Connections(vec![(peer(1), Ok(Connections::default()))]);
        let (_, sends, reply) = g.start(Question::Connections, &[], Some(own.clone()));
        assert!(sends.is_empty());
        assert_eq!(reply, Some(own));
    }

    #[test]
    fn every_asked_peer_has_a_line_whether_it_answered_failed_or_answered_another_question() {
        let mut g = Gatherings::default();
        let (a, b, c) = (peer(1), peer(2), peer(3));
        let (id, sends, reply) = g.start(Question::Summaries, &[a, b, c], None);
        assert!(reply.is_none());
        let name = |p: &PeerId| {
            let name = if *p == a {
                "zed"
            } else if *p == b {
                "amy"
            } else {
                "bob"
            };
            PeerIdentity::new(*p, name)
        };
        let mut summary = StatusSummary::default();
        summary.count(TrackerStatus::Pinned);
        assert!(g
            .answer(
                sends[0].0,
                Ok(PeerResponse::Summary(summary.clone())),
                name,
                0
            )
            .is_none());
        assert!(g
            .answer(sends[1].0, Err("timeout".into()), name, 0)
            .is_none());
        let (done, gathered) = g
            .answer(
                sends[2].0,
                Ok(PeerResponse::Connections(Connections::default())),
                name,
                0,
            )
            .unwrap();
        assert_eq!(done, id);
        let Gathered::Summaries(lines) = gathered else {
            panic!("summaries expected")
        };
        let names: Vec<&str> = lines.iter().map(|l| l.peername.as_str()).collect();
        assert_eq!(names, ["amy", "bob", "zed"]);
        assert_eq!(lines[0].summary, Err("timeout".into()));
        assert_eq!(lines[1].summary, Err(OTHER_ANSWER.into()));
        assert_eq!(lines[2].summary, Ok(summary));
    }

    #[test]
    fn statuses_keep_only_the_answering_peers_views_of_the_cids_asked() {
        let mut g = Gatherings::default();
        let (a, b) = (peer(1), peer(2));
        let cids: Vec<Cid> = ["a", "b"]
            .iter()
            .map(|s| crate::codec::dagpb::dag_pb_cid(s.as_bytes()))
            .collect();
        let question = Question::Statuses {
            cids: cids[..1].to_vec(),
            recover: false,
        };
        let (_, sends, _) = g.start(question, &[a, b], None);
        let view = |cid: Cid, peer: PeerId| {
            PinInfo::unanswered(cid, &PeerIdentity::new(peer, ""), "x".into(), 0)
        };
        let theirs = vec![view(cids[0], a), view(cids[1], a), view(cids[0], b)];
        g.answer(
            sends[0].0,
            Ok(PeerResponse::Statuses(theirs)),
            |p| PeerIdentity::new(*p, ""),
            0,
        );
        let daemon: PeerId = peer(9);
        let known_b = |p: &PeerId| PeerIdentity {
            ipfs_peer_id: Some(daemon),
            ipfs_peer_addresses: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            ..PeerIdentity::new(*p, "b")
        };
        let (_, gathered) = g
            .answer(sends[1].0, Err("down".into()), known_b, 7)
            .unwrap();
        let Gathered::Statuses(infos) = gathered else {
            panic!("statuses expected")
        };
        assert_eq!(infos.len(), 2);
        assert_eq!((infos[0].cid, infos[0].peer), (cids[0], a));
        assert_eq!((infos[1].cid, infos[1].peer), (cids[0], b));
        // The peer that did not answer is described from what its ping said.
        assert_eq!(infos[1].short.status, TrackerStatus::ClusterError);
        assert_eq!(infos[1].short.peer_name, "b");
        assert_eq!(infos[1].short.ipfs_peer_id, Some(daemon));
        assert_eq!(infos[1].short.ipfs_peer_addresses.len(), 1);
        assert_eq!(infos[1].short.error, "down");
    }
}
