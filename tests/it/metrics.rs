//! Prometheus metrics scraped from the running daemon.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Daemon, b3, free_port, put, random_bytes};

/// `GET /metrics` over plain HTTP/1.1: (status line, content type, body).
pub(crate) async fn scrape(port: u16) -> (String, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// The value of the sample whose name and labels are exactly `series`.
pub(crate) fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_count_requests_and_report_the_store() {
    let port = free_port();
    let d = Daemon::start(&format!("metrics_listen = \"127.0.0.1:{port}\"")).await;
    let c = d.client().await;
    let a = random_bytes(1, 300_000);
    let h = put(&c, "ns", a.clone()).await;
    put(&c, "ns", a.clone()).await;
    put(&c, "other", a.clone()).await;
    for _ in 0..2 {
        assert_eq!(c.get_bytes("ns", &h, 0, None).await.unwrap(), a);
    }
    let missing = b3(&random_bytes(2, 10));
    assert!(c.stat("ns", &missing).await.is_err());
    assert!(d.client_with(None).await.stats().await.is_err());

    // Made-up routes do not make labels.
    let ch = tonic::transport::Endpoint::from_shared(d.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..3 {
        let mut grpc = tonic::client::Grpc::new(ch.clone());
        grpc.ready().await.unwrap();
        // A made-up service, and a made-up method of a real one (refused
        // for want of a token before any route lookup).
        let path = match i {
            0 => "/stowage.v1.Made0/Up".to_string(),
            n => format!("/stowage.v1.BlobService/Made{n}"),
        };
        let path = path.parse().unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let e = grpc.unary(tonic::Request::new(()), path, codec).await.unwrap_err();
        assert!(
            matches!(e.code(), tonic::Code::Unimplemented | tonic::Code::Unauthenticated),
            "{e:?}"
        );
    }
    let (status, ctype, body) = scrape(port).await;
    assert!(status.contains("200"), "{status}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let rpc = |m: &str, code: &str| {
        sample(
            &body,
            &format!("stowage_rpc_requests_total{{method=\"stowage.v1.{m}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(rpc("BlobService/Put", "Ok"), Some(3.0), "{body}");
    assert_eq!(rpc("BlobService/Get", "Ok"), Some(2.0), "{body}");
    assert_eq!(rpc("BlobService/Stat", "NotFound"), Some(1.0), "{body}");
    assert_eq!(rpc("AdminService/Stats", "Unauthenticated"), Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body,
            "stowage_rpc_duration_seconds_count{method=\"stowage.v1.BlobService/Put\"}"
        ),
        Some(3.0),
        "{body}"
    );
    let s = c.stats().await.unwrap();
    let bytes = |k: &str| sample(&body, &format!("stowage_store_bytes{{kind=\"{k}\"}}")).unwrap() as u64;
    assert_eq!(bytes("logical"), s.logical_bytes);
    assert_eq!(bytes("unique"), s.unique_bytes);
    assert_eq!(bytes("physical"), s.physical_bytes);
    assert_eq!(s.logical_bytes, 2 * 300_000);
    assert_eq!(sample(&body, "stowage_dedup_ratio"), Some(2.0), "{body}");
    assert_eq!(sample(&body, "stowage_store_objects{kind=\"blobs\"}"), Some(1.0));
    assert_eq!(sample(&body, "stowage_uploads_in_progress"), Some(0.0));
    let unknown = |code: &str| {
        sample(
            &body,
            &format!("stowage_rpc_requests_total{{method=\"unknown\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(
        unknown("Unimplemented").unwrap_or(0.0) + unknown("Unauthenticated").unwrap_or(0.0),
        3.0,
        "{body}"
    );
    assert!(!body.contains("Made"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    // GC and sweep progress.
    assert_eq!(sample(&body, "stowage_gc_runs_total"), Some(0.0), "{body}");
    let gc = stowage::api::pb::GcRequest { dry_run: false };
    c.retention.clone().collect_garbage(gc).await.unwrap();
    let (_, _, body) = scrape(port).await;
    assert_eq!(sample(&body, "stowage_gc_runs_total"), Some(1.0), "{body}");
    assert_eq!(
        sample(&body, "stowage_gc_bytes_total{kind=\"collected\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(sample(&body, "stowage_store_bytes{kind=\"dead\"}"), Some(0.0), "{body}");
    assert_eq!(
        sample(&body, "stowage_sweep_progress{kind=\"total\"}"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(sample(&body, "stowage_sweep_runs_total"), Some(0.0), "{body}");
}

#[test]
fn a_metrics_address_in_use_stops_the_daemon() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = crate::harness::refused_start(&format!("metrics_listen = \"127.0.0.1:{port}\""));
    assert!(err.contains("for metrics"), "{err}");
}
