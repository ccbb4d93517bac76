//! Tests of the webhook store against real files in a temporary directory.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use rusqlite::Connection;
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::schema::SCHEMA_VERSION;
use super::*;

/// An event on `webhook`, body `{"id":"<id>"}`, a duplicate until 1 s after `received_ms`.
fn event(webhook: &str, id: &str, received_ms: i64) -> NewEvent {
    NewEvent {
        webhook: webhook.to_owned(),
        event_id: id.to_owned(),
        content_type: Some("application/json".to_owned()),
        body: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
        received_ms,
        dedupe_until_ms: received_ms + 1_000,
    }
}

fn open(dir: &TempDir) -> Store {
    Store::open(dir.path()).expect("store opens")
}

fn seqs(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn an_event_is_stored_once_and_its_copy_is_a_duplicate() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    assert_eq!(
        store.insert(event("osigu", "evt_1", 1000)).await.unwrap(),
        Inserted::Stored { seq: 1 }
    );
    let mut copy = event("osigu", "evt_1", 1500);
    copy.body = Bytes::from_static(b"another body");
    assert_eq!(store.insert(copy).await.unwrap(), Inserted::Duplicate);
    // The same id on another webhook is another event.
    assert_eq!(
        store.insert(event("oas", "evt_1", 1500)).await.unwrap(),
        Inserted::Stored { seq: 2 }
    );

    let due = store.due("osigu", 1000, 10).await.unwrap();
    let expected = Event {
        seq: 1,
        entry: None,
        webhook: "osigu".to_owned(),
        event_id: "evt_1".to_owned(),
        content_type: Some("application/json".to_owned()),
        body: Bytes::from_static(b"{\"id\":\"evt_1\"}"),
        received_ms: 1000,
        attempts: 0,
        next_attempt_ms: 1000,
        last_status: None,
        last_error: None,
    };
    assert_eq!(due, vec![expected]);
    let counts = store.counts("osigu").await.unwrap();
    assert_eq!(
        counts,
        Counts {
            pending: 1,
            dead: 0,
            oldest_pending_ms: Some(1000)
        }
    );
}

#[tokio::test]
async fn an_empty_body_and_no_content_type_round_trip() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let mut empty = event("osigu", "empty", 1000);
    empty.body = Bytes::new();
    empty.content_type = None;
    store.insert(empty).await.unwrap();
    let head = store.head("osigu", 1).await.unwrap();
    assert_eq!((head[0].body.len(), head[0].content_type.as_deref()), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_copies_store_exactly_one() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.insert(event("osigu", "evt_same", 1000 + i)).await })
        })
        .collect();
    let (mut stored, mut duplicates) = (0, 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Inserted::Stored { .. } => stored += 1,
            Inserted::Duplicate => duplicates += 1,
        }
    }
    assert_eq!((stored, duplicates), (1, 49));
    assert_eq!(store.counts("osigu").await.unwrap().pending, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_arrivals_are_all_stored_in_seq_order() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("evt_{i}");
                let inserted = store.insert(event("osigu", &id, 1000)).await;
                (id, inserted)
            })
        })
        .collect();
    let mut seq_of = HashMap::new();
    for task in tasks {
        let (id, inserted) = task.await.unwrap();
        match inserted.unwrap() {
            Inserted::Stored { seq } => seq_of.insert(id, seq),
            Inserted::Duplicate => panic!("{id} was called a duplicate"),
        };
    }
    let mut all: Vec<i64> = seq_of.values().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=500).collect::<Vec<i64>>());

    let listed = store.list("osigu", State::Pending, 1000).await.unwrap();
    assert_eq!(listed.len(), 500);
    assert!(listed.windows(2).all(|w| w[0].seq < w[1].seq));
    for e in &listed {
        assert_eq!((seq_of[&e.event_id], e.state), (e.seq, State::Pending));
    }
}

