//! The conformance suite for the Vault source, against the OpenBao dev server: the keys are
//! fields of one KV v2 secret; denied is a token whose policy covers another path, unavailable a
//! closed port, slow a listener that never answers.
#![cfg(feature = "vault")]

mod conformance;
mod support;
mod vault_admin;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use conformance::{conformance_tests, Fixture};
use credchain_core::CredentialSource;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use vault_admin::{source, unique, Admin};

/// How the next source reaches the store.
#[derive(Clone)]
enum Mode {
    Normal,
    /// A token that may read a different path only.
    Token(String),
    /// Another address.
    Address(String),
}

struct VaultFixture {
    admin: Admin,
    /// The secret's path inside `secret/`.
    path: String,
    /// What the secret holds; KV v2 writes replace the whole object.
    fields: Mutex<Map<String, Value>>,
    mode: Mutex<Mode>,
}

impl VaultFixture {
    async fn start() -> Self {
        VaultFixture {
            admin: Admin::new(),
            path: format!("{}/prefect", unique("conformance")),
            fields: Mutex::new(Map::new()),
            mode: Mutex::new(Mode::Normal),
        }
    }

    async fn edit(&self, change: impl FnOnce(&mut Map<String, Value>)) {
        let fields = {
            let mut fields = self.fields.lock().unwrap();
            change(&mut fields);
            Value::Object(fields.clone())
        };
        self.admin.kv2_put("secret", &self.path, fields).await;
    }

    fn set_mode(&self, mode: Mode) -> bool {
        *self.mode.lock().unwrap() = mode;
        true
    }
}

#[async_trait]
impl Fixture for VaultFixture {
    fn source(&self) -> Arc<dyn CredentialSource> {
        let (mut address, mut token) = (self.admin.addr.clone(), self.admin.root.clone());
        match self.mode.lock().unwrap().clone() {
            Mode::Normal => {}
            Mode::Token(other) => token = other,
            Mode::Address(other) => address = other,
        }
        let options = format!(
            "address = '{address}'\npath = 'secret/{}'\ntimeout = '1s'",
            self.path
        );
        Arc::new(source(&options, &[("VAULT_TOKEN", &token)]))
    }

    async fn put(&self, key: &str, value: &str) {
        self.edit(|fields| {
            fields.insert(key.to_string(), json!(value));
        })
        .await;
    }

    async fn remove(&self, key: &str) {
        self.edit(|fields| {
            fields.remove(key);
        })
        .await;
    }

    async fn deny(&self) -> bool {
        let policy = unique("conformance-deny");
        let elsewhere = format!("secret/data/{}-elsewhere", self.path);
        self.admin.read_policy(&policy, &[&elsewhere]).await;
        let token = self.admin.token(&[&policy], "10m").await;
        self.set_mode(Mode::Token(token))
    }

    async fn make_unavailable(&self) -> bool {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        self.set_mode(Mode::Address(format!("http://{closed}")))
    }

    /// A listener that accepts connections and never answers, kept alive by a task that holds
    /// every accepted socket until the test's runtime ends.
    async fn make_slow(&self) -> bool {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        self.set_mode(Mode::Address(format!("http://{address}")))
    }
}

conformance_tests!(vault_suite, VaultFixture::start().await;
    found, absent, empty_is_absent, invalid_control_char_is_hidden,
    rotated_between_two_reads, denied, unavailable, slow);
