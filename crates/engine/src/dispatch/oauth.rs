//! Access tokens of endpoints that authenticate with OAuth 2.0 client
//! credentials: one per endpoint, fetched when first needed, reused until
//! shortly before it expires ([`token_use_ms`]), fetched anew after that or
//! after the endpoint refused it (401). Deliveries to one endpoint that need
//! a token at once wait for one request; when it fails they all fail with
//! its reason (and retry on their schedules) instead of each asking again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::endpoint_auth::{AccessToken, OauthClientCredentials, token_use_ms};

/// Endpoints whose tokens are kept; past this the cache starts over (each
/// endpoint then fetches once more), so deleted endpoints cannot grow it.
const MAX_ENDPOINTS: usize = 10_000;
/// Longest a token is used without being fetched again, in ms.
const MAX_TOKEN_USE_MS: u64 = 24 * 3600 * 1000;

#[derive(Default)]
struct State {
    /// The configuration's fingerprint, the token, and until when it is used.
    token: Option<([u8; 32], String, Instant)>,
    /// Why the last fetch failed.
    failure: Option<String>,
}

#[derive(Default)]
struct Slot {
    /// Fetches made; a caller that waited through one sees its outcome.
    fetches: AtomicU64,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
pub(crate) struct Tokens {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Tokens {
    fn slot(&self, endpoint: &str) -> Arc<Slot> {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if slots.len() >= MAX_ENDPOINTS && !slots.contains_key(endpoint) {
            slots.clear();
        }
        slots.entry(endpoint.to_owned()).or_default().clone()
    }

    /// The endpoint's token: the cached one while it is good for `config`,
    /// else the one `fetch` gets (or why it got none).
    pub async fn get<Fut>(
        &self,
        endpoint: &str,
        config: &OauthClientCredentials,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<String, String>
    where
        Fut: Future<Output = Result<AccessToken, String>>,
    {
        let slot = self.slot(endpoint);
        let fingerprint = config.fingerprint();
        let seen = slot.fetches.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        if let Some((f, token, until)) = &state.token
            && *f == fingerprint
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        // Those who waited through a fetch take its outcome, even a token
        // already past its use (a short-lived one that took long to come),
        // so a burst makes one request.
        if slot.fetches.load(Ordering::Acquire) != seen {
            if let Some(reason) = &state.failure {
                return Err(reason.clone());
            }
            if let Some((f, token, _)) = &state.token
                && *f == fingerprint
            {
                return Ok(token.clone());
            }
        }
        let started = Instant::now();
        let outcome = fetch().await;
        slot.fetches.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(token) => {
                // A day at most: a lifetime given as 1e300 s is not kept
                // for ever (a 401 would still drop it).
                let use_ms = token_use_ms(token.expires_in).min(MAX_TOKEN_USE_MS);
                let until = started + Duration::from_millis(use_ms);
                state.token = Some((fingerprint, token.access_token.clone(), until));
                state.failure = None;
                Ok(token.access_token)
            }
            Err(reason) => {
                state.token = None;
                state.failure = Some(reason.clone());
                Err(reason)
            }
        }
    }

    /// The endpoint refused `token`: the next delivery fetches another
    /// (unless one was fetched meanwhile).
    pub async fn refused(&self, endpoint: &str, token: &str) {
        let slot = self.slot(endpoint);
        let mut state = slot.state.lock().await;
        if state.token.as_ref().is_some_and(|(_, t, _)| t == token) {
            state.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use switchyard_core::endpoint_auth::OauthAuthMethod;

    fn config(id: &str) -> OauthClientCredentials {
        OauthClientCredentials {
            token_url: "https://auth.example/token".into(),
            client_id: id.into(),
            client_secret: None,
            auth_method: OauthAuthMethod::ClientSecretPost,
            scopes: vec![],
            extra_params: Default::default(),
            extra_headers: Default::default(),
        }
    }

    fn issued(n: usize, expires_in: Option<u64>) -> Result<AccessToken, String> {
        Ok(AccessToken {
            access_token: format!("t{n}"),
            expires_in,
        })
    }

    #[tokio::test]
    async fn concurrent_deliveries_share_one_fetch_and_its_failure() {
        let tokens = Arc::new(Tokens::default());
        let fetched = Arc::new(AtomicUsize::new(0));
        let get = |fail: bool| {
            let (tokens, fetched) = (tokens.clone(), fetched.clone());
            tokio::spawn(async move {
                tokens
                    .get("ep", &config("a"), || async move {
                        let n = fetched.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if fail {
                            Err("HTTP 401".to_owned())
                        } else {
                            issued(n, Some(3600))
                        }
                    })
                    .await
            })
        };
        let waiting: Vec<_> = (0..20).map(|_| get(true)).collect();
        for w in waiting {
            assert_eq!(w.await.unwrap(), Err("HTTP 401".to_owned()));
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        // A later delivery asks again, and the token is then reused.
        let waiting: Vec<_> = (0..20).map(|_| get(false)).collect();
        for w in waiting {
            assert_eq!(w.await.unwrap(), Ok("t1".to_owned()));
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 2);
    }

    /// A token that lives 0 s is past its use when it arrives; those who
    /// waited for it still share it. (Paused time: every task is waiting on
    /// the lock before the fetch's sleep ends.)
    #[tokio::test(start_paused = true)]
    async fn waiters_share_even_a_token_that_expired_on_the_way() {
        let tokens = Arc::new(Tokens::default());
        let fetched = Arc::new(AtomicUsize::new(0));
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let (tokens, fetched) = (tokens.clone(), fetched.clone());
                tokio::spawn(async move {
                    tokens
                        .get("ep", &config("a"), || async move {
                            let n = fetched.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            issued(n, Some(0))
                        })
                        .await
                })
            })
            .collect();
        for w in waiting {
            assert_eq!(w.await.unwrap(), Ok("t0".to_owned()));
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn tokens_are_fetched_again_when_expired_refused_or_reconfigured() {
        let tokens = Tokens::default();
        let n = AtomicUsize::new(0);
        let get = async |cfg: &OauthClientCredentials, expires| {
            tokens
                .get("ep", cfg, || async {
                    issued(n.fetch_add(1, Ordering::SeqCst), expires)
                })
                .await
                .unwrap()
        };
        assert_eq!(get(&config("a"), Some(0)).await, "t0");
        // Expired at once (a lifetime of 0 s is used for 0 ms).
        assert_eq!(get(&config("a"), Some(3600)).await, "t1");
        assert_eq!(get(&config("a"), Some(3600)).await, "t1");
        tokens.refused("ep", "t0").await; // an older token: no effect
        assert_eq!(get(&config("a"), Some(3600)).await, "t1");
        tokens.refused("ep", "t1").await;
        assert_eq!(get(&config("a"), Some(3600)).await, "t2");
        // Another client id is another configuration.
        assert_eq!(get(&config("b"), Some(3600)).await, "t3");
    }
}
