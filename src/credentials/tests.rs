//! Every rotation rule, on paused time, with a fake source that counts its reads.

use std::sync::Arc;
use std::time::Duration;

use credchain_core::{ErrorKind, Lifetime, SourceSettings};
use tokio::time::{sleep, Instant};

use super::fake::{Fake, Step};
use super::*;
use crate::chain::Link;
use crate::exit::Exit;

const KEY: &str = "PREFECT_API_KEY";

fn settings(refresh: u64, max_stale: u64) -> SourceSettings {
    let mut s = SourceSettings::new("fake");
    s.refresh_interval = Duration::from_secs(refresh);
    s.max_stale = Duration::from_secs(max_stale);
    s
}

fn creds(fake: &Arc<Fake>, settings: SourceSettings, bound: u64) -> Credentials {
    let link = Link {
        source: fake.clone(),
        settings,
    };
    Credentials::with_rejection_backoff(Chain::new(vec![link]), Duration::from_secs(bound))
}

async fn value(creds: &Credentials) -> String {
    creds
        .get(KEY)
        .await
        .unwrap()
        .unwrap()
        .value()
        .expose()
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn static_value_is_read_once() {
    let fake = Fake::new(Lifetime::Static, &[Step::Value("pnu_FAKE_A")]);
    let c = creds(&fake, settings(60, 60), 30);
    for _ in 0..3 {
        assert_eq!(value(&c).await, "pnu_FAKE_A");
    }
    sleep(Duration::from_secs(3600)).await;
    assert_eq!(value(&c).await, "pnu_FAKE_A");
    assert_eq!(fake.reads(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_gets_share_one_read() {
    let fake = Fake::new(Lifetime::Static, &[Step::Value("pnu_FAKE_A")]);
    let c = creds(&fake, settings(60, 60), 30);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { value(&c).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "pnu_FAKE_A");
    }
    assert_eq!(fake.reads(), 1);
}

#[tokio::test(start_paused = true)]
async fn absent_key_is_none_and_not_cached() {
    let fake = Fake::new(Lifetime::Static, &[Step::Absent]);
    let c = creds(&fake, settings(60, 60), 30);
    assert!(c.get(KEY).await.unwrap().is_none());
    assert!(c.get(KEY).await.unwrap().is_none());
    assert_eq!(fake.reads(), 2);
}

#[tokio::test(start_paused = true)]
async fn file_value_is_reread_only_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY);
    std::fs::write(&path, "pnu_FAKE_A").unwrap();
    let fake = Fake::file(&path);
    let c = creds(&fake, settings(60, 60), 30);
    let first = c.get(KEY).await.unwrap().unwrap();
    assert_eq!(value(&c).await, "pnu_FAKE_A");
    assert_eq!(fake.reads(), 1);

    // Replace the file the way rotation jobs and Kubernetes do: write elsewhere, rename.
    let tmp = dir.path().join("new");
    std::fs::write(&tmp, "pnu_FAKE_B").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let second = c.get(KEY).await.unwrap().unwrap();
    assert_eq!(second.value().expose(), "pnu_FAKE_B");
    assert_ne!(first.generation(), second.generation());
    assert_eq!(value(&c).await, "pnu_FAKE_B");
    assert_eq!(fake.reads(), 2);
}

#[tokio::test(start_paused = true)]
async fn lease_is_refreshed_in_the_background_at_two_thirds() {
    let lease = Lifetime::Remote {
        expires_in: Some(Duration::from_secs(90)),
    };
    let fake = Fake::new(
        lease,
        &[Step::Value("pnu_FAKE_A"), Step::Value("pnu_FAKE_B")],
    );
    let c = creds(&fake, settings(3600, 600), 30);
    assert_eq!(value(&c).await, "pnu_FAKE_A");
    sleep(Duration::from_secs(59)).await;
    assert_eq!(fake.reads(), 1);
    sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.reads(), 2, "refreshed without a get");
    assert_eq!(value(&c).await, "pnu_FAKE_B");
    assert_eq!(fake.reads(), 2, "get did not read again");
}

