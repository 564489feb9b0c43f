//! Secrets of connectors, read from an environment variable or a file before a run
//! takes its lease ([`super::local`]). Errors name the field and the variable or file,
//! never the value.

use std::path::Path;

use secrecy::SecretString;

use super::local::ConfigError;

/// Reads the secret `field` names (`source.auth.token`, say) from the environment
/// variable `env` or the file `file`; `Ok(None)` when neither is given. A file's
/// content is trimmed of surrounding whitespace (a trailing newline is usual).
pub fn load(
    field: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(SecretString::from(value))),
            _ => Err(ConfigError::VariableNotSet {
                field: field.to_owned(),
                var: var.to_owned(),
            }),
        };
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::FileUnreadable {
            field: field.to_owned(),
            path: path.to_owned(),
            kind: e.kind(),
        })?;
        let value = text.trim();
        if value.is_empty() {
            return Err(ConfigError::FileEmpty {
                field: field.to_owned(),
                path: path.to_owned(),
            });
        }
        return Ok(Some(SecretString::from(value.to_owned())));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_secret_comes_from_a_file_trimmed_and_errors_never_show_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "CANARY-secret-file\n").unwrap();
        let secret = load("source.auth.token", None, Some(&path))
            .unwrap()
            .unwrap();
        assert_eq!(secret.expose_secret(), "CANARY-secret-file");
        assert!(!format!("{secret:?}").contains("CANARY"));

        let e = load(
            "source.auth.token",
            Some("KPISTREAM_SECRET_TEST_UNSET"),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the environment variable KPISTREAM_SECRET_TEST_UNSET that source.auth.token names is not set"
        );
        let missing = dir.path().join("nope");
        assert!(
            load("x", None, Some(&missing))
                .unwrap_err()
                .to_string()
                .contains("cannot be read")
        );
        assert!(load("x", None, None).unwrap().is_none());
    }
}