#[tokio::test]
async fn pending_events_and_ids_survive_a_restart() {
    let dir = TempDir::new().unwrap();
    {
        let store = open(&dir);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            store.insert(event("osigu", id, 1000 + i as i64)).await.unwrap();
        }
        store
            .retry_later(2, 9000, Some(503), Some("service unavailable"))
            .await
            .unwrap();
        store.dead(3, Some(400), Some("bad request")).await.unwrap();
    }
    let store = open(&dir);
    let counts = store.counts("osigu").await.unwrap();
    assert_eq!(
        counts,
        Counts {
            pending: 2,
            dead: 1,
            oldest_pending_ms: Some(1000)
        }
    );
    let head = store.head("osigu", 10).await.unwrap();
    let seen: Vec<_> = head
        .iter()
        .map(|e| {
            (
                e.seq,
                e.event_id.as_str(),
                e.attempts,
                e.next_attempt_ms,
                e.last_status,
            )
        })
        .collect();
    assert_eq!(seen, vec![(1, "a", 0, 1000, None), (2, "b", 1, 9000, Some(503))]);
    assert_eq!(head[0].body, Bytes::from_static(b"{\"id\":\"a\"}"));
    assert_eq!(
        store.insert(event("osigu", "a", 1500)).await.unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(
        store.insert(event("osigu", "d", 1500)).await.unwrap(),
        Inserted::Stored { seq: 4 }
    );
}

#[tokio::test]
async fn retry_dead_and_replay_move_an_event_and_the_counts() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store.insert(event("osigu", "e1", 1000)).await.unwrap();
    store
        .retry_later(1, 5000, Some(503), Some("upstream answered 503"))
        .await
        .unwrap();
    assert_eq!(store.due("osigu", 4999, 10).await.unwrap(), vec![]);
    assert_eq!(store.next_due_ms("osigu").await.unwrap(), Some(5000));
    let due = store.due("osigu", 5000, 10).await.unwrap();
    let e = &due[0];
    assert_eq!(
        (e.attempts, e.last_status, e.last_error.as_deref()),
        (1, Some(503), Some("upstream answered 503"))
    );

    store.dead(1, Some(400), Some("rejected")).await.unwrap();
    let counts = store.counts("osigu").await.unwrap();
    assert_eq!(
        counts,
        Counts {
            pending: 0,
            dead: 1,
            oldest_pending_ms: None
        }
    );
    assert_eq!(store.due("osigu", i64::MAX, 10).await.unwrap(), vec![]);
    assert_eq!(store.next_due_ms("osigu").await.unwrap(), None);
    // A late retry_later does not revive a dead letter.
    store.retry_later(1, 1, Some(500), None).await.unwrap();
    let dead_letter = EventSummary {
        seq: 1,
        entry: None,
        event_id: "e1".to_owned(),
        received_ms: 1000,
        attempts: 2,
        next_attempt_ms: 5000,
        last_status: Some(400),
        last_error: Some("rejected".to_owned()),
        state: State::Dead,
    };
    assert_eq!(
        store.list("osigu", State::Dead, 10).await.unwrap(),
        vec![dead_letter]
    );

    assert!(!store.replay_one("oas", "e1", 7000).await.unwrap());
    assert!(store.replay_one("osigu", "e1", 7000).await.unwrap());
    assert!(
        !store.replay_one("osigu", "e1", 7000).await.unwrap(),
        "no longer dead"
    );
    // Received again at the replay, so its max_age starts over; it keeps its place (seq).
    let replayed = EventSummary {
        seq: 1,
        entry: None,
        event_id: "e1".to_owned(),
        received_ms: 7000,
        attempts: 0,
        next_attempt_ms: 7000,
        last_status: None,
        last_error: None,
        state: State::Pending,
    };
    assert_eq!(
        store.list("osigu", State::Pending, 10).await.unwrap(),
        vec![replayed]
    );
    assert_eq!(
        store.counts("osigu").await.unwrap(),
        Counts {
            pending: 1,
            dead: 0,
            oldest_pending_ms: Some(7000)
        }
    );

    // Delivered: gone from the queue, but the id is still a duplicate, and seq is not reused.
    store.delivered(1).await.unwrap();
    assert_eq!(
        store.counts("osigu").await.unwrap(),
        Counts {
            pending: 0,
            dead: 0,
            oldest_pending_ms: None
        }
    );
    assert_eq!(
        store.insert(event("osigu", "e1", 1500)).await.unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(
        store.insert(event("osigu", "e2", 1500)).await.unwrap(),
        Inserted::Stored { seq: 2 }
    );
}

