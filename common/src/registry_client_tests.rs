//! Unit tests of the parts that need no registry. `Heartbeat` and the
//! blocking helpers run against the real registry in `registry/tests`.

use super::*;
use proptest::prelude::*;

fn entry(id: u8) -> ServerEntry {
    ServerEntry {
        id,
        mac: MacAddr([2, 0, 0, 0, 0, id]),
        ip: Ipv4Addr::new(10, 0, 0, id),
        udp: if id & 1 == 0 {
            Some(9000 + u16::from(id))
        } else {
            None
        },
    }
}

fn encode(version: u64, entries: &[ServerEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    RegistryLine::Servers {
        version,
        count: entries.len(),
    }
    .write(&mut out)
    .unwrap();
    for e in entries {
        RegistryLine::Entry(*e).write(&mut out).unwrap();
    }
    RegistryLine::End.write(&mut out).unwrap();
    out
}

#[test]
fn reads_a_list_split_at_every_byte() {
    let entries: Vec<ServerEntry> = (1..=5).map(entry).collect();
    let bytes = encode(42, &entries);
    let expected = ServerList {
        version: 42,
        servers: entries,
    };
    // Whole.
    let mut reader = ListReader::new(MAX_SERVERS);
    assert_eq!(reader.feed(&bytes).unwrap(), Some(expected.clone()));
    assert!(!reader.in_progress());
    // One byte at a time: complete only on the very last byte.
    let mut reader = ListReader::new(MAX_SERVERS);
    for (i, b) in bytes.iter().enumerate() {
        let got = reader.feed(std::slice::from_ref(b)).unwrap();
        if i + 1 < bytes.len() {
            assert_eq!(got, None, "byte {i}");
            assert!(reader.in_progress());
        } else {
            assert_eq!(got, Some(expected.clone()));
        }
    }
    // Every two-piece split.
    for cut in 0..=bytes.len() {
        let mut reader = ListReader::new(MAX_SERVERS);
        let first = reader.feed(&bytes[..cut]).unwrap();
        let second = reader.feed(&bytes[cut..]).unwrap();
        assert_eq!(first.or(second), Some(expected.clone()), "cut {cut}");
    }
}

#[test]
fn reads_empty_and_back_to_back_lists() {
    let mut reader = ListReader::new(MAX_SERVERS);
    assert_eq!(
        reader.feed(&encode(1, &[])).unwrap(),
        Some(ServerList {
            version: 1,
            servers: vec![]
        })
    );
    // Two answers in one read: the newer wins; a third, partial, waits.
    let mut bytes = encode(2, &[entry(1)]);
    bytes.extend(encode(3, &[entry(1), entry(2)]));
    let third = encode(4, &[entry(3)]);
    bytes.extend(&third[..10]);
    let got = reader.feed(&bytes).unwrap().unwrap();
    assert_eq!(got.version, 3);
    assert_eq!(got.servers, vec![entry(1), entry(2)]);
    assert!(reader.in_progress());
    assert_eq!(reader.feed(&third[10..]).unwrap().unwrap().version, 4);
}

#[test]
fn refuses_malformed_lists() {
    type Check = fn(&ClientError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (b"ERR unknown command \"X\"\n".to_vec(), |e| matches!(e, ClientError::Refused(r) if r == "unknown command \"X\"")),
        (b"SERVERS version=1 count=300\n".to_vec(), |e| matches!(e, ClientError::TooMany { count: 300, cap: 255 })),
        (b"SERVERS version=1 count=2\n1 02:00:00:00:00:01 10.0.0.1 0\nEND\n".to_vec(), |e| {
            matches!(e, ClientError::CountMismatch { expected: 2, got: 1 })
        }),
        (b"SERVERS version=1 count=0\n1 02:00:00:00:00:01 10.0.0.1 0\n".to_vec(), |e| {
            matches!(e, ClientError::CountMismatch { expected: 0, got: 1 })
        }),
        (
            b"SERVERS version=1 count=2\n1 02:00:00:00:00:01 10.0.0.1 0\n1 02:00:00:00:00:02 10.0.0.2 0\n".to_vec(),
            |e| matches!(e, ClientError::DuplicateId(1)),
        ),
        (b"END\n".to_vec(), |e| matches!(e, ClientError::Unexpected(l) if l == "END")),
        (b"1 02:00:00:00:00:01 10.0.0.1 0\n".to_vec(), |e| matches!(e, ClientError::Unexpected(_))),
        (b"OK ttl_ms=1\n".to_vec(), |e| matches!(e, ClientError::Unexpected(_))),
        (b"SERVERS version=1 count=1\nSERVERS version=2 count=0\n".to_vec(), |e| matches!(e, ClientError::Unexpected(_))),
        (b"SERVERS version=1 count=1\n0 02:00:00:00:00:01 10.0.0.1 0\n".to_vec(), |e| {
            matches!(e, ClientError::Proto(ProtoError::BadId(_)))
        }),
        (b"\xff\xfe\n".to_vec(), |e| matches!(e, ClientError::Proto(ProtoError::NotAscii))),
        (vec![b'7'; 1 << 20], |e| matches!(e, ClientError::LineTooLong(MAX_LINE))),
    ];
    for (bytes, check) in cases {
        let mut reader = ListReader::new(MAX_SERVERS);
        let err = reader.feed(&bytes).unwrap_err();
        assert!(
            check(&err),
            "{:?} gave {err:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
        // After an error the reader starts afresh and works again.
        assert!(!reader.in_progress());
        assert_eq!(
            reader
                .feed(&encode(9, &[entry(2)]))
                .unwrap()
                .unwrap()
                .version,
            9
        );
    }
}

#[test]
fn cap_is_enforced_from_the_header() {
    let mut reader = ListReader::new(2);
    let entries: Vec<ServerEntry> = (1..=3).map(entry).collect();
    assert!(matches!(
        reader.feed(&encode(1, &entries)),
        Err(ClientError::TooMany { count: 3, cap: 2 })
    ));
    assert_eq!(
        reader
            .feed(&encode(2, &entries[..2]))
            .unwrap()
            .unwrap()
            .servers
            .len(),
        2
    );
    // Never above the id space.
    assert_eq!(ListReader::new(10_000).cap, MAX_SERVERS);
}

#[test]
fn backoff_grows_to_the_cap_with_jitter_and_resets() {
    // The heartbeat's steps: 100 ms doubling to 2 s.
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_CAP);
    let mut base = BACKOFF_START;
    for _ in 0..10 {
        let delay = backoff.next_delay();
        assert!(
            delay >= base / 2 && delay <= base,
            "{delay:?} outside [{:?}, {base:?}]",
            base / 2
        );
        base = (base * 2).min(BACKOFF_CAP);
    }
    assert_eq!(base, BACKOFF_CAP);
    // Jittered: a run of delays at the cap is not all the same.
    let at_cap: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
    assert!(at_cap.iter().all(|d| *d >= BACKOFF_CAP / 2));
    assert!(at_cap.iter().any(|d| *d != at_cap[0]));
    backoff.reset();
    assert!(backoff.next_delay() <= BACKOFF_START);
}

#[test]
fn io_timeouts_become_timeout() {
    assert!(matches!(
        ClientError::from(io::Error::from(io::ErrorKind::WouldBlock)),
        ClientError::Timeout
    ));
    assert!(matches!(
        ClientError::from(io::Error::from(io::ErrorKind::TimedOut)),
        ClientError::Timeout
    ));
    assert!(matches!(
        ClientError::from(io::Error::from(io::ErrorKind::BrokenPipe)),
        ClientError::Io(_)
    ));
}

proptest! {
    #[test]
    fn any_split_of_any_list_reads_the_same(
        ids in proptest::collection::btree_set(1u8..=255, 0..40),
        version in any::<u64>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let entries: Vec<ServerEntry> = ids.into_iter().map(entry).collect();
        let bytes = encode(version, &entries);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.extend([0, bytes.len()]);
        points.sort_unstable();
        let mut reader = ListReader::new(MAX_SERVERS);
        let mut got = None;
        for pair in points.windows(2) {
            if let Some(list) = reader.feed(&bytes[pair[0]..pair[1]]).unwrap() {
                prop_assert!(got.is_none());
                got = Some(list);
            }
        }
        prop_assert_eq!(got, Some(ServerList { version, servers: entries }));
    }

    #[test]
    fn reader_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10)) {
        let mut reader = ListReader::new(MAX_SERVERS);
        for chunk in chunks {
            let _ = reader.feed(&chunk);
        }
    }
}
