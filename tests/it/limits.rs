//! Everything a client controls that the daemon would allocate or work
//! for is bounded: frames of an upload (count, empty ones, pace), request
//! lists and strings, message and header sizes, policy rules. Each limit is
//! hit through the real daemon, refused with a reason, and leaves the
//! daemon healthy and the store unchanged.

use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage::api::client::{Client, Code, header, version_ref};
use stowage::api::pb::{self, PackageType as T};

use crate::harness::{Daemon, put, random_bytes};

fn data_put(b: Bytes) -> pb::PutRequest {
    pb::PutRequest {
        msg: Some(pb::put_request::Msg::Data(b)),
    }
}

fn header_put(ns: &str) -> pb::PutRequest {
    pb::PutRequest {
        msg: Some(pb::put_request::Msg::Header(header(ns))),
    }
}

/// A Put of `frames` data messages after the header.
async fn put_frames(
    c: &Client,
    frames: impl Iterator<Item = Bytes> + Send + 'static,
) -> Result<pb::PutResponse, tonic::Status> {
    let msgs = std::iter::once(header_put("ns")).chain(frames.map(data_put));
    c.blobs
        .clone()
        .put(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

fn counts(s: &pb::StatsResponse) -> (u64, u64, u64) {
    (s.blobs, s.references, s.chunks)
}

/// The daemon still serves: a real upload and read succeed.
async fn healthy(c: &Client, seed: u64) {
    let data = random_bytes(seed, 300_000);
    let h = put(c, "ns", data.clone()).await;
    assert_eq!(c.get_bytes("ns", &h, 0, None).await.unwrap(), data);
}

#[tokio::test]
async fn a_flood_of_empty_frames_is_refused_and_the_daemon_stays_small() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let before = c.stats().await.unwrap();
    let rss_before = d.rss();
    // Four floods at once, as in the report: 200,000 empty data messages each.
    let floods = (0..4).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { put_frames(&c, std::iter::repeat_n(Bytes::new(), 200_000)).await })
    });
    for f in futures::future::join_all(floods).await {
        let e = f.unwrap().unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("more than 1024 empty data messages"), "{e:?}");
    }
    // PublishFile goes the same way.
    let h = pb::PublishFileRequest {
        msg: Some(pb::publish_file_request::Msg::Header(pb::PublishFileHeader {
            version: Some(version_ref("ns", "p", T::Generic, "tool", "1")),
            file_name: "tool.bin".into(),
            upload: Some(header("")),
            ..Default::default()
        })),
    };
    let empty = std::iter::repeat_n(Bytes::new(), 200_000).map(|b| pb::PublishFileRequest {
        msg: Some(pb::publish_file_request::Msg::Data(b)),
    });
    let e = c
        .catalog
        .clone()
        .publish_file(futures::stream::iter(std::iter::once(h).chain(empty)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("empty data messages"), "{e:?}");
    let after = c.stats().await.unwrap();
    assert_eq!(counts(&after), counts(&before), "a refused flood stored something");
    if let (Some(b), Some(a)) = (rss_before, d.rss()) {
        eprintln!("daemon RSS {} MiB before, {} MiB after the floods", b >> 20, a >> 20);
        assert!(a < b + (64 << 20), "RSS grew from {b} to {a} bytes");
    }
    healthy(&c, 1).await;
    // Some empty frames among real ones are fine.
    let data = random_bytes(2, 100_000);
    let frames = vec![
        Bytes::new(),
        data.slice(..50_000),
        Bytes::new(),
        data.slice(50_000..),
        Bytes::new(),
    ];
    let r = put_frames(&c, frames.into_iter()).await.unwrap();
    assert_eq!(r.size, 100_000);
}

#[tokio::test]
async fn tiny_frames_are_bounded_by_count() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let before = c.stats().await.unwrap();
    // 20,000 one-byte messages: past 4096 messages they must average 256 bytes.
    let e = put_frames(&c, std::iter::repeat_n(Bytes::from_static(b"x"), 20_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("must average at least 256 bytes"), "{e:?}");
    assert_eq!(counts(&c.stats().await.unwrap()), counts(&before));
    // Small but reasonable frames pass: 4 MiB in 8,192 messages of 512 bytes.
    let data = random_bytes(3, 4 << 20);
    let frames: Vec<Bytes> = (0..data.len()).step_by(512).map(|o| data.slice(o..o + 512)).collect();
    assert_eq!(put_frames(&c, frames.into_iter()).await.unwrap().size, 4 << 20);
    healthy(&c, 4).await;
}

