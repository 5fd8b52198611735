//! [`BrokerConfig`]: the embedded broker's settings, with nats-server's defaults, and the subset of the
//! nats-server configuration file (`nats.embedded.config`) that sets them.
//!
//! # Supported configuration file keys
//! | key | value | default |
//! |---|---|---|
//! | `listen` | `host:port`, `:port` or `port` | `0.0.0.0:4222` |
//! | `host` (alias `net`) | address to bind | `0.0.0.0` |
//! | `port` | client port; `-1` or `0` = any free port | `4222` |
//! | `server_name` | name reported in `INFO` | the random server id |
//! | `authorization { user, password }` | single user/password | none |
//! | `authorization { token }` | token auth | none |
//! | `authorization { timeout }` | seconds to wait for `CONNECT` | `2` |
//! | `max_payload` | size (`1MB`, `65536`, `512KB`; `K`/`M`/`G` = ×1000, `KB`/`MB`/`GB` = ×1024) | `1MB` (1 MiB) |
//! | `max_pending` | size of a client's outbound buffer before it is a slow consumer | `64MB` |
//! | `max_control_line` | size of a control line | `4KB` (4096) |
//! | `max_connections` (alias `max_conn`) | client connections | `65536` |
//! | `ping_interval` | duration (`"2m"`, `"30s"`, `"500ms"`, or a number of seconds) | `2m` |
//! | `ping_max` | unanswered pings before `Stale Connection` | `2` |
//! | `write_deadline` | duration a write may block before the client is a slow consumer | `10s` |
//!
//! Any other key (`cluster`, `jetstream`, `tls`, `accounts`, `authorization.users`, `include`, ...) is refused
//! with its name: those need a real nats-server (`-n nats://...`). Unlike nats-server, a bare duration such as
//! `ping_interval: 2m` means two minutes (nats-server reads an unquoted `2m` as the number 2,000,000).

use std::path::Path;
use std::time::Duration;

use super::config_file::{self, Entry, Value};
use super::protocol::ConnectOptions;

/// One mebibyte.
const MIB: usize = 1024 * 1024;

/// Upper bound of the duration settings (keeps timer arithmetic far from overflow).
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The keys the configuration file may contain, for error messages.
pub const SUPPORTED_KEYS: &str = "listen, host, port, server_name, authorization { user, password, token, timeout }, \
     max_payload, max_pending, max_control_line, max_connections, ping_interval, ping_max, write_deadline";

/// Credentials clients must present in `CONNECT`.
#[derive(Clone, PartialEq, Eq)]
pub enum BrokerAuth {
    /// `user` and `pass` must match.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `auth_token` must match.
    Token(String),
}

