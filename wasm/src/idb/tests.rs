//! IndexedDB exists in browsers only: these run in the headless Chromium tier.

use pinfold_core::crdt::Version;
use wasm_bindgen_test::*;

use super::*;

wasm_bindgen_test_configure!(run_in_browser);

fn key(n: u32) -> Vec<u8> {
    format!("/pins/{n:05}").into_bytes()
}

fn state(n: u32) -> KeyState {
    KeyState {
        live: vec![Version {
            block: BlockId([n as u8; 32]),
            priority: u64::from(n),
            value: n.to_be_bytes().to_vec(),
        }],
        tombstones: Vec::new(),
    }
}

/// A fresh store that writes one record per key, never pages nor a log.
async fn records_only(name: &str) -> IdbStore {
    let mut store = IdbStore::open(&format!("{name}-{}", js_sys::Math::random()))
        .await
        .unwrap();
    store.page_min = usize::MAX;
    store.log = None;
    store
}

/// A fresh store holding the even keys from 0 to 398, as one record per key.
async fn store_of_even_keys(name: &str) -> IdbStore {
    let mut store = records_only(name).await;
    let tx = Transaction {
        keys: (0..200).map(|n| (key(2 * n), state(2 * n))).collect(),
        live_keys: 200,
        ..Transaction::default()
    };
    store.commit(tx).await.unwrap();
    store
}

/// `key_states` of `numbers` against reading each key on its own.
async fn check(store: &IdbStore, numbers: &[u32]) {
    let keys: Vec<Vec<u8>> = numbers.iter().map(|&n| key(n)).collect();
    let asked: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let states = store.key_states(&asked).await.unwrap();
    assert_eq!(states.len(), numbers.len());
    for (&n, got) in numbers.iter().zip(states) {
        assert_eq!(got, store.key_state(&key(n)).await.unwrap(), "key {n}");
        assert_eq!(got, (n % 2 == 0 && n < 400).then(|| state(n)), "key {n}");
    }
}

#[wasm_bindgen_test]
async fn key_states_of_close_keys_in_any_order_and_of_absent_ones() {
    let store = store_of_even_keys("range-close").await;
    // A run of stored and absent keys, as a snapshot chunk asks for them.
    check(&store, &(100..160).collect::<Vec<_>>()).await;
    // The same, out of order and with repeats.
    let mut shuffled: Vec<u32> = (100..160).rev().collect();
    shuffled.extend([120, 121, 100]);
    check(&store, &shuffled).await;
    // Past every stored key, and below all of them.
    check(&store, &(500..540).collect::<Vec<_>>()).await;
    check(
        &store,
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    )
    .await;
}

#[wasm_bindgen_test]
async fn key_states_of_keys_far_apart_are_read_one_by_one() {
    let store = store_of_even_keys("range-far").await;
    // Sixteen keys spread over the whole store: the range would hold 200.
    let spread: Vec<u32> = (0..16).map(|n| n * 26).collect();
    let keys: Vec<Vec<u8>> = spread.iter().map(|&n| key(n)).collect();
    let asked: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    assert!(store.key_states_in_range(&asked).await.unwrap().is_none());
    check(&store, &spread).await;
    // A few keys: read one by one, whatever their spread.
    check(&store, &[4, 398, 7]).await;
}

fn tombstoned(n: u32) -> KeyState {
    KeyState {
        live: Vec::new(),
        tombstones: vec![BlockId([n as u8; 32])],
    }
}

fn keys_tx(entries: impl IntoIterator<Item = (u32, KeyState)>) -> Transaction {
    Transaction {
        keys: entries
            .into_iter()
            .map(|(n, state)| (key(n), state))
            .collect(),
        ..Transaction::default()
    }
}