#[tokio::test]
async fn an_upload_below_the_minimum_rate_is_ended() {
    let d =
        Daemon::start("upload_min_rate = \"1MiB\"\nupload_rate_grace = \"1s\"\nupload_idle_timeout = \"60s\"").await;
    let c = d.client().await;
    let before = c.stats().await.unwrap();
    // 1 KiB every 100 ms: never silent for the idle timeout, far below 1 MiB/s.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header_put("ns")).await.unwrap();
    let feeder = tokio::spawn(async move {
        for i in 0..600u64 {
            if tx.send(data_put(random_bytes(i, 1024))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let e = c
        .blobs
        .clone()
        .put(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("upload_min_rate"), "{e:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    feeder.abort();
    assert_eq!(counts(&c.stats().await.unwrap()), counts(&before));
    // A fast upload is not affected.
    put(&c, "ns", random_bytes(5, 8 << 20)).await;
}

#[tokio::test]
async fn find_missing_takes_a_bounded_list() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let h = |i: u32| blake3::hash(&i.to_le_bytes()).to_hex().to_string();
    let e = c.find_missing("ns", (0..10_001).map(h).collect()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("at most 10000 hashes"), "{e:?}");
    assert_eq!(
        c.find_missing("ns", (0..10_000).map(h).collect()).await.unwrap().len(),
        10_000
    );
}

#[tokio::test]
async fn listings_bound_page_sizes_tokens_and_filters() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let long = "a".repeat(10_000);
    let lp = |f: fn(&mut pb::ListPackagesRequest, &str)| {
        let mut r = pb::ListPackagesRequest {
            namespace: "ns".into(),
            ..Default::default()
        };
        f(&mut r, &long);
        let mut cat = c.catalog.clone();
        async move { cat.list_packages(r).await.unwrap_err() }
    };
    let e = lp(|r, _| r.page_size = 1001).await;
    assert!(
        e.message().contains("page_size 1001 is over the limit of 1000"),
        "{e:?}"
    );
    let e = lp(|r, l| r.page_token = l.to_string()).await;
    assert!(e.message().contains("page_token"), "{e:?}");
    let e = lp(|r, l| r.name_contains = l.to_string()).await;
    assert!(
        e.message().contains("name_contains is 10000 bytes, the limit is 255"),
        "{e:?}"
    );
    let e = lp(|r, l| r.project = l.to_string()).await;
    assert!(e.message().contains("project is 10000 bytes"), "{e:?}");
    let le = |f: fn(&mut pb::ListEventsRequest, &str)| {
        let mut r = pb::ListEventsRequest::default();
        f(&mut r, &long);
        let mut audit = c.audit.clone();
        async move { audit.list_events(r).await.unwrap_err() }
    };
    for (e, what) in [
        (le(|r, l| r.actor = l.to_string()).await, "actor"),
        (le(|r, l| r.action = l.to_string()).await, "action"),
        (le(|r, l| r.name = l.to_string()).await, "name"),
        (le(|r, l| r.project = l.to_string()).await, "project"),
        (le(|r, _| r.page_size = 5000).await, "page_size"),
    ] {
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().contains(what), "{what}: {e:?}");
    }
    let e = c
        .report
        .clone()
        .capacity(pb::CapacityRequest {
            by: long.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("by is 10000 bytes"), "{e:?}");
    // Within the limits, all fine.
    c.audit
        .clone()
        .list_events(pb::ListEventsRequest {
            actor: "x".repeat(255),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_upload_header_is_bounded() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let mut h = header("ns");
    h.media_type = "x".repeat(10_000);
    let e = c.put_bytes(h, random_bytes(6, 100)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("media_type is 10000 bytes"), "{e:?}");
    let mut h = header("ns");
    h.digests = vec![pb::Digest::Sha1 as i32; 100_000];
    let e = c.put_bytes(h, random_bytes(6, 100)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("100000 extra digests"), "{e:?}");
    // The same header inside a PublishFile.
    let mut up = header("");
    up.media_type = "x".repeat(10_000);
    let msg = pb::PublishFileRequest {
        msg: Some(pb::publish_file_request::Msg::Header(pb::PublishFileHeader {
            version: Some(version_ref("ns", "p", T::Generic, "tool", "1")),
            file_name: "f".into(),
            upload: Some(up),
            ..Default::default()
        })),
    };
    let e = c
        .catalog
        .clone()
        .publish_file(futures::stream::iter([msg]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("media_type"), "{e:?}");
    let mut h = header("ns");
    h.media_type = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    h.digests = vec![
        pb::Digest::Sha1 as i32,
        pb::Digest::Sha512 as i32,
        pb::Digest::Md5 as i32,
    ];
    c.put_bytes(h, random_bytes(6, 100)).await.unwrap();
}

#[tokio::test]
async fn retention_policies_are_bounded() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let policy = |name: &str| pb::RetentionPolicy {
        name: name.into(),
        namespace: "ns".into(),
        versions: Some(pb::RetentionRules {
            keep_latest: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut r = c.retention.clone();
    let mut p = policy("many-protected");
    p.protected = (0..65).map(|i| format!("^v{i}$")).collect();
    let e = r.set_policy(p.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("65 protected patterns, the limit is 64"), "{e:?}");
    p.protected.truncate(64);
    r.set_policy(p).await.unwrap();
    let mut p = policy("many-types");
    p.package_types = vec!["npm".into(); 14];
    let e = r.set_policy(p).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("lists 14 package types"), "{e:?}");
    // A namespace holds at most 100 policies; replacing one is still fine.
    for i in 1..100 {
        r.set_policy(policy(&format!("p{i}"))).await.unwrap();
    }
    let e = r.set_policy(policy("one-too-many")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("the limit is 100"), "{e:?}");
    r.set_policy(policy("p7")).await.unwrap();
    let mut other = policy("elsewhere");
    other.namespace = "other".into();
    r.set_policy(other).await.unwrap();
    let e = r
        .get_policy(pb::GetPolicyRequest {
            name: "n".repeat(10_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

#[tokio::test]
async fn request_sizes_and_headers_are_bounded() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    // The services without data take requests of at most 1 MiB.
    let e = c
        .audit
        .clone()
        .list_events(pb::ListEventsRequest {
            actor: "a".repeat(2 << 20),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("over the size limit"), "{e:?}");
    let e = c
        .retention
        .clone()
        .set_policy(pb::RetentionPolicy {
            name: "x".into(),
            namespace: "ns".into(),
            protected: vec!["y".repeat(1 << 20)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // The blob service: 16 MiB, so a huge FindMissing never reaches the handler.
    let e = c
        .blobs
        .clone()
        .max_encoding_message_size(64 << 20)
        .find_missing(pb::FindMissingRequest {
            namespace: "ns".into(),
            blake3: vec!["0".repeat(64); 300_000],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // A header block over 16 KiB (a huge token) is refused by HTTP/2 itself.
    let huge = format!("stw_{}", "a".repeat(64 << 10));
    let big = Client::connect(&d.addr, Some(&huge)).await.unwrap();
    assert!(big.stats().await.is_err());
    healthy(&c, 7).await;
}

/// Field 1 is a valid `PutRequest` header; field 2, a varint here, is
/// length-delimited in every message it is sent as (`PutRequest.data`,
/// `StatRequest.blake3`, `ListEventsRequest.project`): not a valid
/// encoding of what the method takes.
#[derive(Clone, PartialEq, prost::Message)]
struct Malformed {
    #[prost(message, optional, tag = "1")]
    header: Option<pb::PutHeader>,
    #[prost(uint64, optional, tag = "2")]
    not_bytes: Option<u64>,
}

async fn raw_call<Resp: prost::Message + Default + Send + 'static>(
    d: &Daemon,
    path: &'static str,
    msgs: Vec<Malformed>,
) -> tonic::Status {
    let ch = tonic::transport::Endpoint::from_shared(d.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    let mut req = tonic::Request::new(futures::stream::iter(msgs));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", d.admin_token()).parse().unwrap());
    let codec = tonic_prost::ProstCodec::<Malformed, Resp>::default();
    let uri = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    match g.client_streaming(req, uri, codec).await {
        Ok(_) => panic!("{path} accepted a malformed message"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_malformed_message_is_invalid_argument() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let before = c.stats().await.unwrap();
    // Unary requests.
    let bad = Malformed {
        not_bytes: Some(7),
        ..Default::default()
    };
    let e = raw_call::<pb::StatResponse>(&d, "/stowage.v1.BlobService/Stat", vec![bad.clone()]).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("not a valid protobuf message"), "{e:?}");
    let e = raw_call::<pb::ListEventsResponse>(&d, "/stowage.v1.AuditService/ListEvents", vec![bad.clone()]).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // An upload whose data message is malformed, after a good header.
    let good_header = Malformed {
        header: Some(header("ns")),
        ..Default::default()
    };
    let e = raw_call::<pb::PutResponse>(&d, "/stowage.v1.BlobService/Put", vec![good_header, bad.clone()]).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("not a valid protobuf message"), "{e:?}");
    // And one whose header is.
    let e = raw_call::<pb::PutResponse>(&d, "/stowage.v1.BlobService/Put", vec![bad]).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(counts(&c.stats().await.unwrap()), counts(&before));
    healthy(&c, 8).await;
}