impl std::fmt::Debug for BrokerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerAuth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            BrokerAuth::Token(_) => f.debug_tuple("Token").field(&"<redacted>").finish(),
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: Option<&str>, b: &str) -> bool {
    let Some(a) = a else {
        return false;
    };
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl BrokerAuth {
    /// Whether a client's `CONNECT` carries these credentials.
    pub(crate) fn accepts(&self, options: &ConnectOptions) -> bool {
        match self {
            BrokerAuth::UserPassword { user, password } => {
                // Evaluate both so that timing does not tell which one was wrong.
                let user_ok = same(options.user.as_deref(), user);
                let password_ok = same(options.pass.as_deref(), password);
                user_ok & password_ok
            }
            BrokerAuth::Token(token) => same(options.auth_token.as_deref(), token),
        }
    }
}

/// The embedded broker's settings. `Default` gives nats-server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Address to listen on. Default `0.0.0.0`, as nats-server.
    pub host: String,
    /// Client port; 0 picks a free one. Default 4222.
    pub port: u16,
    /// Name reported in `INFO`; default: the random server id.
    pub server_name: Option<String>,
    /// Credentials clients must present; default none.
    pub auth: Option<BrokerAuth>,
    /// With auth, how long a client may take to send `CONNECT`. Default 2 s.
    pub auth_timeout: Duration,
    /// Largest message (headers + payload) accepted. Default 1 MiB; at most 64 MiB.
    pub max_payload: usize,
    /// Largest outbound buffer of a TCP client before it is disconnected as a slow consumer. Default 64 MiB.
    pub max_pending: usize,
    /// Longest control line accepted. Default 4096.
    pub max_control_line: usize,
    /// Most simultaneous client connections. Default 65536.
    pub max_connections: usize,
    /// How often the server pings each client. Default 2 minutes.
    pub ping_interval: Duration,
    /// Unanswered pings after which a client is disconnected (`Stale Connection`). Default 2.
    pub max_pings_out: u32,
    /// How long one write to a client may block before it is disconnected as a slow consumer. Default 10 s.
    pub write_deadline: Duration,
    /// Messages an in-process subscription may have queued before new ones are dropped. Default 65536.
    pub in_process_pending_msgs: usize,
    /// Payload bytes an in-process subscription may have queued before new messages are dropped.
    /// Default 64 MiB.
    pub in_process_pending_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            host: "0.0.0.0".into(),
            port: 4222,
            server_name: None,
            auth: None,
            auth_timeout: Duration::from_secs(2),
            max_payload: MIB,
            max_pending: 64 * MIB,
            max_control_line: 4096,
            max_connections: 65536,
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            write_deadline: Duration::from_secs(10),
            in_process_pending_msgs: 65536,
            in_process_pending_bytes: 64 * MIB,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read NATS config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid nats-server configuration syntax.
    #[error("{origin}:{line}: {message}")]
    Syntax {
        /// The file (or `<config>`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A key the embedded broker does not support.
    #[error(
        "{origin}:{line}: unsupported NATS option `{key}`: the embedded broker supports {supported}; \
         for anything else run a NATS server and point Liftbridge at it with -n/--nats-servers"
    )]
    Unsupported {
        /// The file (or `<config>`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// The key, with its parents (`authorization.users`).
        key: String,
        /// The supported keys.
        supported: &'static str,
    },
    /// A supported key with a bad value.
    #[error("{origin}:{line}: invalid value for `{key}`: {message}")]
    InvalidValue {
        /// The file (or `<config>`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Settings that do not fit together.
    #[error("invalid embedded NATS broker settings: {0}")]
    Invalid(String),
}

