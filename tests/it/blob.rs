//! BlobService through the running daemon: round trips, dedup, ranges,
//! validation, namespace scoping, health and reflection.

use bytes::Bytes;
use stowage::api::client::{Code, header};
use stowage::api::pb;

use crate::harness::*;

#[tokio::test]
async fn round_trips_are_byte_exact_at_every_edge_size() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let k = 1024;
    let sizes = [
        0,
        1,
        2,
        16 * k - 1,
        16 * k,
        16 * k + 1,
        64 * k,
        256 * k - 1,
        256 * k,
        256 * k + 1,
        512 * k + 3,
        3 * 1024 * k + 7,
    ];
    for (i, &n) in sizes.iter().enumerate() {
        let data = if i % 2 == 0 {
            random_bytes(i as u64, n)
        } else {
            text_bytes(i as u64, n)
        };
        let r = c.put_bytes(header("acme"), data.clone()).await.unwrap();
        let dg = r.digests.unwrap();
        assert_eq!(r.size, n as u64);
        assert_eq!(dg.blake3, b3(&data), "size {n}");
        assert_eq!(dg.sha256, sha256_hex(&data), "size {n}");
        let back = c.get_bytes("acme", &dg.blake3, 0, None).await.unwrap();
        assert!(back == data, "round trip of {n} bytes differs");
        let st = c.stat("acme", &dg.blake3).await.unwrap();
        assert_eq!(st.size, n as u64);
        assert_eq!(st.digests.unwrap().sha256, sha256_hex(&data));
    }
}

#[tokio::test]
async fn round_trip_of_100_mb() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    // Half incompressible, half text: both codecs on one big blob.
    let mut v = random_bytes(100, 50 << 20).to_vec();
    v.extend_from_slice(&text_bytes(101, 50 << 20));
    let data = Bytes::from(v);
    let r = c.put_bytes(header("big"), data.clone()).await.unwrap();
    assert_eq!(r.size, 100 << 20);
    assert!(r.new);
    let dg = r.digests.unwrap();
    let back = c.get_bytes("big", &dg.blake3, 0, None).await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "100 MB round trip differs");
    let s = c.stats().await.unwrap();
    assert!(s.physical_bytes < s.unique_bytes, "text half should compress: {s:?}");
}

#[tokio::test]
async fn same_bytes_are_stored_once() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let data = random_bytes(7, 3 << 20);
    let first = c.put_bytes(header("a"), data.clone()).await.unwrap();
    assert!(first.new);
    assert!(
        first.added_bytes >= 3 << 20,
        "random data is stored raw: {}",
        first.added_bytes
    );
    let before = c.stats().await.unwrap();

    let again = c.put_bytes(header("a"), data.clone()).await.unwrap();
    assert!(!again.new);
    assert_eq!(again.added_bytes, 0);
    let other_ns = c.put_bytes(header("b"), data.clone()).await.unwrap();
    assert!(!other_ns.new);
    assert_eq!(other_ns.added_bytes, 0);

    let after = c.stats().await.unwrap();
    assert_eq!(after.physical_bytes, before.physical_bytes);
    assert_eq!(after.unique_bytes, before.unique_bytes);
    assert_eq!(
        after.logical_bytes,
        2 * before.logical_bytes,
        "two namespaces reference it"
    );
    assert_eq!(after.references, 2);
    assert_eq!(after.blobs, 1);
}

#[tokio::test]
async fn files_sharing_a_middle_share_its_chunks() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let middle = random_bytes(1, 8 << 20);
    let a = [random_bytes(2, 300_000), middle.clone(), random_bytes(3, 200_000)].concat();
    let b = [random_bytes(4, 123_457), middle, random_bytes(5, 400_000)].concat();
    let ra = c.put_bytes(header("ns"), a.into()).await.unwrap();
    let rb = c.put_bytes(header("ns"), b.clone().into()).await.unwrap();
    assert!(ra.added_bytes > 8 << 20);
    assert!(rb.new, "b is a different file");
    // Only b's own ends and the chunks at the seams are new.
    assert!(
        rb.added_bytes < 2 << 20,
        "b added {} bytes for an 8 MiB shared middle",
        rb.added_bytes
    );
    let back = c.get_bytes("ns", &rb.digests.unwrap().blake3, 0, None).await.unwrap();
    assert!(back == b);
}