#[tokio::test]
async fn replay_dead_since_takes_the_dead_letters_received_from_then() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    for (seq, (id, at)) in [("x", 100), ("y", 200), ("z", 300)].into_iter().enumerate() {
        store.insert(event("osigu", id, at)).await.unwrap();
        store
            .dead(seq as i64 + 1, None, Some("connection refused"))
            .await
            .unwrap();
    }
    store.insert(event("oas", "w", 250)).await.unwrap();
    store.dead(4, Some(500), None).await.unwrap();

    assert_eq!(store.replay_dead_since("osigu", 200, 9000).await.unwrap(), 2);
    let pending = store.list("osigu", State::Pending, 10).await.unwrap();
    let pending: Vec<_> = pending
        .iter()
        .map(|e| (e.event_id.as_str(), e.attempts, e.next_attempt_ms))
        .collect();
    assert_eq!(pending, vec![("y", 0, 9000), ("z", 0, 9000)]);
    let dead = store.list("osigu", State::Dead, 10).await.unwrap();
    assert_eq!(
        dead.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        vec!["x"]
    );
    assert_eq!(store.counts("oas").await.unwrap().dead, 1);
}

#[tokio::test]
async fn due_respects_next_attempt_and_arrival_order() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    for id in ["e1", "e2", "e3"] {
        store.insert(event("osigu", id, 1000)).await.unwrap();
    }
    store
        .retry_later(1, 10_000, None, Some("connection refused"))
        .await
        .unwrap();
    assert_eq!(
        seqs(&store.due("osigu", 999, 10).await.unwrap()),
        Vec::<i64>::new()
    );
    assert_eq!(seqs(&store.due("osigu", 5000, 10).await.unwrap()), vec![2, 3]);
    assert_eq!(
        seqs(&store.due("osigu", 10_000, 10).await.unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(seqs(&store.due("osigu", 10_000, 2).await.unwrap()), vec![1, 2]);
    assert_eq!(seqs(&store.head("osigu", 2).await.unwrap()), vec![1, 2]);
    assert_eq!(store.next_due_ms("osigu").await.unwrap(), Some(1000));
    assert_eq!(store.due("oas", 10_000, 10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_purged_id_can_be_stored_again() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    // Dedupe until 2000.
    assert_eq!(
        store.insert(event("osigu", "p1", 1000)).await.unwrap(),
        Inserted::Stored { seq: 1 }
    );
    store.delivered(1).await.unwrap();
    assert_eq!(
        store.insert(event("osigu", "p1", 1999)).await.unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(store.purge_expired(1999).await.unwrap(), 0);
    assert_eq!(store.purge_expired(2000).await.unwrap(), 1);
    assert_eq!(store.purge_expired(2000).await.unwrap(), 0);
    assert_eq!(
        store.insert(event("osigu", "p1", 2000)).await.unwrap(),
        Inserted::Stored { seq: 2 }
    );
}

#[tokio::test]
async fn an_expired_id_is_new_again_before_the_purge() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store.insert(event("osigu", "p1", 1000)).await.unwrap();
    assert_eq!(
        store.insert(event("osigu", "p1", 2000)).await.unwrap(),
        Inserted::Stored { seq: 2 }
    );
    assert_eq!(store.counts("osigu").await.unwrap().pending, 2);
}

#[tokio::test]
async fn the_purge_works_in_batches() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let ids: Vec<String> = (0..1200).map(|i| format!("b{i}")).collect();
    let inserted = join_all(ids.iter().map(|id| store.insert(event("osigu", id, 1000)))).await;
    assert!(inserted.iter().all(|r| matches!(r, Ok(Inserted::Stored { .. }))));
    let before = store.commits();
    assert_eq!(store.purge_expired(2000).await.unwrap(), 1200);
    // 500 + 500 + 200: three transactions.
    assert_eq!(store.commits() - before, 3);
    assert_eq!(store.purge_expired(2000).await.unwrap(), 0);
}

#[tokio::test]
async fn a_last_error_is_cut_short() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store.insert(event("osigu", "e1", 1000)).await.unwrap();
    store
        .retry_later(1, 2000, None, Some("é".repeat(1000).as_str()))
        .await
        .unwrap();
    let listed = store.list("osigu", State::Pending, 1).await.unwrap();
    assert_eq!(listed[0].last_error.as_deref(), Some("é".repeat(200).as_str()));
}

#[tokio::test]
async fn open_creates_the_directory_and_a_wal_file_with_full_sync() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data").join("dir");
    let store = Store::open(&data).unwrap();
    let file = data.join(FILE_NAME);
    assert!(file.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    // synchronous is per connection: ask the writer's own (FULL = 2).
    let sync: i64 = store
        .write("probe synchronous", |c| {
            c.pragma_query_value(None, "synchronous", |r| r.get(0))
        })
        .await
        .unwrap();
    assert_eq!(sync, 2);

    let outside = Connection::open(&file).unwrap();
    let mode: String = outside
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let version: i64 = outside
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), version), ("wal", SCHEMA_VERSION));
    let mut tables = outside
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let tables: Vec<String> = tables
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tables, vec!["dedupe", "events", "sqlite_sequence"]);
}

