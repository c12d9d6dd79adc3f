//! End to end with the Prefect key in OpenBao (KV v2 under `secret/`) behind a bearer-key
//! gateway: `credchain check` authenticates with the key held only there, and a running
//! `credchain serve` keeps completing runs when a new key is written as version 2 and the
//! gateway switches to it (the 401 makes it read the secret again). No token or key is printed.
#![cfg(feature = "vault")]

mod e2e;
mod prefect_api;
mod support;
mod vault_admin;

use e2e::{assert_exit, credchain, fake_key, runs_complete, runtime, work_dir, Serve};
use serde_json::json;
use support::{assert_no_secret, Gateway, PrefectServer, Role};
use vault_admin::{unique, Admin};

const KEY: &str = "PREFECT_API_KEY";
/// Runs created before and after the rotation.
const RUNS_PER_STEP: usize = 2;

/// A KV v2 secret `secret/<unique>/prefect` and a token that may only read it.
struct Store {
    admin: Admin,
    rt: tokio::runtime::Runtime,
    /// The path as `vault kv get` spells it.
    path: String,
    /// A token with a read policy on the path (never the root token).
    token: String,
}

impl Store {
    fn new(prefix: &str) -> Store {
        let rt = runtime();
        let admin = Admin::new();
        let name = unique(prefix);
        let token = rt.block_on(async {
            admin
                .read_policy(&name, &[&format!("secret/data/{name}/*")])
                .await;
            admin.token(&[&name], "1h").await
        });
        Store {
            admin,
            rt,
            path: format!("secret/{name}/prefect"),
            token,
        }
    }

    /// Writes the URL and the key as a new version; returns the version number.
    fn write(&self, url: &str, key: &str) -> u64 {
        let path = self.path.strip_prefix("secret/").expect("under secret/");
        let fields = json!({ "PREFECT_API_URL": url, KEY: key });
        self.rt.block_on(self.admin.kv2_put("secret", path, fields))
    }

    /// The `vault` source after `env`, refreshed only hourly, so that within a test only a 401
    /// can make credchain read the secret again.
    fn source(&self) -> String {
        format!(
            "[[sources]]\ntype = \"vault\"\naddress = \"{}\"\npath = \"{}\"\n\
             refresh_interval = \"1h\"\n",
            self.admin.addr, self.path
        )
    }

    /// The child's environment: the token, nothing else.
    fn env(&self) -> Vec<(String, String)> {
        vec![("VAULT_TOKEN".into(), self.token.clone())]
    }
}

#[test]
fn check_authenticates_with_the_key_held_only_in_openbao() {
    let store = Store::new("e2e-check");
    let k1 = fake_key("VAULT_CHECK_K1");
    let secrets = [k1.as_str(), store.token.as_str(), store.admin.root.as_str()];
    // `check` creates no deployment, so the shared Prefect server will do behind a private gateway.
    let gateway = Gateway::start(&support::prefect_url(), &[(&k1, Role::Rw)]);
    assert_eq!(store.write(&gateway.url(), &k1), 1);
    let dir = work_dir(&store.source());

    let out = credchain(dir.path(), &["-vv", "check", "--write"], &store.env());
    assert_exit(&out, 0, &secrets);
    let from = format!("from vault ({}#{KEY}) version 1", store.path);
    assert!(out.stdout.contains(&from), "{}", out.stdout);
    assert!(
        out.stdout.contains(&gateway.url()),
        "the URL came from OpenBao too: {}",
        out.stdout
    );
}

#[test]
fn serve_keeps_completing_runs_when_the_openbao_key_rotates_to_version_2() {
    let store = Store::new("e2e-serve");
    let (k1, k2) = (fake_key("VAULT_SERVE_K1"), fake_key("VAULT_SERVE_K2"));
    let secrets = [
        k1.as_str(),
        k2.as_str(),
        store.token.as_str(),
        store.admin.root.as_str(),
    ];
    // A private server: the deployment name main-etl/etl-job is global to a server.
    let server = PrefectServer::start(&[]);
    let api = server.url();
    let mut gateway = Gateway::start(&api, &[(&k1, Role::Rw)]);
    assert_eq!(store.write(&gateway.url(), &k1), 1);
    let dir = work_dir(&store.source());
    let mut serve = Serve::start(dir.path(), &store.env());
    let deployment = e2e::deployment(&api, &serve, &secrets);

    runs_complete(&api, &deployment, RUNS_PER_STEP, &serve, &secrets);

    // Rotate: the store first, then the gateway drops the old key.
    assert_eq!(store.write(&gateway.url(), &k2), 2);
    gateway.set_keys(&[(&k2, Role::Rw)]);
    runs_complete(&api, &deployment, RUNS_PER_STEP, &serve, &secrets);

    serve.assert_running(&secrets);
    serve.stop_cleanly(&secrets);
    let output = serve.output();
    assert_no_secret(&output, &secrets);
    let replaced: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("new value in use"))
        .collect();
    assert!(
        replaced.len() == 1 && replaced[0].contains(&format!("{}#{KEY}) version 2", store.path)),
        "one re-resolution, which read version 2:\n{}",
        e2e::tail(&output)
    );
}
