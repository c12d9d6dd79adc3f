//! End to end with the Prefect key in AWS Secrets Manager (moto, SigV4 verified) behind a
//! bearer-key gateway that rotates to a new key, as a Secrets Manager rotation function does:
//! the new key is staged as `AWSPENDING`, set at the service, then made `AWSCURRENT`.
//! `credchain check` follows each step, and one `credchain serve` completes runs created before,
//! during and after the rotation without a restart. No key and no AWS secret key is printed.
#![cfg(feature = "aws")]

mod aws_admin;
mod e2e;
mod prefect_api;
mod support;

use aws_admin::{unique, Admin};
use e2e::{assert_exit, credchain, fake_key, runs_complete, runtime, work_dir, Serve};
use support::{assert_no_secret, Gateway, PrefectServer, Role};

const KEY: &str = "PREFECT_API_KEY";
/// Runs created at each step of the rotation.
const RUNS_PER_STEP: usize = 2;

/// A JSON secret on moto (the API URL and the key, as a user would store them), the old and
/// the new key, and the admin client that creates and stages its versions.
struct Rotation {
    rt: tokio::runtime::Runtime,
    admin: Admin,
    id: String,
    old: String,
    new: String,
}

impl Rotation {
    fn new(label: &str) -> Rotation {
        let rt = runtime();
        let admin = rt.block_on(async { Admin::new() });
        Rotation {
            rt,
            admin,
            id: unique(&format!("e2e-{label}")),
            old: fake_key(&format!("AWS_{label}_OLD")),
            new: fake_key(&format!("AWS_{label}_NEW")),
        }
    }

    /// What no output may contain: both keys and the AWS secret access key.
    fn secrets(&self) -> [&str; 3] {
        [&self.old, &self.new, &self.admin.secret_key]
    }

    fn json(url: &str, key: &str) -> String {
        serde_json::json!({ "PREFECT_API_URL": url, KEY: key }).to_string()
    }

    /// Creates the secret with the old key as `AWSCURRENT`; returns the version id.
    fn create(&self, url: &str) -> String {
        let text = Self::json(url, &self.old);
        self.rt.block_on(self.admin.create_text(&self.id, &text))
    }

    /// The rotation's createSecret step: the new key as a version staged `AWSPENDING`.
    fn stage_new(&self, url: &str) -> String {
        let text = Self::json(url, &self.new);
        let put = self.admin.put(&self.id, &text, Some("AWSPENDING"));
        self.rt.block_on(put)
    }

    /// The rotation's finishSecret step: `AWSCURRENT` moves from `old` to `new`.
    fn finish(&self, new: &str, old: &str) {
        self.rt.block_on(self.admin.promote(&self.id, new, old));
    }

    /// The `aws` source after `env`, refreshed only hourly, so that within a test only a 401
    /// can make credchain read the secret again.
    fn source(&self) -> String {
        format!(
            "[[sources]]\ntype = \"aws\"\nsecret_id = \"{}\"\nendpoint_url = \"{}\"\n\
             refresh_interval = \"1h\"\n",
            self.id, self.admin.endpoint
        )
    }

    /// The child's environment: moto's IAM key and the region, nothing else.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.admin.key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.admin.secret_key.clone(),
            ),
            ("AWS_REGION".into(), self.admin.region.clone()),
        ]
    }
}

#[test]
fn check_follows_an_aws_rotation_from_awspending_to_awscurrent() {
    let aws = Rotation::new("CHECK");
    let secrets = aws.secrets();
    // `check` creates no deployment, so the shared Prefect server will do behind a private gateway.
    let mut gateway = Gateway::start(&support::prefect_url(), &[(&aws.old, Role::Rw)]);
    let v1 = aws.create(&gateway.url());
    let dir = work_dir(&aws.source());
    let (env, id) = (aws.env(), &aws.id);

    let out = credchain(dir.path(), &["-vv", "check"], &env);
    assert_exit(&out, 0, &secrets);
    let from_v1 = format!("from aws ({id}#{KEY}) version {v1}");
    assert!(out.stdout.contains(&from_v1), "{}", out.stdout);

    // The new key is staged; resolution still reads AWSCURRENT.
    let v2 = aws.stage_new(&gateway.url());
    let out = credchain(dir.path(), &["resolve", "--json", KEY], &env);
    assert_exit(&out, 0, &secrets);
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).expect("resolve --json");
    assert_eq!(rows[0]["version"], v1.as_str(), "{}", out.stdout);

    // setSecret: the service accepts only the new key. The 401 makes credchain offer AWSPENDING.
    gateway.set_keys(&[(&aws.new, Role::Rw)]);
    let out = credchain(dir.path(), &["-vv", "check"], &env);
    assert_exit(&out, 0, &secrets);
    assert!(
        out.stdout.contains(&from_v1),
        "resolved first: {}",
        out.stdout
    );
    let pending = format!("{v2} (AWSPENDING)");
    assert!(
        out.stderr.contains(&pending) && out.stderr.contains("offering AWSPENDING"),
        "the log names the pending version:\n{}",
        e2e::tail(&out.stderr)
    );

    // AWSCURRENT moves to the new version, which is read without any 401.
    aws.finish(&v2, &v1);
    let out = credchain(dir.path(), &["-vv", "check", "--write"], &env);
    assert_exit(&out, 0, &secrets);
    let from_v2 = format!("from aws ({id}#{KEY}) version {v2}");
    assert!(out.stdout.contains(&from_v2), "{}", out.stdout);
    assert!(
        !out.stderr.contains("AWSPENDING"),
        "no rejection once AWSCURRENT holds the accepted key:\n{}",
        e2e::tail(&out.stderr)
    );
}

#[test]
fn serve_completes_runs_before_during_and_after_an_aws_rotation_without_restart() {
    let aws = Rotation::new("SERVE");
    let secrets = aws.secrets();
    // A private server: the deployment name main-etl/etl-job is global to a server.
    let server = PrefectServer::start(&[]);
    let api = server.url();
    let mut gateway = Gateway::start(&api, &[(&aws.old, Role::Rw)]);
    let v1 = aws.create(&gateway.url());
    let dir = work_dir(&aws.source());
    let mut serve = Serve::start(dir.path(), &aws.env());
    let deployment = e2e::deployment(&api, &serve, &secrets);

    runs_complete(&api, &deployment, RUNS_PER_STEP, &serve, &secrets);

    // The rotation window: AWSCURRENT still holds the old key, the gateway only the new one.
    let v2 = aws.stage_new(&gateway.url());
    gateway.set_keys(&[(&aws.new, Role::Rw)]);
    runs_complete(&api, &deployment, RUNS_PER_STEP, &serve, &secrets);
    let output = serve.output();
    assert_no_secret(&output, &secrets);
    assert!(
        output.contains(&format!("{v2} (AWSPENDING)")),
        "serve took the pending version:\n{}",
        e2e::tail(&output)
    );

    aws.finish(&v2, &v1);
    runs_complete(&api, &deployment, RUNS_PER_STEP, &serve, &secrets);

    serve.assert_running(&secrets);
    serve.stop_cleanly(&secrets);
    let output = serve.output();
    assert_no_secret(&output, &secrets);
    assert_eq!(
        output.matches("new value in use").count(),
        1,
        "one re-resolution for the whole rotation:\n{}",
        e2e::tail(&output)
    );
}
