//! The pinset store's journal: the transactions written since the database's last
//! commit, appended to a file beside it, so that a replica's own write is on disk after
//! one small sequential write and one flush rather than a database commit, which writes
//! every B-tree page the transactions since the last one touched.
//!
//! A file starts with a header naming the database commit it follows (the store's random
//! id and its count of commits); each record is one transaction, with its length and a
//! checksum. Opening the store replays the records that follow its last commit, in order,
//! and commits them; records of any other commit (a journal the database has since caught
//! up with, or one left by a store moved aside) are not read. A record cut short by a
//! crash, with its checksum, ends the journal: it was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use cid::Cid;
use pinfold_core::crdt::{BlockId, KeyState, PendingBlock, RecordDecodeError, Transaction};
use sha2::{Digest, Sha256};

/// The first bytes of a journal file.
const MAGIC: &[u8; 8] = b"pfjrnl\x00\x01";
/// Magic, store id, commit count.
const HEADER_LEN: usize = 24;
/// Payload length (u32), then the first bytes of the payload's SHA-256.
const RECORD_HEADER_LEN: usize = 4 + CHECKSUM_LEN;
const CHECKSUM_LEN: usize = 8;

/// Most bytes of records kept after one database commit. Past it the journal stops
/// recording until the next commit, and the next durable write commits the database
/// instead, which starts the journal over: under a heavy ingest the database is then
/// committed every few MiB of writes, and a sync merging other peers' deltas (which need
/// no journal) spends little on recording them.
pub const JOURNAL_LIMIT: usize = 4 << 20;

/// The database commit a journal follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    /// Random, chosen when the database was created.
    pub store: u64,
    /// Commits made since.
    pub commits: u64,
}

/// The journal file of one open store.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Records not written to the file yet.
    unwritten: Vec<u8>,
    /// Bytes of records since the database's last commit, written or not.
    recorded: usize,
    /// Whether every transaction since the database's last commit is recorded.
    complete: bool,
    /// [`JOURNAL_LIMIT`], smaller in tests.
    pub(super) limit: usize,
}

/// Why a journal record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the pinset journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the pinset journal {path} holds a record this pinfold cannot read: {source}")]
    Record {
        path: PathBuf,
        source: RecordDecodeError,
    },
}

impl Journal {
    /// The journal of the database at `database`: the same path with `-journal` added.
    pub fn path_of(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_owned();
        name.push("-journal");
        PathBuf::from(name)
    }

    /// Opens (or creates) the journal of the database at `database`, whose last commit is
    /// `generation`; returns it with the transactions it recorded after that commit, in
    /// order. The file is left as found, and nothing is recorded until
    /// [`Journal::restart`] clears it.
    pub fn open(
        database: &Path,
        generation: Generation,
    ) -> Result<(Self, Vec<Transaction>), JournalError> {
        let path = Self::path_of(database);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let transactions =
            read_records(&bytes, generation).map_err(|source| JournalError::Record {
                path: path.clone(),
                source,
            })?;
        let journal = Self {
            path,
            file,
            unwritten: Vec::new(),
            recorded: 0,
            complete: false,
            limit: JOURNAL_LIMIT,
        };
        Ok((journal, transactions))
    }

    /// Starts over after the database commit `generation`: the file then holds its header
    /// only. Not flushed: a crash before the next [`Journal::sync`] leaves either this
    /// header or the previous one, whose records the database already holds.
    pub fn restart(&mut self, generation: Generation) -> Result<(), JournalError> {
        self.unwritten.clear();
        self.recorded = 0;
        self.complete = false;
        let header = header(generation);
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(&header))
            .map_err(|source| self.error(source))?;
        self.complete = true;
        Ok(())
    }

    /// Records `tx`, just written into the database's open transaction, unless the
    /// journal holds [`JOURNAL_LIMIT`] bytes already (it is then incomplete until the
    /// next [`Journal::restart`]).
    pub fn record(&mut self, tx: &Transaction) {
        if !self.complete {
            return;
        }
        let start = self.unwritten.len();
        self.unwritten.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        encode(tx, &mut self.unwritten);
        let payload_len = self.unwritten.len() - start - RECORD_HEADER_LEN;
        self.recorded += RECORD_HEADER_LEN + payload_len;
        if self.recorded > self.limit {
            self.complete = false;
            self.unwritten = Vec::new();
            return;
        }
        let checksum = Sha256::digest(&self.unwritten[start + RECORD_HEADER_LEN..]);
        let header = &mut self.unwritten[start..start + RECORD_HEADER_LEN];
        header[..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        header[4..].copy_from_slice(&checksum[..CHECKSUM_LEN]);
    }

    /// Whether every transaction since the database's last commit is recorded, so that
    /// [`Journal::sync`] makes them all durable.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Writes the records not written yet and waits for the disk to hold them: the
    /// transactions recorded so far then survive a crash.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if !self.unwritten.is_empty() {
            self.file
                .write_all(&self.unwritten)
                .map_err(|source| self.error(source))?;
            self.unwritten.clear();
        }
        self.file.sync_data().map_err(|source| self.error(source))
    }

    /// Marks the journal incomplete after `source` and names the file in the error.
    fn error(&mut self, source: io::Error) -> JournalError {
        self.complete = false;
        JournalError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// The transactions of `bytes` that follow the commit `generation`: none when the header
/// names another; up to the first record cut short or failing its checksum.
fn read_records(
    bytes: &[u8],
    generation: Generation,
) -> Result<Vec<Transaction>, RecordDecodeError> {
    let Some((header, mut rest)) = bytes.split_at_checked(HEADER_LEN) else {
        return Ok(Vec::new());
    };
    if *header != self::header(generation) {
        return Ok(Vec::new());
    }
    let mut transactions = Vec::new();
    while let Some((record_header, after)) = rest.split_at_checked(RECORD_HEADER_LEN) {
        let len = u32::from_le_bytes(record_header[..4].try_into().expect("4 bytes")) as usize;
        let Some((payload, after)) = after.split_at_checked(len) else {
            break;
        };
        if Sha256::digest(payload)[..CHECKSUM_LEN] != record_header[4..] {
            break;
        }
        transactions.push(decode(payload)?);
        rest = after;
    }
    Ok(transactions)
}

/// The header of a journal that follows the commit `generation`.
fn header(generation: Generation) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&generation.store.to_le_bytes());
    header[16..].copy_from_slice(&generation.commits.to_le_bytes());
    header
}