impl BrokerConfig {
    /// Reads a nats-server configuration file (the supported subset, see the module docs) over the defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<BrokerConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = BrokerConfig::default();
        config.apply_text(&text, &path.display().to_string())?;
        Ok(config)
    }

    /// Parses configuration file text over the defaults.
    pub fn parse(text: &str) -> Result<BrokerConfig, ConfigError> {
        let mut config = BrokerConfig::default();
        config.apply_text(text, "<config>")?;
        Ok(config)
    }

    /// Applies configuration file text over these settings (`origin` names the file in errors), then
    /// validates the result.
    pub fn apply_text(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let entries = config_file::parse(text).map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            line: e.line,
            message: e.message,
        })?;
        let mut next = self.clone();
        next.apply_entries(&entries, origin)?;
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// The address to bind: `host:port` (IPv6 hosts in brackets).
    pub fn listen_addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Checks that the settings fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError::Invalid(m));
        if self.host.is_empty() {
            return fail("host must not be empty".into());
        }
        if self.max_payload == 0 || self.max_payload > 64 * MIB {
            return fail(format!(
                "max_payload must be between 1 byte and 64 MiB, not {}",
                self.max_payload
            ));
        }
        if self.max_pending < self.max_payload {
            return fail(format!(
                "max_payload ({}) cannot be higher than max_pending ({})",
                self.max_payload, self.max_pending
            ));
        }
        if self.max_control_line < 64 {
            return fail(format!(
                "max_control_line must be at least 64, not {}",
                self.max_control_line
            ));
        }
        if self.max_connections == 0 {
            return fail("max_connections must be at least 1".into());
        }
        for (name, value) in [
            ("ping_interval", self.ping_interval),
            ("write_deadline", self.write_deadline),
            ("authorization.timeout", self.auth_timeout),
        ] {
            if value.is_zero() || value > MAX_DURATION {
                return fail(format!(
                    "{name} must be positive and at most 7 days, not {value:?}"
                ));
            }
        }
        if self.max_pings_out == 0 {
            return fail("ping_max must be at least 1".into());
        }
        if self.in_process_pending_msgs == 0 || self.in_process_pending_bytes < self.max_payload {
            return fail("in-process queues must hold at least one message of max_payload".into());
        }
        match &self.auth {
            Some(BrokerAuth::UserPassword { user, password })
                if user.is_empty() || password.is_empty() =>
            {
                fail("authorization needs a non-empty user and password".into())
            }
            Some(BrokerAuth::Token(token)) if token.is_empty() => {
                fail("authorization token must not be empty".into())
            }
            _ => Ok(()),
        }
    }

    fn apply_entries(&mut self, entries: &[Entry], origin: &str) -> Result<(), ConfigError> {
        for entry in entries {
            let key = entry.key.as_str();
            let bad = |message: String| ConfigError::InvalidValue {
                origin: origin.to_string(),
                line: entry.line,
                key: key.to_string(),
                message,
            };
            match key {
                "listen" => {
                    let text = text_of(&entry.value).map_err(bad)?;
                    let (host, port) = match text.rsplit_once(':') {
                        Some((host, port)) => (
                            Some(host.trim_start_matches('[').trim_end_matches(']')),
                            port,
                        ),
                        None => (None, text),
                    };
                    if let Some(host) = host.filter(|h| !h.is_empty()) {
                        self.host = host.to_string();
                    }
                    self.port = parse_port(port).map_err(bad)?;
                }
                "host" | "net" => self.host = text_of(&entry.value).map_err(bad)?.to_string(),
                "port" => {
                    self.port = parse_port(text_of(&entry.value).map_err(bad)?).map_err(bad)?
                }
                "server_name" => {
                    self.server_name = Some(text_of(&entry.value).map_err(bad)?.to_string())
                }
                "max_payload" => {
                    self.max_payload =
                        parse_size(text_of(&entry.value).map_err(bad)?).map_err(bad)?
                }
                "max_pending" => {
                    self.max_pending =
                        parse_size(text_of(&entry.value).map_err(bad)?).map_err(bad)?
                }
                "max_control_line" => {
                    self.max_control_line =
                        parse_size(text_of(&entry.value).map_err(bad)?).map_err(bad)?
                }
                "max_connections" | "max_conn" => {
                    self.max_connections =
                        parse_size(text_of(&entry.value).map_err(bad)?).map_err(bad)?
                }
                "ping_interval" => {
                    self.ping_interval =
                        parse_duration(text_of(&entry.value).map_err(bad)?).map_err(bad)?
                }
                "ping_max" => {
                    let n = parse_size(text_of(&entry.value).map_err(bad)?).map_err(bad)?;
                    self.max_pings_out =
                        u32::try_from(n).map_err(|_| bad(format!("{n} is too large")))?;
                }
                "write_deadline" => {
                    self.write_deadline =
                        parse_duration(text_of(&entry.value).map_err(bad)?).map_err(bad)?
                }
                "authorization" => {
                    let Value::Map(inner) = &entry.value else {
                        return Err(bad(
                            "expected a block { user, password } or { token }".into()
                        ));
                    };
                    self.apply_authorization(inner, origin)?;
                }
                _ => {
                    return Err(ConfigError::Unsupported {
                        origin: origin.to_string(),
                        line: entry.line,
                        key: key.to_string(),
                        supported: SUPPORTED_KEYS,
                    });
                }
            }
        }
        Ok(())
    }

    fn apply_authorization(&mut self, entries: &[Entry], origin: &str) -> Result<(), ConfigError> {
        let (mut user, mut password, mut token) = (None, None, None);
        let mut line = 0;
        for entry in entries {
            line = entry.line;
            let bad = |message: String| ConfigError::InvalidValue {
                origin: origin.to_string(),
                line: entry.line,
                key: format!("authorization.{}", entry.key),
                message,
            };
            match entry.key.as_str() {
                "user" | "username" => user = Some(text_of(&entry.value).map_err(bad)?.to_string()),
                "password" | "pass" => {
                    password = Some(text_of(&entry.value).map_err(bad)?.to_string())
                }
                "token" => token = Some(text_of(&entry.value).map_err(bad)?.to_string()),
                "timeout" => {
                    let text = text_of(&entry.value).map_err(bad)?;
                    let seconds: f64 = text
                        .parse()
                        .map_err(|_| bad(format!("expected a number of seconds, not {text:?}")))?;
                    self.auth_timeout = Duration::try_from_secs_f64(seconds)
                        .map_err(|_| bad(format!("expected a number of seconds, not {text:?}")))?;
                }
                other => {
                    return Err(ConfigError::Unsupported {
                        origin: origin.to_string(),
                        line: entry.line,
                        key: format!("authorization.{other}"),
                        supported: SUPPORTED_KEYS,
                    });
                }
            }
        }
        let invalid = |message: &str| ConfigError::InvalidValue {
            origin: origin.to_string(),
            line,
            key: "authorization".into(),
            message: message.into(),
        };
        self.auth = match (user, password, token) {
            (None, None, None) => None,
            (Some(user), Some(password), None) => Some(BrokerAuth::UserPassword { user, password }),
            (None, None, Some(token)) => Some(BrokerAuth::Token(token)),
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(invalid("user and password go together"));
            }
            _ => return Err(invalid("use either user/password or token, not both")),
        };
        Ok(())
    }
}