#[tokio::test]
async fn range_reads_match_slices() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let data = [random_bytes(9, 2 << 20), text_bytes(10, 1 << 20)].concat();
    let n = data.len() as u64;
    let h = c
        .put_bytes(header("r"), data.clone().into())
        .await
        .unwrap()
        .digests
        .unwrap()
        .blake3;
    let ranges = [
        (0, Some(1)),
        (0, None),
        (1, None),
        (65_535, Some(2)),
        (n - 1, Some(1)),
        (1000, Some(500_000)),
        (n / 2, Some(n / 3)),
        (n, None),
        (n, Some(0)),
        (5, Some(0)),
    ];
    for (off, len) in ranges {
        let got = c.get_bytes("r", &h, off, len).await.unwrap();
        let end = len.map_or(n, |l| off + l) as usize;
        assert!(got == data[off as usize..end], "range {off}+{len:?}");
    }
    for (off, len) in [(n + 1, None), (0, Some(n + 1)), (n - 10, Some(11)), (u64::MAX, Some(2))] {
        let e = c.get_bytes("r", &h, off, len).await.unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "range {off}+{len:?}: {e:?}");
    }
}

#[tokio::test]
async fn mismatched_uploads_are_rejected_and_keep_nothing() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let data = random_bytes(11, 1 << 20);
    let h = b3(&data);
    let before = c.stats().await.unwrap();
    let cases = [
        pb::PutHeader {
            expected_sha256: "00".repeat(32),
            ..header("m")
        },
        pb::PutHeader {
            expected_blake3: "11".repeat(32),
            ..header("m")
        },
        pb::PutHeader {
            expected_size: Some(data.len() as u64 - 1),
            ..header("m")
        },
        pb::PutHeader {
            expected_size: Some(data.len() as u64 + 1),
            ..header("m")
        },
    ];
    for hd in cases {
        let e = c.put_bytes(hd.clone(), data.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{hd:?}: {e:?}");
        assert!(!e.message().is_empty());
    }
    assert_eq!(c.find_missing("m", vec![h.clone()]).await.unwrap(), vec![h.clone()]);
    assert_eq!(c.stat("m", &h).await.unwrap_err().code(), Code::NotFound);
    let after = c.stats().await.unwrap();
    assert_eq!(
        (
            after.logical_bytes,
            after.unique_bytes,
            after.physical_bytes,
            after.chunks,
            after.blobs
        ),
        (
            before.logical_bytes,
            before.unique_bytes,
            before.physical_bytes,
            before.chunks,
            before.blobs
        )
    );
    // The right expectations succeed, and a failed attempt left nothing in the way.
    let ok = pb::PutHeader {
        expected_sha256: sha256_hex(&data),
        expected_blake3: h.clone(),
        expected_size: Some(data.len() as u64),
        ..header("m")
    };
    let r = c.put_bytes(ok, data.clone()).await.unwrap();
    assert!(r.new);
    assert!(c.get_bytes("m", &h, 0, None).await.unwrap() == data);
}

#[tokio::test]
async fn namespaces_see_only_their_own_blobs() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let data = text_bytes(12, 100_000);
    let h = put(&c, "team-a", data.clone()).await;
    assert_eq!(c.stat("team-b", &h).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        c.get_bytes("team-b", &h, 0, None).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.find_missing("team-b", vec![h.clone()]).await.unwrap(),
        vec![h.clone()]
    );
    assert!(c.find_missing("team-a", vec![h.clone()]).await.unwrap().is_empty());
    // Storing it from team-b costs nothing and makes it visible there.
    let r = c.put_bytes(header("team-b"), data).await.unwrap();
    assert_eq!(r.added_bytes, 0);
    assert!(c.stat("team-b", &h).await.is_ok());
}

