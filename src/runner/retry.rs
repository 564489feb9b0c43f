//! Retries of transient source errors within one run: exponential backoff with full
//! jitter, a `Retry-After` honoured up to the policy's `max_backoff`.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::FetchError;
use crate::connector::RetryPolicy;

/// Runs `attempt` until it succeeds, fails permanently, or has been tried
/// `policy.max_attempts` times. `what` names the operation in the log lines
/// ("GET page 3 of billing-mrr"); it must not hold a secret.
pub async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: F,
) -> Result<T, FetchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, FetchError>>,
{
    let attempts = policy.max_attempts.max(1);
    let mut number = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error @ FetchError::Permanent { .. }) => return Err(error),
            Err(FetchError::Transient {
                message,
                retry_after,
            }) => {
                if number >= attempts {
                    return Err(FetchError::transient(format!(
                        "{message} (gave up after {attempts} attempt{})",
                        if attempts == 1 { "" } else { "s" }
                    )));
                }
                let wait = wait_before_retry(policy, number, retry_after);
                tracing::warn!(
                    operation = what,
                    attempt = number,
                    wait_ms = wait.as_millis() as u64,
                    error = %message,
                    "transient source error, retrying"
                );
                metrics::counter!("kpistream_runner_retries_total").increment(1);
                tokio::time::sleep(wait).await;
                number += 1;
            }
        }
    }
}

/// The wait before retry number `retry` (1 for the first): the server's `Retry-After`
/// if it gave one, otherwise a random time up to `initial_backoff * 2^(retry-1)`
/// (full jitter), never above `max_backoff`.
pub fn wait_before_retry(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let cap = policy.max_backoff.0;
    if let Some(after) = retry_after {
        return after.min(cap);
    }
    let exponential = policy
        .initial_backoff
        .0
        .saturating_mul(1u32 << (retry - 1).min(20))
        .min(cap);
    let millis = exponential.as_millis() as u64;
    // Full jitter, but at least half the backoff so retries never bunch up at zero.
    Duration::from_millis(millis / 2 + rand::thread_rng().gen_range(0..=millis / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Duration as D;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: D(Duration::from_millis(10)),
            max_backoff: D(Duration::from_millis(80)),
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let p = policy(10);
        for retry in 1..8 {
            let expected = (10u64 << (retry - 1)).min(80);
            let wait = wait_before_retry(&p, retry, None).as_millis() as u64;
            assert!(
                wait >= expected / 2 && wait <= expected,
                "retry {retry}: {wait} ms"
            );
        }
        assert_eq!(
            wait_before_retry(&p, 1, Some(Duration::from_secs(5))),
            Duration::from_millis(80),
            "Retry-After is capped by max_backoff"
        );
        assert_eq!(
            wait_before_retry(&p, 1, Some(Duration::from_millis(30))),
            Duration::from_millis(30)
        );
    }

    #[tokio::test]
    async fn transient_errors_are_retried_and_permanent_ones_are_not() {
        let mut calls = 0;
        let ok = retrying(&policy(3), "test", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(FetchError::transient("503"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(ok.unwrap(), 3);

        let mut calls = 0;
        let err = retrying(&policy(3), "test", || {
            calls += 1;
            async { Err::<(), _>(FetchError::permanent("400 Bad Request")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(!err.is_transient());

        let err = retrying(&policy(2), "test", || async {
            Err::<(), _>(FetchError::transient("503"))
        })
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "503 (gave up after 2 attempts)");
    }
}