fn text_of(value: &Value) -> Result<&str, String> {
    match value {
        Value::Text { text, .. } => Ok(text),
        Value::Map(_) => Err("expected a value, found a block".into()),
        Value::Array(_) => Err("expected a value, found a list".into()),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text == "-1" {
        return Ok(0);
    }
    text.parse::<u16>()
        .map_err(|_| format!("expected a port number (0-65535, or -1 for any), not {text:?}"))
}

/// Parses a size: digits with an optional suffix, `K`/`M`/`G` (×1000) or `KB`/`MB`/`GB`, `KiB`/`MiB`/`GiB`
/// (×1024), case-insensitive, as nats-server.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(digits_end);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("expected a size such as 1048576, 1MB or 512KB, not {text:?}"))?;
    let factor: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" | "ki" | "kib" => 1024,
        "m" => 1000 * 1000,
        "mb" | "mi" | "mib" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" | "gi" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size suffix {other:?} in {text:?}")),
    };
    number
        .checked_mul(factor)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a duration: a number of seconds (`120`, `0.5`) or Go's duration syntax (`2m`, `1m30s`, `250ms`,
/// `1h`; units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "expected a duration such as \"2m\", \"30s\", \"500ms\" or a number of seconds, not {text:?}"
        )
    };
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| bad());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_end);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_nats_servers() {
        let c = BrokerConfig::default();
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 4222));
        assert_eq!(c.max_payload, 1024 * 1024);
        assert_eq!(c.max_control_line, 4096);
        assert_eq!(c.ping_interval, Duration::from_secs(120));
        assert_eq!(c.max_pings_out, 2);
        assert_eq!(c.listen_addr(), "0.0.0.0:4222");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn full_file() {
        let c = BrokerConfig::parse(
            "# embedded broker\nlisten: 127.0.0.1:4333\nserver_name = lb-1\n\
             authorization {\n  user: alice\n  password: \"s3cret\"\n  timeout: 0.5\n}\n\
             max_payload: 2MB\nmax_pending: 128MB\nmax_control_line: 8KB\nmax_connections 100\n\
             ping_interval: \"30s\"\nping_max: 3\nwrite_deadline: \"2s\"\n",
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 4333));
        assert_eq!(c.server_name.as_deref(), Some("lb-1"));
        assert_eq!(
            c.auth,
            Some(BrokerAuth::UserPassword {
                user: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(c.auth_timeout, Duration::from_millis(500));
        assert_eq!(c.max_payload, 2 * MIB);
        assert_eq!(c.max_pending, 128 * MIB);
        assert_eq!(c.max_control_line, 8192);
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(c.max_pings_out, 3);
        assert_eq!(c.write_deadline, Duration::from_secs(2));
        assert!(!format!("{:?}", c.auth).contains("s3cret"));
    }

    #[test]
    fn listen_forms_and_token() {
        let c = BrokerConfig::parse("listen: 5222\nauthorization: { token: \"3secret\" }").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 5222));
        assert_eq!(c.auth, Some(BrokerAuth::Token("3secret".into())));
        let c = BrokerConfig::parse("listen: \":6222\"").unwrap();
        assert_eq!(c.port, 6222);
        let c = BrokerConfig::parse("listen: \"[::1]:7222\"").unwrap();
        assert_eq!(c.host, "::1");
        assert_eq!(c.listen_addr(), "[::1]:7222");
        let c = BrokerConfig::parse("host: 127.0.0.1\nport: -1").unwrap();
        assert_eq!(c.listen_addr(), "127.0.0.1:0");
    }

    #[test]
    fn unsupported_keys_are_named() {
        for (text, key) in [
            ("cluster { port: 6222 }", "cluster"),
            ("jetstream: enabled", "jetstream"),
            ("\n\ntls { cert_file: x }", "tls"),
            ("debug: true", "debug"),
            (
                "authorization { users: [ {user: a, password: b} ] }",
                "authorization.users",
            ),
        ] {
            let err = BrokerConfig::parse(text).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(&err, ConfigError::Unsupported { key: k, .. } if k == key),
                "{message}"
            );
            assert!(message.contains(&format!("`{key}`")), "{message}");
        }
        let err = BrokerConfig::parse("\n\ntls { cert_file: x }").unwrap_err();
        assert!(err.to_string().starts_with("<config>:3:"), "{err}");
    }

    #[test]
    fn bad_values() {
        for text in [
            "port: http",
            "port: 70000",
            "max_payload: lots",
            "max_payload: 1XB",
            "max_payload: 100MB",
            "max_payload: 0",
            "ping_interval: soon",
            "authorization { user: a }",
            "authorization { user: a, password: b, token: c }",
            "authorization: 3",
            "ping_interval: 10000h",
            "write_deadline: 0",
            "listen: [1, 2]",
            "max_payload: 2MB\nmax_pending: 1MB",
        ] {
            assert!(BrokerConfig::parse(text).is_err(), "{text}");
        }
        let err = BrokerConfig::parse("\nport: http").unwrap_err().to_string();
        assert!(
            err.contains("<config>:2") && err.contains("`port`"),
            "{err}"
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1K"), Ok(1000));
        assert_eq!(parse_size("1kb"), Ok(1024));
        assert_eq!(parse_size("1MB"), Ok(MIB));
        assert_eq!(parse_size("1M"), Ok(1_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * MIB));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999GB").is_err());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn from_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, "port: 4999\nleafnodes {}\n").unwrap();
        let err = BrokerConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("nats.conf:2") && err.contains("`leafnodes`"),
            "{err}"
        );
        std::fs::write(&path, "port: 4999\n").unwrap();
        assert_eq!(BrokerConfig::from_file(&path).unwrap().port, 4999);
        assert!(BrokerConfig::from_file(dir.path().join("missing.conf")).is_err());
    }

    #[test]
    fn auth_checks() {
        let up = BrokerAuth::UserPassword {
            user: "u".into(),
            password: "p".into(),
        };
        let opts = |user: Option<&str>, pass: Option<&str>, token: Option<&str>| ConnectOptions {
            user: user.map(Into::into),
            pass: pass.map(Into::into),
            auth_token: token.map(Into::into),
            ..ConnectOptions::default()
        };
        assert!(up.accepts(&opts(Some("u"), Some("p"), None)));
        assert!(!up.accepts(&opts(Some("u"), Some("x"), None)));
        assert!(!up.accepts(&opts(None, Some("p"), None)));
        let token = BrokerAuth::Token("t".into());
        assert!(token.accepts(&opts(None, None, Some("t"))));
        assert!(!token.accepts(&opts(None, None, Some("tt"))));
        assert!(!token.accepts(&opts(Some("u"), Some("p"), None)));
    }
}
