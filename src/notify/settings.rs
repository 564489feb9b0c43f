//! The `[alerts]` section of the server's configuration: how often freshness is
//! checked, how deliveries are retried, and the SMTP server alert emails go through.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::outbound::SmtpServer;

/// Longest check interval: a day.
const MAX_CHECK_INTERVAL_SECS: u64 = 86_400;
/// Longest wait between two attempts: a week.
const MAX_RETRY_SECS: u64 = 7 * 86_400;
/// Longest the delivery log is kept: ten years.
const MAX_LOG_DAYS: u64 = 3_650;

/// How the server notifies (defaults in `Default`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// How often the server checks every stream's status, in seconds (default 60).
    pub check_interval_secs: u64,
    /// The wait before the second attempt of a delivery, in seconds (default 10); each
    /// further attempt waits twice as long as the one before...
    pub retry_initial_secs: u64,
    /// ...up to this many seconds (default 3,600).
    pub retry_max_secs: u64,
    /// Attempts before a delivery is given up (default 25: about 16 hours with the
    /// default waits).
    pub max_attempts: u32,
    /// A webhook is disabled after this many deliveries in a row were given up
    /// (default 5; 0: never).
    pub disable_after: u32,
    /// Finished deliveries are kept in the log this many days (default 30).
    pub delivery_log_days: u64,
    /// The SMTP server for alert emails (none by default: email subscriptions are then
    /// refused).
    pub smtp: Option<SmtpSettings>,
}

/// The SMTP server alert emails go through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    /// Default 587 (submission).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Upgrade with STARTTLS, required when set (default true).
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// The sender, e.g. `"kpistream <kpistream@example.com>"`.
    pub from: String,
    pub username: Option<String>,
    /// A file holding the password (keep it mode 0600); needed with `username`.
    pub password_file: Option<PathBuf>,
}

fn default_port() -> u16 {
    587
}

fn default_true() -> bool {
    true
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            check_interval_secs: 60,
            retry_initial_secs: 10,
            retry_max_secs: 3_600,
            max_attempts: 25,
            disable_after: 5,
            delivery_log_days: 30,
            smtp: None,
        }
    }
}

impl AlertSettings {
    pub fn check_interval(&self) -> Duration {
        Duration::from_secs(self.check_interval_secs.clamp(1, MAX_CHECK_INTERVAL_SECS))
    }

    /// How long finished deliveries are kept.
    pub fn delivery_log(&self) -> SignedDuration {
        let days = self.delivery_log_days.min(MAX_LOG_DAYS);
        SignedDuration::from_hours(i64::try_from(days * 24).unwrap_or(i64::MAX))
    }

    /// When to try again after `attempts` failed attempts, or `None` to give up.
    pub fn retry_at(&self, attempts: u32, now: Timestamp) -> Option<Timestamp> {
        if attempts >= self.max_attempts {
            return None;
        }
        let doubled = self
            .retry_initial_secs
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(32));
        let wait = doubled.min(self.retry_max_secs).max(1);
        now.checked_add(SignedDuration::from_secs(
            i64::try_from(wait).unwrap_or(i64::MAX),
        ))
        .ok()
    }

    /// Checks the settings; each error names the setting.
    pub fn check(&self) -> anyhow::Result<()> {
        let within = |setting: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "alerts.{setting} ({value}) must be between {min} and {max}"
                ))
            }
        };
        within(
            "check_interval_secs",
            self.check_interval_secs,
            1,
            MAX_CHECK_INTERVAL_SECS,
        )?;
        within("retry_max_secs", self.retry_max_secs, 1, MAX_RETRY_SECS)?;
        within(
            "retry_initial_secs",
            self.retry_initial_secs,
            1,
            self.retry_max_secs,
        )?;
        within("max_attempts", u64::from(self.max_attempts), 1, 1_000)?;
        within("delivery_log_days", self.delivery_log_days, 1, MAX_LOG_DAYS)?;
        if let Some(smtp) = &self.smtp {
            smtp.mailbox()?;
            if smtp.username.is_some() != smtp.password_file.is_some() {
                anyhow::bail!(
                    "alerts.smtp.username and alerts.smtp.password_file go together: set both or neither"
                );
            }
        }
        Ok(())
    }
}

impl SmtpSettings {
    pub fn mailbox(&self) -> anyhow::Result<lettre::message::Mailbox> {
        self.from.parse().map_err(|_| {
            anyhow::anyhow!("alerts.smtp.from {:?} is not an email address", self.from)
        })
    }

    /// The server to send through, with the password read from its file.
    pub fn server(&self) -> anyhow::Result<SmtpServer> {
        let login = match (&self.username, &self.password_file) {
            (Some(user), Some(path)) => {
                let password = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "cannot read the SMTP password file {} (alerts.smtp.password_file)",
                        path.display()
                    )
                })?;
                Some((
                    user.clone(),
                    secrecy::SecretString::from(password.trim_end_matches(['\r', '\n']).to_owned()),
                ))
            }
            _ => None,
        };
        Ok(SmtpServer {
            host: self.host.clone(),
            port: self.port,
            starttls: self.starttls,
            login,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_retries_give_up_after_about_sixteen_hours() {
        let settings = AlertSettings::default();
        let now = Timestamp::UNIX_EPOCH;
        let waited: i64 = (1..settings.max_attempts)
            .map(|n| {
                settings
                    .retry_at(n, now)
                    .unwrap()
                    .duration_since(now)
                    .as_secs()
            })
            .sum();
        assert_eq!(settings.retry_at(settings.max_attempts, now), None);
        assert_eq!(waited, 59_110, "16.4 hours, as docs/notifications.md says");
        settings
            .check()
            .expect("the defaults pass their own checks");
        let huge = AlertSettings {
            delivery_log_days: u64::MAX,
            ..AlertSettings::default()
        };
        assert!(
            huge.check()
                .unwrap_err()
                .to_string()
                .contains("delivery_log_days")
        );
        assert!(huge.delivery_log().as_secs() > 0, "clamped, not a panic");
    }

    #[test]
    fn retries_double_up_to_the_cap_and_stop_at_the_last_attempt() {
        let settings = AlertSettings {
            retry_initial_secs: 10,
            retry_max_secs: 60,
            max_attempts: 5,
            ..AlertSettings::default()
        };
        let now = Timestamp::UNIX_EPOCH;
        let wait = |n| {
            settings
                .retry_at(n, now)
                .map(|at| at.duration_since(now).as_secs())
        };
        assert_eq!(
            [wait(1), wait(2), wait(3), wait(4), wait(5)],
            [Some(10), Some(20), Some(40), Some(60), None]
        );
    }
}