#[tokio::test]
async fn a_newer_schema_version_is_refused_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join(FILE_NAME);
    Connection::open(&file)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    match &err {
        StoreError::NewerSchema {
            path,
            found,
            supported,
        } => {
            assert_eq!(
                (&**path, *found, *supported),
                (file.as_path(), SCHEMA_VERSION + 1, SCHEMA_VERSION)
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
    // Refused before anything changed: not even the journal mode.
    let mode: String = Connection::open(&file)
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_share_commits() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let ids: Vec<String> = (0..200).map(|i| format!("g{i}")).collect();
    let before = store.commits();
    let results = join_all(ids.iter().map(|id| store.insert(event("osigu", id, 1000)))).await;
    assert!(results.iter().all(|r| matches!(r, Ok(Inserted::Stored { .. }))));
    let used = store.commits() - before;
    assert!(used < 200, "{used} commits for 200 inserts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_writes_share_one_commit_and_a_failing_one_fails_alone() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    // Hold the writer inside a batch so that the next writes all queue up behind it.
    let (started_tx, started) = oneshot::channel();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let hold = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write("hold the writer", move |_| {
                    let _ = started_tx.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
        }
    });
    started.await.unwrap();
    let before = store.commits();
    let inserts: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.insert(event("osigu", &format!("h{i}"), 1000)).await })
        })
        .collect();
    let failing = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write("a broken statement", |c| {
                    c.execute("INSERT INTO nowhere VALUES (1)", [])
                })
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.inner.writes.capacity() != writer::QUEUE - 201 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("all 201 writes queued");
    release.send(()).unwrap();

    hold.await.unwrap().unwrap();
    for insert in inserts {
        assert!(matches!(insert.await.unwrap().unwrap(), Inserted::Stored { .. }));
    }
    let err = failing.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Sqlite {
                op: "a broken statement",
                ..
            }
        ),
        "{err}"
    );
    // The held batch, then the 201 that waited: two commits.
    assert_eq!(store.commits() - before, 2);
    assert_eq!(store.counts("osigu").await.unwrap().pending, 200);
}

#[tokio::test]
async fn debug_output_shows_no_body() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let mut e = event("osigu", "e1", 1000);
    e.body = Bytes::from_static(b"patient=Jane Doe");
    let shown = format!("{e:?}");
    assert!(
        !shown.contains("Jane") && shown.contains("body: <16 bytes>"),
        "{shown}"
    );
    store.insert(e).await.unwrap();
    let head = store.head("osigu", 1).await.unwrap();
    let shown = format!("{:?}", head[0]);
    assert!(
        !shown.contains("Jane") && shown.contains("body: <16 bytes>"),
        "{shown}"
    );
    assert!(format!("{store:?}").contains(FILE_NAME));
}
