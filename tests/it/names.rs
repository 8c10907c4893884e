//! Names the catalog refuses, through the daemon: each with its reason, and
//! nothing stored.

use stowage::api::client::{Code, version_ref};
use stowage::api::pb::{self, PackageType as T};

use crate::harness::{Daemon, put, random_bytes};

#[tokio::test]
async fn paths_in_generic_names_and_bidi_controls_in_file_names_are_refused() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let h = put(&c, "ns", random_bytes(70, 100)).await;
    let before = c.stats().await.unwrap();
    let name_cases = [
        (T::Generic, "/etc/passwd", "must not start with '/'"),
        (T::Generic, "a//b", "empty path segment"),
        (T::Generic, "a/", "must not end with '/'"),
        (T::Generic, "a/../b", "'.' or '..' path segment"),
        (T::Generic, "./a", "'.' or '..' path segment"),
        (T::Terraform, "/acme/net/aws", "must not start with '/'"),
        (T::Composer, "acme//log", "empty path segment"),
    ];
    for (ty, name, why) in name_cases {
        let v = version_ref("ns", "p", ty, name, "1.0");
        let e = c.publish_blob(v.clone(), "f.tgz", &h).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}: {e:?}");
        assert!(e.message().contains(why), "{name:?}: {why:?} not in {:?}", e.message());
        // Streamed: refused before the upload, like other bad names.
        let e = c.publish_bytes(v, "f.tgz", random_bytes(71, 1000)).await.unwrap_err();
        assert!(e.message().contains(why), "{name:?}: {e:?}");
    }
    let v = version_ref("ns", "p", T::Generic, "tools/linux", "1.0");
    let file_cases = [
        ("invoice\u{202E}gpj.exe", "bidirectional control U+202E"),
        ("a\u{202A}b", "bidirectional control U+202A"),
        ("a\u{2066}b\u{2069}", "bidirectional control U+2066"),
        ("a\u{200F}.tgz", "bidirectional control U+200F"),
        ("a\u{061C}.tgz", "bidirectional control U+061C"),
        ("a\u{200B}.tgz", "invisible character U+200B"),
        ("a\u{FEFF}.tgz", "invisible character U+FEFF"),
        ("a\u{0085}.tgz", "control character"),
    ];
    for (file, why) in file_cases {
        let e = c.publish_blob(v.clone(), file, &h).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{file:?}: {e:?}");
        assert!(e.message().contains(why), "{file:?}: {why:?} not in {:?}", e.message());
        let e = c
            .publish_bytes(v.clone(), file, random_bytes(72, 1000))
            .await
            .unwrap_err();
        assert!(e.message().contains(why), "{file:?}: {e:?}");
    }
    let after = c.stats().await.unwrap();
    assert_eq!((after.blobs, after.references), (before.blobs, before.references));
    let listed = c
        .catalog
        .clone()
        .list_packages(pb::ListPackagesRequest {
            namespace: "ns".into(),
            state: pb::State::All as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.packages.is_empty(), "{:?}", listed.packages);
    // Good names still work, other scripts in file names included.
    c.publish_blob(v.clone(), "tool-1.0.tgz", &h).await.unwrap();
    c.publish_blob(v, "инструмент-1.0.tgz", &h).await.unwrap();
}