fn put_len(len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    put_len(bytes.len(), out);
    out.extend_from_slice(bytes);
}

fn put_ids(ids: &[BlockId], out: &mut Vec<u8>) {
    put_len(ids.len(), out);
    for id in ids {
        out.extend_from_slice(&id.0);
    }
}

/// Appends `tx` (all but `durable`, which only told how to commit it) to `out`: each
/// list as a count, then its items; byte strings with their lengths; numbers little-endian.
fn encode(tx: &Transaction, out: &mut Vec<u8>) {
    out.extend_from_slice(&tx.live_keys.to_le_bytes());
    put_len(tx.blocks.len(), out);
    for (id, bytes) in &tx.blocks {
        out.extend_from_slice(&id.0);
        put_bytes(bytes, out);
    }
    put_ids(&tx.blocks_removed, out);
    put_ids(&tx.processed, out);
    put_len(tx.keys.len(), out);
    for (key, state) in &tx.keys {
        put_bytes(key, out);
        put_bytes(&state.encode(), out);
    }
    put_len(tx.heads_removed.len(), out);
    for cid in &tx.heads_removed {
        put_bytes(&cid.to_bytes(), out);
    }
    put_len(tx.heads_added.len(), out);
    for (cid, height) in &tx.heads_added {
        put_bytes(&cid.to_bytes(), out);
        out.extend_from_slice(&height.to_le_bytes());
    }
    put_ids(&tx.pending_removed, out);
    put_len(tx.pending_added.len(), out);
    for block in &tx.pending_added {
        put_bytes(&block.encode(), out);
    }
}

/// Reads the parts of a record in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordDecodeError> {
        let (taken, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(RecordDecodeError::new(what))?;
        self.0 = rest;
        Ok(taken)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, RecordDecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn len(&mut self, what: &'static str) -> Result<usize, RecordDecodeError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")) as usize)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], RecordDecodeError> {
        let len = self.len(what)?;
        self.take(len, what)
    }

    fn id(&mut self) -> Result<BlockId, RecordDecodeError> {
        Ok(BlockId(
            self.take(32, "block id")?.try_into().expect("32 bytes"),
        ))
    }

    fn ids(&mut self) -> Result<Vec<BlockId>, RecordDecodeError> {
        self.list("block ids", |r| r.id())
    }

    fn cid(&mut self) -> Result<Cid, RecordDecodeError> {
        Cid::try_from(self.bytes("cid")?).map_err(|_| RecordDecodeError::new("cid"))
    }

    /// A count, then that many items read by `item`; the count is checked against the
    /// bytes left (every item takes at least one) before anything is allocated.
    fn list<T>(
        &mut self,
        what: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T, RecordDecodeError>,
    ) -> Result<Vec<T>, RecordDecodeError> {
        let count = self.len(what)?;
        if count > self.0.len() {
            return Err(RecordDecodeError::new(what));
        }
        (0..count).map(|_| item(self)).collect()
    }
}