#[tokio::test(start_paused = true)]
async fn remote_value_is_reread_every_refresh_interval() {
    let remote = Lifetime::Remote { expires_in: None };
    let fake = Fake::new(
        remote,
        &[Step::Value("pnu_FAKE_A"), Step::Value("pnu_FAKE_B")],
    );
    let c = creds(&fake, settings(300, 900), 30);
    assert_eq!(value(&c).await, "pnu_FAKE_A");
    sleep(Duration::from_secs(299)).await;
    assert_eq!(value(&c).await, "pnu_FAKE_A");
    sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.reads(), 2);
    assert_eq!(value(&c).await, "pnu_FAKE_B");
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_serves_the_last_good_value_until_max_stale() {
    let remote = Lifetime::Remote { expires_in: None };
    let steps = [
        Step::Value("pnu_FAKE_A"),
        Step::Fail(ErrorKind::Unavailable),
    ];
    let fake = Fake::new(remote, &steps);
    let c = creds(&fake, settings(60, 120), 30);
    assert_eq!(value(&c).await, "pnu_FAKE_A");

    // The refresh at 60 s fails; the value stays in service until 60 + 120 s.
    sleep(Duration::from_secs(170)).await;
    assert!(fake.reads() > 2, "failed refreshes are retried");
    assert_eq!(value(&c).await, "pnu_FAKE_A");

    sleep(Duration::from_secs(20)).await;
    let error = c.get(KEY).await.unwrap_err();
    assert!(matches!(error, CredError::RefreshKey { .. }), "{error:?}");
    assert_eq!(error.exit(), Exit::Unreachable);
    let text = crate::exit::error_chain(&error);
    assert!(text.contains("fake") && text.contains(KEY), "{text}");
    assert!(!text.contains("pnu_FAKE"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn refresh_recovers_after_a_failure() {
    let remote = Lifetime::Remote { expires_in: None };
    let steps = [
        Step::Value("pnu_FAKE_A"),
        Step::Fail(ErrorKind::Unavailable),
        Step::Value("pnu_FAKE_B"),
    ];
    let fake = Fake::new(remote, &steps);
    let c = creds(&fake, settings(60, 120), 30);
    assert_eq!(value(&c).await, "pnu_FAKE_A");
    sleep(Duration::from_secs(65)).await;
    assert_eq!(value(&c).await, "pnu_FAKE_B");
}

#[tokio::test(start_paused = true)]
async fn rejection_is_single_flight() {
    let steps = [Step::Value("pnu_FAKE_A"), Step::Value("pnu_FAKE_B")];
    let fake = Fake::new(Lifetime::Remote { expires_in: None }, &steps);
    let c = creds(&fake, settings(3600, 900), 30);
    let old = c.get(KEY).await.unwrap().unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (c, old) = (c.clone(), old.clone());
            tokio::spawn(async move { c.rejected(KEY, &old).await.unwrap() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().value().expose(), "pnu_FAKE_B");
    }
    assert_eq!(fake.reads(), 2, "one read for all 50 rejections");

    // A caller late with the old value gets the new one without another read.
    let late = c.rejected(KEY, &old).await.unwrap();
    assert_eq!(late.value().expose(), "pnu_FAKE_B");
    assert_eq!(fake.reads(), 2);
}

#[tokio::test(start_paused = true)]
async fn lagging_store_is_reread_with_backoff() {
    let a = Step::Value("pnu_FAKE_A");
    let fake = Fake::new(
        Lifetime::Remote { expires_in: None },
        &[a, a, a, Step::Value("pnu_FAKE_B")],
    );
    let c = creds(&fake, settings(3600, 900), 30);
    let old = c.get(KEY).await.unwrap().unwrap();
    let started = Instant::now();
    let new = c.rejected(KEY, &old).await.unwrap();
    assert_eq!(new.value().expose(), "pnu_FAKE_B");
    assert_eq!(fake.reads(), 4, "A twice more, then B");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3),
        "backed off 1 s then 2 s: {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn store_that_never_changes_fails_after_the_bound() {
    let fake = Fake::new(
        Lifetime::Remote { expires_in: None },
        &[Step::Value("pnu_FAKE_A")],
    );
    let c = creds(&fake, settings(3600, 900), 10);
    let old = c.get(KEY).await.unwrap().unwrap();
    let started = Instant::now();
    let error = c.rejected(KEY, &old).await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    // 1 + 2 + 4 + 3 s of waiting: five reads after the first.
    assert_eq!(fake.reads(), 6);
    assert!(
        matches!(error, CredError::ReplaceRejected { .. }),
        "{error:?}"
    );
    assert_eq!(error.exit(), Exit::Unauthorized);
    assert_eq!(error.source_name(), Some("fake"));
    let text = error.to_string();
    assert!(text.contains(KEY) && text.contains("`fake`"), "{text}");
    assert!(!text.contains("pnu_FAKE"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn rejected_value_from_the_environment_fails_at_once() {
    let fake = Fake::new(Lifetime::Static, &[Step::Value("pnu_FAKE_A")]);
    let c = creds(&fake, settings(3600, 900), 30);
    let old = c.get(KEY).await.unwrap().unwrap();
    let started = Instant::now();
    let error = c.rejected(KEY, &old).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.reads(), 2);
    assert_eq!(error.exit(), Exit::Unauthorized);
}

#[tokio::test(start_paused = true)]
async fn debug_output_holds_no_value() {
    let fake = Fake::new(Lifetime::Static, &[Step::Value("pnu_FAKE_A")]);
    let c = creds(&fake, settings(60, 60), 30);
    let current = c.get(KEY).await.unwrap().unwrap();
    let text = format!("{c:?} {current:?}");
    assert!(!text.contains("pnu_FAKE"), "{text}");
}
