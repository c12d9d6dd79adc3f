//! The conformance suite for the AWS source, against moto: the keys are fields of one JSON
//! secret; denied is a wrong secret key, unavailable a closed port, slow a listener that never
//! answers.
#![cfg(feature = "aws")]

mod aws_admin;
mod conformance;
mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_admin::{source, unique, Admin};
use conformance::{conformance_tests, Fixture};
use credchain_core::CredentialSource;
use tokio::net::TcpListener;

/// How the next source reaches the store.
#[derive(Clone)]
enum Mode {
    Normal,
    WrongKey,
    Endpoint(String),
}

struct AwsFixture {
    admin: Admin,
    secret_id: String,
    mode: Mutex<Mode>,
}

impl AwsFixture {
    async fn start() -> Self {
        let admin = Admin::new();
        let secret_id = unique("conformance");
        admin.create_text(&secret_id, "{}").await;
        AwsFixture {
            admin,
            secret_id,
            mode: Mutex::new(Mode::Normal),
        }
    }

    /// Rewrites the JSON object, putting a new AWSCURRENT version.
    async fn edit(&self, change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
        let text = self
            .admin
            .current(&self.secret_id)
            .await
            .unwrap_or_else(|| "{}".into());
        let mut object = match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => serde_json::Map::new(),
        };
        change(&mut object);
        self.admin
            .put(
                &self.secret_id,
                &serde_json::Value::Object(object).to_string(),
                None,
            )
            .await;
    }

    fn set_mode(&self, mode: Mode) -> bool {
        *self.mode.lock().unwrap() = mode;
        true
    }
}

#[async_trait]
impl Fixture for AwsFixture {
    fn source(&self) -> Arc<dyn CredentialSource> {
        let mut env = self.admin.env();
        let mut options = format!("secret_id = '{}'\ntimeout = '1s'\n", self.secret_id);
        match self.mode.lock().unwrap().clone() {
            Mode::Normal => {}
            Mode::WrongKey => {
                env.retain(|(name, _)| name != "AWS_SECRET_ACCESS_KEY");
                env.push((
                    "AWS_SECRET_ACCESS_KEY".into(),
                    format!("{}WRONG", self.admin.secret_key),
                ));
            }
            Mode::Endpoint(url) => options.push_str(&format!("endpoint_url = '{url}'\n")),
        }
        Arc::new(source(&options, &env))
    }

    async fn put(&self, key: &str, value: &str) {
        self.edit(|object| {
            object.insert(key.to_string(), value.into());
        })
        .await;
    }

    async fn remove(&self, key: &str) {
        self.edit(|object| {
            object.remove(key);
        })
        .await;
    }

    async fn deny(&self) -> bool {
        self.set_mode(Mode::WrongKey)
    }

    async fn make_unavailable(&self) -> bool {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        self.set_mode(Mode::Endpoint(format!("http://{closed}")))
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
        self.set_mode(Mode::Endpoint(format!("http://{address}")))
    }
}

conformance_tests!(aws_suite, AwsFixture::start().await;
    found, absent, empty_is_absent, invalid_control_char_is_hidden,
    rotated_between_two_reads, denied, unavailable, slow);