/// Reads back what [`encode`] wrote.
fn decode(bytes: &[u8]) -> Result<Transaction, RecordDecodeError> {
    let mut r = Reader(bytes);
    let live_keys = r.u64("live key change")? as i64;
    let blocks = r.list("blocks", |r| Ok((r.id()?, r.bytes("block")?.to_vec())))?;
    let blocks_removed = r.ids()?;
    let processed = r.ids()?;
    let keys = r.list("keys", |r| {
        let key = r.bytes("key")?.to_vec();
        Ok((key, KeyState::decode(r.bytes("key state")?)?))
    })?;
    let heads_removed = r.list("heads", |r| r.cid())?;
    let heads_added = r.list("heads", |r| Ok((r.cid()?, r.u64("height")?)))?;
    let pending_removed = r.ids()?;
    let pending_added = r.list("pending blocks", |r| {
        PendingBlock::decode(r.bytes("pending block")?)
    })?;
    if !r.0.is_empty() {
        return Err(RecordDecodeError::new("trailing bytes"));
    }
    Ok(Transaction {
        blocks,
        blocks_removed,
        processed,
        keys,
        heads_removed,
        heads_added,
        pending_removed,
        pending_added,
        live_keys,
        durable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinfold_core::crdt::Version;
    use proptest::prelude::*;

    const GENERATION: Generation = Generation {
        store: 7,
        commits: 3,
    };

    fn cid(seed: u8) -> Cid {
        BlockId([seed; 32]).to_cid()
    }

    fn transaction(seed: u8, live_keys: i64) -> Transaction {
        Transaction {
            blocks: vec![(BlockId([seed; 32]), vec![seed; 40])],
            blocks_removed: vec![BlockId([seed.wrapping_add(1); 32])],
            processed: vec![BlockId([seed; 32])],
            keys: vec![(
                format!("/key-{seed}").into_bytes(),
                KeyState {
                    live: vec![Version {
                        block: BlockId([seed; 32]),
                        priority: u64::from(seed) + 1,
                        value: vec![seed; 12],
                    }],
                    tombstones: vec![BlockId([9; 32])],
                },
            )],
            heads_removed: vec![cid(seed.wrapping_add(2))],
            heads_added: vec![(cid(seed), u64::from(seed) + 1)],
            live_keys,
            ..Default::default()
        }
    }

    fn journal_bytes(transactions: &[Transaction], generation: Generation) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("pinset.redb");
        let (mut journal, _) = Journal::open(&database, generation).unwrap();
        journal.restart(generation).unwrap();
        for tx in transactions {
            journal.record(tx);
        }
        journal.sync().unwrap();
        std::fs::read(Journal::path_of(&database)).unwrap()
    }

    #[test]
    fn replays_the_records_of_its_commit_in_order() {
        let written = [transaction(1, 1), transaction(2, -1)];
        let bytes = journal_bytes(&written, GENERATION);
        assert_eq!(read_records(&bytes, GENERATION).unwrap(), written);
    }

    #[test]
    fn ignores_a_journal_of_another_commit_or_store() {
        let bytes = journal_bytes(&[transaction(1, 1)], GENERATION);
        for other in [
            Generation {
                store: 7,
                commits: 4,
            },
            Generation {
                store: 8,
                commits: 3,
            },
        ] {
            assert_eq!(read_records(&bytes, other).unwrap(), []);
        }
        assert_eq!(
            read_records(&bytes[..HEADER_LEN - 1], GENERATION).unwrap(),
            []
        );
    }

    #[test]
    fn a_record_cut_short_or_garbled_ends_the_journal() {
        let written = [transaction(1, 1), transaction(2, 1)];
        let bytes = journal_bytes(&written, GENERATION);
        for cut in 1..40 {
            let records = read_records(&bytes[..bytes.len() - cut], GENERATION).unwrap();
            assert_eq!(records, written[..1], "cut {cut} bytes");
        }
        let mut garbled = bytes.clone();
        *garbled.last_mut().unwrap() ^= 1;
        assert_eq!(read_records(&garbled, GENERATION).unwrap(), written[..1]);
    }

    #[test]
    fn stops_recording_past_its_limit_until_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("pinset.redb");
        let (mut journal, _) = Journal::open(&database, GENERATION).unwrap();
        journal.restart(GENERATION).unwrap();
        let mut one = Vec::new();
        encode(&transaction(1, 1), &mut one);
        journal.limit = (RECORD_HEADER_LEN + one.len()) * 3 / 2;
        journal.record(&transaction(1, 1));
        assert!(journal.is_complete());
        journal.record(&transaction(2, 1));
        assert!(!journal.is_complete());
        let next = Generation {
            commits: 4,
            ..GENERATION
        };
        journal.restart(next).unwrap();
        assert!(journal.is_complete());
        journal.record(&transaction(4, 1));
        journal.sync().unwrap();
        let (_, replayed) = Journal::open(&database, next).unwrap();
        assert_eq!(replayed, [transaction(4, 1)]);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn records_round_trip(seed in any::<u8>(), live_keys in any::<i64>()) {
            let tx = transaction(seed, live_keys);
            let mut out = Vec::new();
            encode(&tx, &mut out);
            prop_assert_eq!(decode(&out).unwrap(), tx);
        }
    }
}