/// Every entry, read `limit` at a time.
async fn scan_all(store: &IdbStore, limit: usize) -> Vec<(Vec<u8>, KeyState)> {
    let mut all: Vec<(Vec<u8>, KeyState)> = Vec::new();
    loop {
        let after = all.last().map(|(key, _)| key.clone());
        let page = store.scan(after.as_deref(), limit).await.unwrap();
        assert!(page.len() <= limit);
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// What `a` and `b` answer for keys 0 to 5199, read together, one by one and scanned.
async fn assert_same(a: &IdbStore, b: &IdbStore) {
    let keys: Vec<Vec<u8>> = (0..5200).rev().map(key).collect();
    let asked: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    assert_eq!(
        a.key_states(&asked).await.unwrap(),
        b.key_states(&asked).await.unwrap()
    );
    for n in [
        0, 1, 3, 6, 30, 31, 450, 897, 898, 899, 2000, 5000, 5099, 5100,
    ] {
        assert_eq!(
            a.key_state(&key(n)).await.unwrap(),
            b.key_state(&key(n)).await.unwrap(),
            "key {n}"
        );
    }
    let whole = scan_all(b, 100_000).await;
    assert_eq!(scan_all(a, 100_000).await, whole);
    assert_eq!(scan_all(a, 7).await, whole);
    assert_eq!(scan_all(a, PAGE_KEYS).await, whole);
}

fn pages(store: &IdbStore) -> usize {
    store.runs.values().map(|run| run.firsts.len()).sum()
}

async fn commit_both(a: &mut IdbStore, b: &mut IdbStore, tx: Transaction) {
    a.commit(tx.clone()).await.unwrap();
    b.commit(tx).await.unwrap();
}

#[wasm_bindgen_test]
async fn paged_keys_read_as_records_would() {
    let name = format!("paged-{}", js_sys::Math::random());
    let mut paged = IdbStore::open(&name).await.unwrap();
    let mut plain = records_only("plain").await;
    // Records where pages cannot go, as a warm store writes them.
    paged.log = None;

    // A snapshot chunk into a fresh store: 300 keys in order, as five pages.
    commit_both(
        &mut paged,
        &mut plain,
        keys_tx((0..300).map(|n| (3 * n, state(3 * n)))),
    )
    .await;
    assert_eq!(pages(&paged), 300usize.div_ceil(PAGE_KEYS));
    assert!(
        paged.written.is_some(),
        "opened empty: knows the keys written"
    );
    assert_eq!(records(&paged, KEYS).await, 0);
    assert_same(&paged, &plain).await;

    // A delta: paged keys changed and removed, and new keys between pages' keys.
    let delta = [
        (3, state(4)),
        (30, state(31)),
        (897, state(1)),
        (6, tombstoned(6)),
    ]
    .into_iter()
    .chain([1, 31, 898, 2000].map(|n| (n, state(n))));
    commit_both(&mut paged, &mut plain, keys_tx(delta)).await;
    assert_same(&paged, &plain).await;

    // Keys in order into a range that pages hold: written as records.
    commit_both(
        &mut paged,
        &mut plain,
        keys_tx((400..500).map(|n| (n, state(n + 1)))),
    )
    .await;
    assert_eq!(pages(&paged), 5);
    assert_same(&paged, &plain).await;

    // Keys in order past every key: pages again.
    commit_both(
        &mut paged,
        &mut plain,
        keys_tx((5000..5100).map(|n| (n, state(n)))),
    )
    .await;
    assert_eq!(pages(&paged), 7);
    assert_same(&paged, &plain).await;

    // Reopened, the store finds its pages again.
    drop(paged);
    let reopened = IdbStore::open(&name).await.unwrap();
    assert_eq!(pages(&reopened), 7);
    assert!(reopened.written.is_none(), "opened with keys: reads them");
    assert_same(&reopened, &plain).await;
}

#[wasm_bindgen_test]
async fn keys_out_of_order_or_few_are_records() {
    let mut store = IdbStore::open(&format!("records-{}", js_sys::Math::random()))
        .await
        .unwrap();
    store.log = None;
    store
        .commit(keys_tx((0..100).rev().map(|n| (n, state(n)))))
        .await
        .unwrap();
    store
        .commit(keys_tx(
            (200..200 + PAGE_MIN as u32 - 1).map(|n| (n, state(n))),
        ))
        .await
        .unwrap();
    assert_eq!(pages(&store), 0);
    assert_eq!(scan_all(&store, 1000).await.len(), 100 + PAGE_MIN - 1);
}

/// A transaction that leaves `block` pending, or (`merged`) no longer pending.
fn walk_tx(
    entries: impl IntoIterator<Item = (u32, KeyState)>,
    block: u8,
    merged: bool,
) -> Transaction {
    let id = BlockId([block; 32]);
    let cid = id.to_cid();
    let mut tx = keys_tx(entries);
    match merged {
        true => tx.pending_removed = vec![id],
        false => {
            tx.pending_added = vec![PendingBlock {
                kind: pinfold_core::crdt::BlockKind::Delta,
                cid,
                root: cid,
                root_priority: 0,
                parent_priority: u64::MAX,
            }]
        }
    }
    tx
}

/// The number of records in `table`, up to 1000.
async fn records(store: &IdbStore, table: &str) -> usize {
    store
        .read_after(table, None, 1000, false)
        .await
        .unwrap()
        .0
        .len()
}

#[wasm_bindgen_test]
async fn logged_keys_read_as_records_would_and_merge_into_pages() {
    let name = format!("logged-{}", js_sys::Math::random());
    let mut logging = IdbStore::open(&name).await.unwrap();
    logging.merge_slice = 50;
    let mut plain = records_only("plain").await;
    assert!(logging.log.is_some() && logging.written.is_some());

    // Deltas while a block is pending: logged, read from memory.
    commit_both(
        &mut logging,
        &mut plain,
        walk_tx((0..300).rev().map(|n| (3 * n, state(3 * n))), 1, false),
    )
    .await;
    let delta = [
        (3, state(4)),
        (6, tombstoned(6)),
        (1, state(1)),
        (2000, state(2000)),
    ];
    commit_both(&mut logging, &mut plain, keys_tx(delta)).await;
    assert_eq!((pages(&logging), records(&logging, LOG).await), (0, 2));
    assert_eq!(records(&logging, KEYS).await, 0);
    assert_same(&logging, &plain).await;

    // Nothing left pending: merged into pages, in slices, and the log is cleared.
    commit_both(
        &mut logging,
        &mut plain,
        walk_tx([(5, state(5)), (897, state(1))], 1, true),
    )
    .await;
    assert_eq!(records(&logging, LOG).await, 0);
    assert!(pages(&logging) >= 303 / PAGE_KEYS);
    assert_eq!(records(&logging, KEYS).await, 0);
    assert_same(&logging, &plain).await;

    // More deltas: logged over the pages, then merged into them (between their keys
    // and past the last one).
    let later = (0..400).map(|n| (5100 - 7 * n, state(n)));
    commit_both(&mut logging, &mut plain, walk_tx(later, 2, false)).await;
    assert_same(&logging, &plain).await;
    commit_both(
        &mut logging,
        &mut plain,
        walk_tx([(0, tombstoned(0))], 2, true),
    )
    .await;
    assert_eq!(records(&logging, LOG).await, 0);
    assert_same(&logging, &plain).await;

    // A reload in the middle of a walk: the log is read back, logging goes on where
    // it was, and the log is merged once the walk is done.
    commit_both(
        &mut logging,
        &mut plain,
        walk_tx((0..100).map(|n| (2 * n + 1, state(n))), 3, false),
    )
    .await;
    assert_eq!(records(&logging, LOG).await, 1);
    drop(logging);
    let mut reopened = IdbStore::open(&name).await.unwrap();
    reopened.merge_slice = 50;
    assert!(reopened.written.is_none(), "opened with keys: reads them");
    assert_eq!(
        reopened.log.as_ref().map(|log| log.entries.len()),
        Some(100)
    );
    assert_same(&reopened, &plain).await;
    // Logged after the reload (the block is still pending): numbered after the first
    // record, so that a second reload reads it back after that one (its newer states
    // win).
    commit_both(
        &mut reopened,
        &mut plain,
        keys_tx((0..50).map(|n| (2 * n + 1, state(n + 7)))),
    )
    .await;
    assert_eq!(records(&reopened, LOG).await, 2);
    drop(reopened);
    let mut reopened = IdbStore::open(&name).await.unwrap();
    reopened.merge_slice = 50;
    assert_same(&reopened, &plain).await;
    commit_both(&mut reopened, &mut plain, walk_tx([], 3, true)).await;
    assert_eq!(records(&reopened, LOG).await, 0);
    assert_eq!(records(&reopened, KEYS).await, 0);
    assert_same(&reopened, &plain).await;

    // A delta once synced (nothing pending, nothing logged) goes into the pages at
    // once; of a key written twice, the later state stays.
    let synced = [
        (7, state(70)),
        (3, tombstoned(3)),
        (7, state(71)),
        (7000, state(1)),
    ];
    let numbered = reopened.log.as_ref().map(|log| log.next);
    commit_both(&mut reopened, &mut plain, keys_tx(synced)).await;
    assert_eq!(
        reopened.log.as_ref().map(|log| log.next),
        numbered,
        "not logged"
    );
    assert_eq!(records(&reopened, LOG).await, 0);
    assert_eq!(records(&reopened, KEYS).await, 0);
    assert_eq!(reopened.key_state(&key(7)).await.unwrap(), Some(state(71)));
    assert_same(&reopened, &plain).await;
}

/// A database as version 1 left it: the tables without pages, a key record, no count.
async fn version_1_database(name: &str) {
    let factory: web_sys::IdbFactory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
        .unwrap()
        .unchecked_into();
    let request = factory.open_with_u32(name, 1).unwrap();
    let on_upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new({
        let request = request.clone();
        move |_| {
            let db: IdbDatabase = request.result().unwrap().unchecked_into();
            for table in [BLOCKS, PROCESSED, KEYS, HEADS, PENDING, META] {
                db.create_object_store(table).unwrap();
            }
        }
    });
    request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let db: IdbDatabase = done(request.clone().unchecked_into())
        .await
        .unwrap()
        .unchecked_into();
    let write = db
        .transaction_with_str_and_mode(KEYS, IdbTransactionMode::Readwrite)
        .unwrap();
    let keys = write.object_store(KEYS).unwrap();
    keys.put_with_key(&bytes(&state(7).encode()), &bytes(&key(7)))
        .unwrap();
    completed(&write).await.unwrap();
    db.close();
}

#[wasm_bindgen_test]
async fn a_version_1_database_keeps_its_records_and_takes_pages() {
    let name = format!("v1-{}", js_sys::Math::random());
    version_1_database(&name).await;
    let mut store = IdbStore::open(&name).await.unwrap();
    assert_eq!(store.live_keys, 1);
    assert_eq!(store.key_state(&key(7)).await.unwrap(), Some(state(7)));
    store
        .commit(keys_tx((100..200).map(|n| (n, state(n)))))
        .await
        .unwrap();
    assert_eq!(pages(&store), 2);
    let all = scan_all(&store, 1000).await;
    assert_eq!(all.len(), 101);
    assert_eq!(all[0], (key(7), state(7)));
}

#[wasm_bindgen_test]
async fn blocks_written_since_opened_empty_are_known_without_reading() {
    let name = format!("blocks-{}", js_sys::Math::random());
    let mut store = IdbStore::open(&name).await.unwrap();
    assert!(store.blocks_written.is_some(), "opened empty");
    let (root, index, merged) = (BlockId([1; 32]), BlockId([2; 32]), BlockId([3; 32]));
    store
        .commit(Transaction {
            blocks: vec![(root, b"root".to_vec()), (index, b"index".to_vec())],
            processed: vec![merged],
            ..Transaction::default()
        })
        .await
        .unwrap();
    // Not waited for: a read is answered as if the commit had finished.
    assert!(store.committing.is_some());
    assert_eq!(store.block(&root).await.unwrap(), Some(b"root".to_vec()));
    assert!(store.is_processed(&merged).await.unwrap());
    assert!(!store.is_processed(&root).await.unwrap());
    store
        .commit(Transaction {
            blocks_removed: vec![index],
            ..Transaction::default()
        })
        .await
        .unwrap();
    assert_eq!(store.block(&index).await.unwrap(), None);
    assert_eq!(records(&store, BLOCKS).await, 1);
    store.flush().await.unwrap();
    assert!(store.committing.is_none(), "flushed");

    // Reopened holding blocks, it reads them.
    drop(store);
    let reopened = IdbStore::open(&name).await.unwrap();
    assert!(reopened.blocks_written.is_none());
    assert_eq!(reopened.block(&root).await.unwrap(), Some(b"root".to_vec()));
    assert_eq!(reopened.block(&index).await.unwrap(), None);
    assert!(reopened.is_processed(&merged).await.unwrap());
    assert!(!reopened.is_processed(&root).await.unwrap());
}