#[tokio::test]
async fn extra_digests_are_computed_on_request() {
    use sha1::Digest as _;
    let d = Daemon::start("").await;
    let c = d.client().await;
    let data = text_bytes(13, 300_000);
    let hd = pb::PutHeader {
        digests: vec![
            pb::Digest::Sha1 as i32,
            pb::Digest::Sha512 as i32,
            pb::Digest::Md5 as i32,
        ],
        ..header("x")
    };
    let dg = c.put_bytes(hd, data.clone()).await.unwrap().digests.unwrap();
    assert_eq!(dg.sha1.unwrap(), hex::encode(sha1::Sha1::digest(&data)));
    assert_eq!(dg.sha512.unwrap(), hex::encode(sha2::Sha512::digest(&data)));
    assert_eq!(dg.md5.unwrap(), hex::encode(md5::Md5::digest(&data)));
    let plain = c
        .put_bytes(header("x"), text_bytes(14, 10))
        .await
        .unwrap()
        .digests
        .unwrap();
    assert!(plain.sha1.is_none() && plain.md5.is_none());
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let d = Daemon::start("").await;
    let mut c = d.client().await;
    for ns in ["", "../etc", "a//b", "a b", "x\n", &"n".repeat(129)] {
        let e = c.put_bytes(header(ns), Bytes::from_static(b"hi")).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "namespace {ns:?}");
    }
    for h in ["", "abc", &"zz".repeat(32)] {
        let e = c.stat("ok", h).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "hash {h:?}");
        assert!(e.message().contains("blake3"), "{}", e.message());
    }
    // A Put that starts with data instead of a header.
    let msgs = vec![pb::PutRequest {
        msg: Some(pb::put_request::Msg::Data(Bytes::from_static(b"x"))),
    }];
    let e = c.blobs.put(futures::stream::iter(msgs)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A second header mid-stream.
    let msgs = vec![
        pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(header("ok"))),
        },
        pb::PutRequest {
            msg: Some(pb::put_request::Msg::Header(header("ok"))),
        },
    ];
    let e = c.blobs.put(futures::stream::iter(msgs)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let hd = pb::PutHeader {
        digests: vec![42],
        ..header("ok")
    };
    assert_eq!(
        c.put_bytes(hd, Bytes::new()).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // The daemon is still fine.
    assert!(c.put_bytes(header("ok"), Bytes::from_static(b"fine")).await.is_ok());
}

#[tokio::test]
async fn health_and_reflection_answer() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let d = Daemon::start("").await;
    let ch = tonic::transport::Endpoint::from_shared(d.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let h = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: "stowage.v1.BlobService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.status(), ServingStatus::Serving);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = ServerReflectionClient::new(ch)
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected {msg:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"stowage.v1.BlobService".to_string()), "{names:?}");
    assert!(names.contains(&"stowage.v1.AdminService".to_string()), "{names:?}");
}

#[tokio::test]
async fn declared_digest_of_a_stored_blob_only_verifies() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    // One size handled inline, one through the worker pipeline.
    for (i, n) in [(0u64, 40_000usize), (1, 3 << 20)] {
        let data = random_bytes(50 + i, n);
        let (b, s) = (b3(&data), sha256_hex(&data));
        let first = c.put_bytes(header("one"), data.clone()).await.unwrap();
        assert!(first.new);
        let before = c.stats().await.unwrap();

        // By BLAKE3, from another namespace, asking for an extra digest too.
        let hd = pb::PutHeader {
            expected_blake3: b.clone(),
            digests: vec![pb::Digest::Md5 as i32],
            ..header("two")
        };
        let r = c.put_bytes(hd, data.clone()).await.unwrap();
        assert!(!r.new);
        assert_eq!(r.added_bytes, 0);
        let dg = r.digests.unwrap();
        assert_eq!((dg.blake3.as_str(), dg.sha256.as_str()), (b.as_str(), s.as_str()));
        use md5::Digest as _;
        assert_eq!(dg.md5.unwrap(), hex::encode(md5::Md5::digest(&data)));
        assert!(c.get_bytes("two", &b, 0, None).await.unwrap() == data);

        // By SHA-256 alone.
        let hd = pb::PutHeader {
            expected_sha256: s.clone(),
            ..header("three")
        };
        assert_eq!(c.put_bytes(hd, data.clone()).await.unwrap().digests.unwrap().blake3, b);
        assert!(c.stat("three", &b).await.is_ok());

        // Other bytes claiming to be that blob are refused, and change nothing.
        let mut other = data.to_vec();
        other[n / 2] ^= 1;
        for hd in [
            pb::PutHeader {
                expected_blake3: b.clone(),
                ..header("four")
            },
            pb::PutHeader {
                expected_sha256: s.clone(),
                ..header("four")
            },
        ] {
            let e = c.put_bytes(hd, other.clone().into()).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        }
        let e = c
            .put_bytes(
                pb::PutHeader {
                    expected_blake3: b.clone(),
                    ..header("four")
                },
                data.slice(1..),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(c.stat("four", &b).await.unwrap_err().code(), Code::NotFound);
        let after = c.stats().await.unwrap();
        assert_eq!(
            (after.physical_bytes, after.blobs),
            (before.physical_bytes, before.blobs)
        );
        assert_eq!(after.references, before.references + 2);
    }
}
