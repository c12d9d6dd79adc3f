//! The token every read shares: logged in once, renewed in the background at about two thirds
//! of its TTL, and replaced by one fresh login when it expired or Vault rejected it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use credchain_core::{Secret, SourceError};
use tokio::sync::Mutex;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::AuthConfig;
use crate::http::Http;
use crate::login::{self, IssuedToken, TokenFacts};

/// A token is renewed after this many thirds of its TTL have passed.
const RENEW_AFTER_THIRDS: u32 = 2;
/// The shortest wait between two renewals, so that a tiny TTL cannot spin.
const MIN_RENEW_DELAY: Duration = Duration::from_millis(200);
/// A token counts as expired this long before Vault would expire it.
const EXPIRY_MARGIN: Duration = Duration::from_millis(500);

/// The login shared by every read of one source. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: Http,
    auth: AuthConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    token: Option<Current>,
    /// Counts logins, so that many readers rejected at once log in again only once.
    generation: u64,
    renewer: Option<AbortHandle>,
}

#[derive(Debug)]
struct Current {
    value: Secret,
    /// The TTL the login gave; a renewal that gives much less means the max TTL is near.
    login_ttl: Option<Duration>,
    expires_at: Option<Instant>,
    renewable: bool,
}

/// A token handed to one request, with the login it came from.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The token; prints as `[REDACTED]`.
    pub token: Secret,
    generation: u64,
}

impl State {
    fn valid_lease(&self) -> Option<Lease> {
        let current = self.token.as_ref()?;
        let expired = current
            .expires_at
            .is_some_and(|at| Instant::now() + EXPIRY_MARGIN >= at);
        (!expired).then(|| Lease {
            token: current.value.clone(),
            generation: self.generation,
        })
    }
}

impl Session {
    /// A session that logs in with `auth` on first use.
    pub fn new(http: Http, auth: AuthConfig) -> Self {
        Session {
            inner: Arc::new(Inner {
                http,
                auth,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The current token, logging in first when there is none or it expired.
    pub async fn token(&self) -> Result<Lease, SourceError> {
        let mut state = self.inner.state.lock().await;
        if let Some(lease) = state.valid_lease() {
            return Ok(lease);
        }
        self.inner.login_locked(&mut state).await
    }

    /// A fresh token after Vault rejected `stale`. When another reader already logged in again
    /// since `stale` was handed out, its token is returned instead of logging in once more.
    pub async fn relogin(&self, stale: &Lease) -> Result<Lease, SourceError> {
        let mut state = self.inner.state.lock().await;
        if state.generation != stale.generation {
            if let Some(lease) = state.valid_lease() {
                return Ok(lease);
            }
        }
        self.inner.login_locked(&mut state).await
    }

    /// What Vault says about the current token.
    pub async fn facts(&self) -> Result<TokenFacts, SourceError> {
        let lease = self.token().await?;
        login::lookup_self(&self.inner.http, &lease.token).await
    }
}

impl Inner {
    /// Logs in, replaces the token and restarts the renewal task. The caller holds the lock,
    /// so concurrent readers wait for this one login.
    async fn login_locked(self: &Arc<Self>, state: &mut State) -> Result<Lease, SourceError> {
        let issued = login::login(&self.http, &self.auth).await?;
        tracing::debug!(
            method = self.auth.method(),
            ttl_secs = issued.ttl.map(|t| t.as_secs()),
            renewable = issued.renewable,
            "logged in to vault"
        );
        state.generation += 1;
        if let Some(old) = state.renewer.take() {
            old.abort();
        }
        state.renewer = self.spawn_renewer(&issued, state.generation);
        state.token = Some(Current {
            value: issued.value.clone(),
            login_ttl: issued.ttl,
            expires_at: issued.ttl.map(|ttl| Instant::now() + ttl),
            renewable: issued.renewable,
        });
        Ok(Lease {
            token: issued.value,
            generation: state.generation,
        })
    }

    /// Starts the background renewal of a token that expires, if a runtime is there to run it
    /// and renewing or logging in again can extend it. Without one, a read after expiry logs
    /// in again instead.
    fn spawn_renewer(
        self: &Arc<Self>,
        issued: &IssuedToken,
        generation: u64,
    ) -> Option<AbortHandle> {
        let ttl = issued.ttl?;
        if !issued.renewable && !self.auth.logs_in() {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let weak: Weak<Inner> = Arc::downgrade(self);
        let task = runtime.spawn(async move {
            let mut delay = renew_delay(ttl);
            loop {
                tokio::time::sleep(delay).await;
                let Some(inner) = weak.upgrade() else { return };
                match inner.renew(generation).await {
                    Some(next) => delay = next,
                    None => return,
                }
            }
        });
        Some(task.abort_handle())
    }

    /// One step of the renewal task: renews the token, or logs in again when it cannot be
    /// renewed (any more). Returns the wait before the next step, or `None` to end the task.
    async fn renew(self: &Arc<Self>, generation: u64) -> Option<Duration> {
        let mut state = self.state.lock().await;
        if state.generation != generation {
            return None;
        }
        let current = state.token.as_mut()?;
        if current.renewable {
            match login::renew_self(&self.http, &current.value).await {
                Ok(renewed) if long_enough(renewed.ttl, current.login_ttl) => {
                    let ttl = renewed.ttl?;
                    tracing::debug!(ttl_secs = ttl.as_secs(), "renewed the vault token");
                    current.expires_at = Some(Instant::now() + ttl);
                    current.renewable = renewed.renewable;
                    return Some(renew_delay(ttl));
                }
                Ok(_) => tracing::debug!("the vault token is near its max TTL"),
                Err(err) => tracing::debug!(error = %err, "renewing the vault token failed"),
            }
        }
        if !self.auth.logs_in() {
            return None;
        }
        // This task ends here; the login starts its own. Drop the handle so it is not aborted
        // from inside itself.
        state.renewer = None;
        if let Err(err) = self.login_locked(&mut state).await {
            tracing::warn!(
                error = %err,
                "logging in to vault again before the token expires failed; the next read retries"
            );
        }
        None
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.state.get_mut().renewer.take() {
            task.abort();
        }
    }
}

/// About two thirds of `ttl`, but not less than [`MIN_RENEW_DELAY`].
fn renew_delay(ttl: Duration) -> Duration {
    (ttl * RENEW_AFTER_THIRDS / 3).max(MIN_RENEW_DELAY)
}

/// Whether a renewal gave at least half the TTL of the login; less means the token's max TTL
/// is close and a fresh login is due.
fn long_enough(renewed: Option<Duration>, login_ttl: Option<Duration>) -> bool {
    match (renewed, login_ttl) {
        (Some(renewed), Some(login)) => renewed >= login / 2,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_of_the_ttl() {
        assert_eq!(renew_delay(Duration::from_secs(3)), Duration::from_secs(2));
        assert_eq!(
            renew_delay(Duration::from_secs(3600)),
            Duration::from_secs(2400)
        );
        assert_eq!(renew_delay(Duration::from_millis(30)), MIN_RENEW_DELAY);
    }

    #[test]
    fn a_short_renewal_calls_for_a_login() {
        let login = Some(Duration::from_secs(60));
        assert!(long_enough(Some(Duration::from_secs(60)), login));
        assert!(!long_enough(Some(Duration::from_secs(10)), login));
        assert!(!long_enough(None, login));
    }
}
